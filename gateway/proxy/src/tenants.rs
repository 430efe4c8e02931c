//! Who may call, and within which limits: an immutable snapshot of tenants and API-key
//! digests, swapped atomically.
//!
//! The hot path reads the current snapshot without locking and never touches a database. The
//! snapshot is built from the config file ([`TenantSnapshot::from_config`]) or from the store
//! ([`TenantSnapshot::from_store`]); the store's watcher calls [`Directory::replace`] whenever
//! something changes.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
pub use sluice_store_model::keys::KeyDigest as KeyHash;
use sluice_store_model::{Limits, Priority, StoreSnapshot, TenantStatus};

#[derive(Debug)]
pub struct Tenant {
    pub name: Arc<str>,
    pub status: TenantStatus,
    pub priority: Priority,
    pub limits: Limits,
}

impl Tenant {
    pub fn new(name: &str) -> Self {
        Tenant {
            name: Arc::from(name),
            status: TenantStatus::Active,
            priority: Priority::Normal,
            limits: Limits::default(),
        }
    }

    /// Whether `model` is among the models this tenant may call.
    pub fn allows_model(&self, model: &str) -> bool {
        self.limits.allowed_models.as_ref().is_none_or(|allowed| allowed.iter().any(|m| m == model))
    }

    /// Whether any rate, concurrency or budget limit is set: the built-in rate limiter runs
    /// only for such tenants.
    pub fn is_limited(&self) -> bool {
        let l = &self.limits;
        l.requests_per_minute.is_some()
            || l.tokens_per_minute.is_some()
            || l.max_concurrency.is_some()
            || l.monthly_token_budget.is_some()
    }

    /// The settings plugins read through `config.tenant`, as JSON: name, priority, limits and,
    /// when the store has counted them, the tokens used this calendar month (UTC) by every
    /// replica, as last written to the store.
    pub fn settings_json(&self, month_tokens: Option<u64>) -> String {
        let mut settings =
            serde_json::json!({ "name": &*self.name, "priority": self.priority, "limits": &self.limits });
        if let Some(tokens) = month_tokens {
            settings["usage"] = serde_json::json!({ "month_tokens": tokens });
        }
        settings.to_string()
    }
}

/// One key's entry: which tenant it belongs to, and a short non-secret id for logs.
#[derive(Debug, Clone)]
pub struct KeyEntry {
    pub tenant: Arc<Tenant>,
    pub key_id: Arc<str>,
}

#[derive(Debug, Default)]
pub struct TenantSnapshot {
    keys: HashMap<KeyHash, KeyEntry>,
    tenants: Vec<Arc<Tenant>>,
}

impl TenantSnapshot {
    /// Builds a snapshot from tenants and the digests of their keys.
    pub fn new(tenants: impl IntoIterator<Item = (Tenant, Vec<KeyHash>)>) -> Self {
        let mut snapshot = TenantSnapshot::default();
        for (tenant, hashes) in tenants {
            let tenant = Arc::new(tenant);
            for hash in hashes {
                let key_id: Arc<str> = Arc::from(format!("{}:{}", tenant.name, &hash.to_hex()[..8]));
                snapshot.keys.insert(hash, KeyEntry { tenant: Arc::clone(&tenant), key_id });
            }
            snapshot.tenants.push(tenant);
        }
        snapshot
    }

    /// The config file's tenants, for a gateway without a store: their priority and limits as
    /// written.
    pub fn from_config(tenants: &[sluice_config::TenantConfig]) -> Self {
        Self::new(tenants.iter().map(|t| {
            let mut tenant = Tenant::new(&t.name);
            tenant.priority = match t.priority.as_deref() {
                Some("high") => Priority::High,
                Some("low") => Priority::Low,
                _ => Priority::Normal,
            };
            if let Some(l) = &t.limits {
                tenant.limits = Limits {
                    requests_per_minute: l.requests_per_minute,
                    tokens_per_minute: l.tokens_per_minute,
                    max_concurrency: l.max_concurrency,
                    monthly_token_budget: l.monthly_token_budget,
                    allowed_models: l.allowed_models.clone(),
                };
            }
            (tenant, t.api_keys.iter().map(|k| KeyHash::of(k.expose())).collect())
        }))
    }

    /// The store's view.
    pub fn from_store(snapshot: &StoreSnapshot) -> Self {
        Self::new(snapshot.tenants.iter().map(|t| {
            let tenant = Tenant {
                name: Arc::from(t.tenant.name.as_str()),
                status: t.tenant.status,
                priority: t.tenant.priority,
                limits: t.limits.clone(),
            };
            (tenant, t.keys.iter().map(|k| k.hash).collect())
        }))
    }

    pub fn authenticate(&self, key: &str) -> Option<&KeyEntry> {
        self.keys.get(&KeyHash::of(key))
    }

    pub fn tenants(&self) -> &[Arc<Tenant>] {
        &self.tenants
    }
}

/// The current snapshot, readable without locks from any thread.
#[derive(Debug)]
pub struct Directory(ArcSwap<TenantSnapshot>);

impl Directory {
    pub fn new(snapshot: TenantSnapshot) -> Self {
        Directory(ArcSwap::from_pointee(snapshot))
    }

    pub fn current(&self) -> arc_swap::Guard<Arc<TenantSnapshot>> {
        self.0.load()
    }

    pub fn replace(&self, snapshot: TenantSnapshot) {
        self.0.store(Arc::new(snapshot));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_found_by_hash_and_swaps_are_atomic() {
        let dir = Directory::new(TenantSnapshot::new([(Tenant::new("acme"), vec![KeyHash::of("sk-acme-1")])]));
        let entry = dir.current().authenticate("sk-acme-1").cloned().unwrap();
        assert_eq!(&*entry.tenant.name, "acme");
        assert!(entry.key_id.starts_with("acme:"));
        assert!(!entry.key_id.contains("sk-acme-1"));
        assert!(dir.current().authenticate("sk-acme-2").is_none());

        dir.replace(TenantSnapshot::new([(Tenant::new("acme"), vec![KeyHash::of("sk-acme-2")])]));
        assert!(dir.current().authenticate("sk-acme-1").is_none());
        assert!(dir.current().authenticate("sk-acme-2").is_some());
    }

    #[test]
    fn allowed_models() {
        let mut tenant = Tenant::new("acme");
        assert!(tenant.allows_model("anything"));
        tenant.limits.allowed_models = Some(vec!["llama".into()]);
        assert!(tenant.allows_model("llama"));
        assert!(!tenant.allows_model("qwen"));
    }
}
