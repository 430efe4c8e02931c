//! Who may call: an immutable snapshot of tenants and API-key hashes, swapped atomically.
//!
//! The hot path reads the current snapshot without locking and never touches a database. Today
//! the snapshot is built from the config file; the store builds it from Postgres or SQLite and
//! calls [`Directory::replace`] whenever something changes.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use sha2::{Digest, Sha256};

/// SHA-256 of an API key: the only form in which keys are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyHash(pub [u8; 32]);

impl KeyHash {
    pub fn of(key: &str) -> Self {
        KeyHash(Sha256::digest(key.as_bytes()).into())
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    pub name: Arc<str>,
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
    /// Builds a snapshot from tenants and the hashes of their keys.
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
        Self::new(tenants.iter().map(|t| {
            (Tenant { name: Arc::from(t.name.as_str()) }, t.api_keys.iter().map(|k| KeyHash::of(k.expose())).collect())
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
        let dir =
            Directory::new(TenantSnapshot::new([(Tenant { name: Arc::from("acme") }, vec![KeyHash::of("sk-acme-1")])]));
        let entry = dir.current().authenticate("sk-acme-1").cloned().unwrap();
        assert_eq!(&*entry.tenant.name, "acme");
        assert!(entry.key_id.starts_with("acme:"));
        assert!(!entry.key_id.contains("sk-acme-1"));
        assert!(dir.current().authenticate("sk-acme-2").is_none());

        dir.replace(TenantSnapshot::new([(Tenant { name: Arc::from("acme") }, vec![KeyHash::of("sk-acme-2")])]));
        assert!(dir.current().authenticate("sk-acme-1").is_none());
        assert!(dir.current().authenticate("sk-acme-2").is_some());
    }
}
