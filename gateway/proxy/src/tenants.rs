//! Who may call, and within which limits: an immutable snapshot of tenants and API-key
//! digests, swapped atomically.
//!
//! The hot path reads the current snapshot without locking and never touches a database. The
//! snapshot is built from the config file ([`TenantSnapshot::from_config`]) or from the store
//! ([`TenantSnapshot::from_store`]); the store's watcher calls [`Directory::replace`] whenever
//! something changes.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
pub use sluice_store_model::keys::KeyDigest as KeyHash;
use sluice_store_model::{Limits, Priority, StoreSnapshot, TenantStatus};

#[derive(Debug)]
pub struct Tenant {
    pub name: Arc<str>,
    pub status: TenantStatus,
    pub priority: Priority,
    pub limits: Limits,
    /// Requests in flight for this tenant on this replica. Shared by every snapshot that
    /// names the tenant, so a reload in the middle of a burst does not reset the count.
    pub in_flight: Arc<AtomicU64>,
}

impl Tenant {
    pub fn new(name: &str) -> Self {
        Tenant {
            name: Arc::from(name),
            status: TenantStatus::Active,
            priority: Priority::Normal,
            limits: Limits::default(),
            in_flight: Arc::default(),
        }
    }

    /// Whether `model` is among the models this tenant may call.
    pub fn allows_model(&self, model: &str) -> bool {
        self.limits.allowed_models.as_ref().is_none_or(|allowed| allowed.iter().any(|m| m == model))
    }

    /// Takes a concurrency slot if the tenant has one free; the slot is returned when the
    /// permit drops (when the response has been relayed or abandoned).
    pub fn admit(self: &Arc<Self>) -> Option<ConcurrencyPermit> {
        let counter = Arc::clone(&self.in_flight);
        match self.limits.max_concurrency {
            None => {
                counter.fetch_add(1, Ordering::Relaxed);
            }
            Some(max) => {
                counter.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1)).ok()?;
            }
        }
        Some(ConcurrencyPermit(counter))
    }
}

/// One of a tenant's concurrency slots, held for the life of a request.
#[derive(Debug)]
pub struct ConcurrencyPermit(Arc<AtomicU64>);

impl Drop for ConcurrencyPermit {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
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

    pub fn from_config(tenants: &[sluice_config::TenantConfig]) -> Self {
        Self::new(
            tenants
                .iter()
                .map(|t| (Tenant::new(&t.name), t.api_keys.iter().map(|k| KeyHash::of(k.expose())).collect())),
        )
    }

    /// The store's view, keeping the in-flight counters of tenants `previous` already had.
    pub fn from_store(snapshot: &StoreSnapshot, previous: &TenantSnapshot) -> Self {
        let counters: HashMap<&str, &Arc<AtomicU64>> =
            previous.tenants.iter().map(|t| (&*t.name, &t.in_flight)).collect();
        Self::new(snapshot.tenants.iter().map(|t| {
            let in_flight = counters.get(t.tenant.name.as_str()).map_or_else(Arc::default, |c| Arc::clone(c));
            let tenant = Tenant {
                name: Arc::from(t.tenant.name.as_str()),
                status: t.tenant.status,
                priority: t.tenant.priority,
                limits: t.limits.clone(),
                in_flight,
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
    fn concurrency_slots_are_bounded_and_survive_a_reload() {
        let mut tenant = Tenant::new("acme");
        tenant.limits.max_concurrency = Some(2);
        let tenant = Arc::new(tenant);
        let a = tenant.admit().unwrap();
        let _b = tenant.admit().unwrap();
        assert!(tenant.admit().is_none());
        drop(a);
        let _c = tenant.admit().unwrap();

        let before = TenantSnapshot { keys: HashMap::new(), tenants: vec![Arc::clone(&tenant)] };
        let store = StoreSnapshot {
            tenants: vec![sluice_store_model::SnapshotTenant {
                tenant: sluice_store_model::Tenant {
                    id: 1,
                    name: "acme".into(),
                    status: TenantStatus::Active,
                    priority: Priority::Normal,
                    created_at: Default::default(),
                    updated_at: Default::default(),
                },
                limits: Limits { max_concurrency: Some(2), ..Limits::default() },
                slos: vec![],
                keys: vec![],
            }],
            ..StoreSnapshot::default()
        };
        let after = TenantSnapshot::from_store(&store, &before);
        assert!(after.tenants()[0].admit().is_none(), "the two slots held before the reload still count");
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
