//! Which worker made each stored Responses answer, so that a request continuing it
//! (`previous_response_id`) goes to that worker: vLLM keeps stored responses in the memory of the
//! worker that made them, and any other worker answers such a follow-up with a 404.
//!
//! An entry is keyed by the tenant and the response id ([`AffinityKey`]): a tenant's follow-up
//! can only ever be routed by that tenant's own responses, whatever id it sends. It names the
//! endpoint by its pool, name and URL ([`Holder`]), the endpoint's identity across pool rebuilds.
//! Entries live `[response_affinity] ttl` in this replica's memory (moka, at most `max_entries`,
//! the least used go first) and, with `[redis]`, in Redis too (`SET … EX`), so that every replica
//! finds the responses the others recorded. Redis is asked only when this replica does not know
//! the response; a Redis that fails or is slow (past `[redis] timeout`) is counted and skipped,
//! never failing the request: the follow-up is then routed as usual.

mod metrics;
mod redis_store;

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sluice_config::Config;
use tokio::task::JoinHandle;

pub use self::metrics::{AffinityMetrics, FollowUp};
use self::redis_store::RedisStore;
use crate::tenants::Tenant;
use crate::upstream::{Endpoint, Pool};

/// Longer ids are neither looked up nor remembered: OpenAI's and vLLM's are ~50 bytes.
pub const MAX_RESPONSE_ID_BYTES: usize = 256;

/// A response of one tenant. The tenant is part of the key by construction: there is no way to
/// make a key from an id alone.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AffinityKey {
    tenant: Arc<str>,
    response_id: Box<str>,
}

impl AffinityKey {
    /// `None` for an empty id or one longer than [`MAX_RESPONSE_ID_BYTES`].
    pub fn new(tenant: &Tenant, response_id: &str) -> Option<Self> {
        (!response_id.is_empty() && response_id.len() <= MAX_RESPONSE_ID_BYTES)
            .then(|| AffinityKey { tenant: Arc::clone(&tenant.name), response_id: Box::from(response_id) })
    }

    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    pub fn response_id(&self) -> &str {
        &self.response_id
    }
}

/// The endpoint that made a response: its pool, name and base URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub pool: String,
    pub endpoint: String,
    pub url: String,
}

impl Holder {
    pub fn of(endpoint: &Endpoint) -> Self {
        Holder {
            pool: endpoint.pool.to_string(),
            endpoint: endpoint.name.to_string(),
            url: endpoint.base_url.to_string(),
        }
    }

    /// This endpoint's index in `pool`, if the pool still has it.
    pub fn index_in(&self, pool: &Pool) -> Option<usize> {
        if *pool.name != *self.pool {
            return None;
        }
        pool.endpoints.iter().position(|e| *e.name == *self.endpoint && e.base_url.to_string() == self.url)
    }
}

pub struct ResponseAffinity {
    local: moka::sync::Cache<AffinityKey, Arc<Holder>>,
    shared: Option<RedisStore>,
    ttl: Duration,
    pub metrics: AffinityMetrics,
}

impl ResponseAffinity {
    pub fn new(config: &Config, metrics: AffinityMetrics) -> Self {
        let settings = config.response_affinity;
        let local = moka::sync::Cache::builder().max_capacity(settings.max_entries).time_to_live(settings.ttl).build();
        let shared = config.redis.as_ref().map(|r| RedisStore::new(r.url.expose(), &r.key_prefix, r.timeout));
        ResponseAffinity { local, shared, ttl: settings.ttl, metrics }
    }

    /// The endpoint that made `key`'s response, if this replica or Redis knows it.
    pub async fn lookup(&self, key: &AffinityKey) -> Option<Arc<Holder>> {
        if let Some(holder) = self.local.get(key) {
            return Some(holder);
        }
        let shared = self.shared.as_ref()?;
        match shared.get(key).await {
            Ok(Some(holder)) => {
                let holder = Arc::new(holder);
                self.local.insert(key.clone(), Arc::clone(&holder));
                Some(holder)
            }
            Ok(None) => None,
            Err(error) => {
                self.metrics.backend_error();
                tracing::warn!(%error, "response affinity: Redis lookup failed; this replica's memory only");
                None
            }
        }
    }

    /// Remembers that `holder` made `key`'s response: in this replica at once and, with
    /// `[redis]`, in Redis by a task of its own. The handle completes once Redis has it (or gave
    /// up, at most `[redis] timeout` later); the write runs to its end whether or not anyone
    /// awaits the handle.
    pub fn record(self: &Arc<Self>, key: AffinityKey, holder: Holder) -> Option<JoinHandle<()>> {
        let holder = Arc::new(holder);
        self.local.insert(key.clone(), Arc::clone(&holder));
        self.shared.as_ref()?;
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        let affinity = Arc::clone(self);
        Some(runtime.spawn(async move { affinity.write_shared(&key, &holder).await }))
    }

    async fn write_shared(&self, key: &AffinityKey, holder: &Holder) {
        let Some(shared) = &self.shared else { return };
        if let Err(error) = shared.put(key, holder, self.ttl).await {
            self.metrics.backend_error();
            tracing::warn!(%error, "response affinity: Redis write failed; only this replica remembers the response");
        }
    }

