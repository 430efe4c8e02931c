//! Whose state a plugin's `counters` and `cache` keys name. The host builds every key from the
//! binding's namespace (the plugin's own, or a shared one an admin granted), the tenant the
//! state belongs to, and the guest's key: a guest chooses only the last part, so it can never
//! name another plugin's or another tenant's state.

use std::sync::Arc;

use crate::binding::Scope;
use crate::bindings::types::StateScope;

/// The namespace of a binding's state: `plugin:<name>` by default, `shared:<name>` when the
/// binding was granted a namespace shared with other plugins.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Namespace(Arc<str>);

impl Namespace {
    pub fn plugin(name: &str) -> Self {
        Namespace(Arc::from(format!("plugin:{name}")))
    }

    pub fn shared(name: &str) -> Self {
        Namespace(Arc::from(format!("shared:{name}")))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The owner of a piece of host state: a namespace and, for per-tenant state, the tenant.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Owner {
    pub namespace: Namespace,
    pub tenant: Option<Arc<str>>,
}

impl Owner {
    /// Whose state `scope` names for a call of a binding in `binding_scope` serving a request
    /// of `request_tenant`.
    pub fn resolve(namespace: &Namespace, binding_scope: &Scope, request_tenant: &Arc<str>, scope: StateScope) -> Self {
        let tenant = match (binding_scope, scope) {
            // A tenant's binding only ever reaches that tenant's state.
            (Scope::Tenant(t), _) => Some(Arc::clone(t)),
            (Scope::Global | Scope::Model(_), StateScope::Binding) => None,
            (Scope::Global | Scope::Model(_), StateScope::Tenant) => Some(Arc::clone(request_tenant)),
        };
        Owner { namespace: namespace.clone(), tenant }
    }

    /// The owner's prefix of every key it stores: unambiguous, since each variable part is
    /// length-prefixed (`<len>:<namespace>/-/` or `<len>:<namespace>/t<len>:<tenant>/`).
    pub fn prefix(&self) -> String {
        let ns = self.namespace.as_str();
        match &self.tenant {
            Some(t) => format!("{}:{ns}/t{}:{t}/", ns.len(), t.len()),
            None => format!("{}:{ns}/-/", ns.len()),
        }
    }

    /// The full key of the guest's `key`.
    pub fn key(&self, key: &str) -> String {
        let mut full = self.prefix();
        full.push_str(key);
        full
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(ns: &Namespace, scope: &Scope, tenant: &str, s: StateScope) -> Owner {
        Owner::resolve(ns, scope, &Arc::from(tenant), s)
    }

    #[test]
    fn a_tenant_binding_reaches_only_its_tenant() {
        let ns = Namespace::plugin("p");
        let scope = Scope::Tenant(Arc::from("acme"));
        for s in [StateScope::Binding, StateScope::Tenant] {
            // Even when the request's tenant were another one, the binding's tenant decides.
            assert_eq!(owner(&ns, &scope, "evil", s).tenant.as_deref(), Some("acme"));
        }
    }

    #[test]
    fn global_bindings_choose_between_shared_and_per_tenant() {
        let ns = Namespace::plugin("p");
        assert_eq!(owner(&ns, &Scope::Global, "acme", StateScope::Binding).tenant, None);
        assert_eq!(owner(&ns, &Scope::Global, "acme", StateScope::Tenant).tenant.as_deref(), Some("acme"));
    }

    #[test]
    fn keys_cannot_collide_across_owners() {
        let a = Owner { namespace: Namespace::plugin("a"), tenant: Some(Arc::from("x")) };
        let b = Owner { namespace: Namespace::plugin("a/t1:x"), tenant: None };
        let c = Owner { namespace: Namespace::plugin("a"), tenant: None };
        assert_ne!(a.key("k"), b.key("k"));
        assert_ne!(a.key("k"), c.key("t1:x/k"));
        assert_ne!(Namespace::plugin("s").as_str(), Namespace::shared("s").as_str());
        // A guest key that spells another owner's prefix stays inside its own owner.
        assert!(c.key(&a.key("k")).starts_with(&c.prefix()));
    }
}
