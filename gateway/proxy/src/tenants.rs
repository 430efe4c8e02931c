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
use sluice_store_model::{Limits, ModelLimits, Priority, ScopeLimits, StoreSnapshot, TenantStatus};

#[derive(Debug)]
pub struct Tenant {
    pub name: Arc<str>,
    pub status: TenantStatus,
    pub priority: Priority,
    pub limits: Limits,
    /// The limits of this tenant's keys that have any, by the key id plugins see
    /// ([`key_id`]).
    pub key_limits: Vec<(Arc<str>, ScopeLimits)>,
    /// This tenant's limits per model, for models that have any.
    pub model_limits: Vec<ModelLimits>,
}

/// The short, non-secret id of a key in logs and plugins (`RequestInfo.key_id`):
/// `<tenant>:<first 8 hex digits of its SHA-256>`.
pub fn key_id(tenant: &str, hash: &KeyHash) -> Arc<str> {
    let hex = hash.to_hex();
    Arc::from(format!("{tenant}:{}", hex.get(..8).unwrap_or(&hex)))
}

/// Limits as the plugins read them: only those set, so a tenant's settings stay small.
fn compact(limits: &ScopeLimits) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    for (name, value) in [
        ("requests_per_minute", limits.requests_per_minute),
        ("tokens_per_minute", limits.tokens_per_minute),
        ("max_concurrency", limits.max_concurrency),
        ("monthly_token_budget", limits.monthly_token_budget),
    ] {
        if let Some(v) = value {
            out.insert(name.to_owned(), v.into());
        }
    }
    serde_json::Value::Object(out)
}

impl Tenant {
    pub fn new(name: &str) -> Self {
        Tenant {
            name: Arc::from(name),
            status: TenantStatus::Active,
            priority: Priority::Normal,
            limits: Limits::default(),
            key_limits: Vec::new(),
            model_limits: Vec::new(),
        }
    }

    /// Sets the limits of the keys with these digests, keeping only keys that have any.
    fn with_key_limits<'a>(mut self, keys: impl IntoIterator<Item = (&'a KeyHash, ScopeLimits)>) -> Self {
        self.key_limits = keys
            .into_iter()
            .filter(|(_, limits)| !limits.is_empty())
            .map(|(hash, limits)| (key_id(&self.name, hash), limits))
            .collect();
        self
    }

    /// Sets the per-model limits, keeping only models that have any.
    fn with_model_limits(mut self, models: &[ModelLimits]) -> Self {
        self.model_limits = models.iter().filter(|m| !m.limits.is_empty()).cloned().collect();
        self
    }

    /// Whether `model` is among the models this tenant may call.
    pub fn allows_model(&self, model: &str) -> bool {
        self.limits.allowed_models.as_ref().is_none_or(|allowed| allowed.iter().any(|m| m == model))
    }

    /// Whether any rate, concurrency or budget limit is set, the tenant's own or one of its
    /// keys' or models': the built-in rate limiter runs only for such tenants.
    pub fn is_limited(&self) -> bool {
        let l = &self.limits;
        l.requests_per_minute.is_some()
            || l.tokens_per_minute.is_some()
            || l.max_concurrency.is_some()
            || l.monthly_token_budget.is_some()
            || !self.key_limits.is_empty()
            || !self.model_limits.is_empty()
    }

    /// The settings plugins read through `config.tenant`, as JSON: name, priority, limits, the
    /// limits of its keys (`keys`, by the key id plugins see) and models (`models`, by name)
    /// that have any, and, when the store has counted them, the tokens used this calendar month
    /// (UTC) by every replica, as last written to the store.
    pub fn settings_json(&self, month_tokens: Option<u64>) -> String {
        let mut settings =
            serde_json::json!({ "name": &*self.name, "priority": self.priority, "limits": &self.limits });
        if !self.key_limits.is_empty() {
            let keys: serde_json::Map<String, serde_json::Value> =
                self.key_limits.iter().map(|(id, limits)| (id.to_string(), compact(limits))).collect();
            settings["keys"] = serde_json::Value::Object(keys);
        }
        if !self.model_limits.is_empty() {
            let models: serde_json::Map<String, serde_json::Value> =
                self.model_limits.iter().map(|m| (m.model.clone(), compact(&m.limits))).collect();
            settings["models"] = serde_json::Value::Object(models);
        }
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
                let key_id = key_id(&tenant.name, &hash);
                snapshot.keys.insert(hash, KeyEntry { tenant: Arc::clone(&tenant), key_id });
            }
            snapshot.tenants.push(tenant);
        }
        snapshot
    }

    /// The config file's tenants, for a gateway without a store: their priority and limits
    /// (their keys' and models' too) as written.
    pub fn from_config(tenants: &[sluice_config::TenantConfig]) -> Self {
        Self::new(tenants.iter().map(|t| {
            let hashes: Vec<KeyHash> = t.api_keys.iter().map(|k| KeyHash::of(k.key.expose())).collect();
            let mut tenant = Tenant::new(&t.name)
                .with_key_limits(hashes.iter().zip(t.api_keys.iter().map(|k| k.limits.unwrap_or_default())))
                .with_model_limits(t.model_limits.as_deref().unwrap_or_default());
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
            (tenant, hashes)
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
                key_limits: Vec::new(),
                model_limits: Vec::new(),
            }
            .with_key_limits(t.keys.iter().map(|k| (&k.hash, k.limits)))
            .with_model_limits(&t.model_limits);
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
    fn key_and_model_limits_make_a_tenant_limited_and_reach_the_plugins() {
        let mut tenant = Tenant::new("acme");
        assert!(!tenant.is_limited());
        let settings: serde_json::Value = serde_json::from_str(&tenant.settings_json(None)).unwrap();
        assert!(settings.get("keys").is_none() && settings.get("models").is_none(), "{settings}");

        let batch = KeyHash::of("sk-acme-batch");
        let plain = KeyHash::of("sk-acme-plain");
        let rpm = ScopeLimits { requests_per_minute: Some(60), ..ScopeLimits::default() };
        tenant = tenant.with_key_limits([(&batch, rpm), (&plain, ScopeLimits::default())]);
        assert!(tenant.is_limited(), "a key's limit makes its tenant limited");
        assert_eq!(tenant.key_limits.len(), 1, "keys without limits are left out");

        let mut models = Tenant::new("acme").with_model_limits(&[
            ModelLimits {
                model: "llama".into(),
                limits: ScopeLimits { tokens_per_minute: Some(500), ..ScopeLimits::default() },
            },
            ModelLimits { model: "qwen".into(), limits: ScopeLimits::default() },
        ]);
        assert!(models.is_limited(), "a model's limit makes its tenant limited");
        models.key_limits = tenant.key_limits.clone();

        let settings: serde_json::Value = serde_json::from_str(&models.settings_json(Some(7))).unwrap();
        let id = key_id("acme", &batch);
        let mut keys = serde_json::Map::new();
        keys.insert(id.to_string(), serde_json::json!({ "requests_per_minute": 60 }));
        assert_eq!(settings["keys"], serde_json::Value::Object(keys));
        assert_eq!(settings["models"], serde_json::json!({ "llama": { "tokens_per_minute": 500 } }));
        assert_eq!(settings["usage"]["month_tokens"], 7);

        // The id in the settings is the one the request carries.
        let snapshot = TenantSnapshot::new([(models, vec![batch])]);
        assert_eq!(snapshot.authenticate("sk-acme-batch").map(|e| e.key_id.clone()), Some(id));
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