    /// What a Responses request asking to be stored leaves to do once its answer is known.
    pub fn pending(self: &Arc<Self>, tenant: &Arc<Tenant>) -> PendingRecord {
        PendingRecord { affinity: Arc::clone(self), tenant: Arc::clone(tenant) }
    }
}

/// A stored Responses answer on its way: recorded once it succeeded, with its id and endpoint.
pub struct PendingRecord {
    affinity: Arc<ResponseAffinity>,
    tenant: Arc<Tenant>,
}

impl PendingRecord {
    /// A whole answer (`2xx`) from `endpoint`: its id is the body's `id`. See
    /// [`ResponseAffinity::record`] for the handle.
    pub fn whole(self, body: &[u8], endpoint: &Endpoint) -> Option<JoinHandle<()>> {
        let id = sluice_openai::agents::response_id::of_answer(body)?;
        self.stream(&id, endpoint)
    }

    /// A streamed answer from `endpoint` that completed (`response.completed` or
    /// `response.incomplete`); `id` came in its `response.created` event.
    pub fn stream(self, id: &str, endpoint: &Endpoint) -> Option<JoinHandle<()>> {
        let key = AffinityKey::new(&self.tenant, id)?;
        self.affinity.record(key, Holder::of(endpoint))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tenants::TenantSnapshot;

    fn config(extra: &str) -> Config {
        let text = format!(
            "[[pools]]\nname = \"p\"\nmodels = [\"m\"]\n\
             endpoints = [{{ url = \"http://127.0.0.1:1000\", name = \"a\" }}, {{ url = \"http://127.0.0.1:1001\", name = \"b\" }}]\n\
             [[tenants]]\nname = \"t1\"\napi_keys = [\"sk-t1-0123456789\"]\n\
             [[tenants]]\nname = \"t2\"\napi_keys = [\"sk-t2-0123456789\"]\n{extra}"
        );
        Config::from_toml(&text, &[], &|_| None).unwrap()
    }

    fn tenants(config: &Config) -> Vec<Arc<Tenant>> {
        TenantSnapshot::from_config(&config.tenants).tenants().to_vec()
    }

    fn affinity(config: &Config) -> Arc<ResponseAffinity> {
        let registry = prometheus::Registry::new();
        Arc::new(ResponseAffinity::new(config, AffinityMetrics::new(&registry).unwrap()))
    }

    #[tokio::test]
    async fn a_response_is_found_by_its_own_tenant_only() {
        let config = config("");
        let all = tenants(&config);
        let (t1, t2) = (&all[0], &all[1]);
        let affinity = affinity(&config);
        let pool = Pool::new(&config.pools[0], &sluice_metrics::Metrics::new().unwrap()).unwrap();
        let holder = Holder::of(&pool.endpoints[1]);
        assert!(affinity.record(AffinityKey::new(t1, "resp_1").unwrap(), holder.clone()).is_none(), "no Redis");
        let found = affinity.lookup(&AffinityKey::new(t1, "resp_1").unwrap()).await.unwrap();
        assert_eq!(*found, holder);
        assert_eq!(found.index_in(&pool), Some(1));
        assert!(affinity.lookup(&AffinityKey::new(t2, "resp_1").unwrap()).await.is_none(), "another tenant's id");
        assert!(affinity.lookup(&AffinityKey::new(t1, "resp_2").unwrap()).await.is_none());
    }

    #[test]
    fn ids_out_of_bounds_make_no_key_and_holders_are_matched_exactly() {
        let config = config("");
        let all = tenants(&config);
        let t1 = &all[0];
        assert!(AffinityKey::new(t1, "").is_none());
        assert!(AffinityKey::new(t1, &"r".repeat(MAX_RESPONSE_ID_BYTES + 1)).is_none());
        let key = AffinityKey::new(t1, &"r".repeat(MAX_RESPONSE_ID_BYTES)).unwrap();
        assert_eq!((key.tenant(), key.response_id().len()), ("t1", MAX_RESPONSE_ID_BYTES));
        let pool = Pool::new(&config.pools[0], &sluice_metrics::Metrics::new().unwrap()).unwrap();
        let moved = Holder { url: "http://127.0.0.1:2000/".into(), ..Holder::of(&pool.endpoints[0]) };
        assert_eq!(moved.index_in(&pool), None, "same name, another worker");
        let elsewhere = Holder { pool: "q".into(), ..Holder::of(&pool.endpoints[0]) };
        assert_eq!(elsewhere.index_in(&pool), None);
    }

    #[tokio::test]
    async fn an_unreachable_redis_falls_back_to_this_replicas_memory() {
        // Nothing listens on port 1.
        let config = config("[redis]\nurl = \"redis://127.0.0.1:1\"\ntimeout = \"50ms\"\n");
        let all = tenants(&config);
        let affinity = affinity(&config);
        let key = AffinityKey::new(&all[0], "resp_1").unwrap();
        assert!(affinity.lookup(&key).await.is_none());
        let holder = Holder { pool: "p".into(), endpoint: "a".into(), url: "http://127.0.0.1:1000/".into() };
        affinity.record(key.clone(), holder.clone()).unwrap().await.unwrap();
        assert_eq!(affinity.lookup(&key).await.as_deref(), Some(&holder));
        assert!(affinity.metrics.backend_errors() >= 2, "the failed lookup and write are counted");
    }
}
