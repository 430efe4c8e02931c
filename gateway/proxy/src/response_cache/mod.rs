//! The response cache's mechanism: the policy (which requests, what forms the key, how long)
//! is the `cache` plugin's, through the `response-cache` capability; this module keeps the
//! entries, answers hits as whole bodies or streams, and stores answers that completed.
//!
//! Every entry is keyed by the binding's namespace, the request's tenant and model, and a
//! digest of the request ([`key`]): a tenant's requests can only ever reach that tenant's
//! entries, whatever a plugin asks.

pub mod answer;
pub mod key;
pub mod memory;
pub mod metrics;
pub mod redis_store;

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::HeaderValue;
use sluice_config::{Config, ResponseCacheBackend};

use self::answer::CachedAnswer;
use self::key::{EntryKey, PurgeScope};
use self::memory::MemoryStore;
use self::metrics::CacheMetrics;
use self::redis_store::{RedisError, RedisStore};

/// The `x-sluice-cache` header's name.
pub const X_SLUICE_CACHE: http::HeaderName = http::HeaderName::from_static("x-sluice-cache");
/// The digest of the entry that answered or will answer the request (for purges by key).
pub const X_SLUICE_CACHE_KEY: http::HeaderName = http::HeaderName::from_static("x-sluice-cache-key");

/// What the cache did for a request, as `x-sluice-cache` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    Hit,
    SemanticHit,
    Miss,
    Bypass,
}

impl CacheStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheStatus::Hit => "hit",
            CacheStatus::SemanticHit => "semantic-hit",
            CacheStatus::Miss => "miss",
            CacheStatus::Bypass => "bypass",
        }
    }

    pub fn header(self) -> HeaderValue {
        HeaderValue::from_static(self.as_str())
    }
}

enum Backend {
    Memory(MemoryStore),
    Redis(RedisStore),
}

/// What a lookup found.
pub enum Lookup {
    Hit(Arc<CachedAnswer>),
    Miss,
    /// The backend is away: serve the request from a worker, and do not store its answer.
    Unavailable,
}

#[derive(Debug, thiserror::Error)]
pub enum PurgeError {
    #[error(transparent)]
    Redis(#[from] RedisError),
}

pub struct ResponseCache {
    backend: Backend,
    max_entry_bytes: usize,
    pub metrics: CacheMetrics,
}

impl ResponseCache {
    pub fn new(config: &Config, metrics: CacheMetrics) -> Self {
        let settings = &config.response_cache;
        let backend = match (settings.backend, &config.redis) {
            (ResponseCacheBackend::Redis, Some(redis)) => {
                Backend::Redis(RedisStore::new(redis.url.expose(), &redis.key_prefix, redis.timeout))
            }
            // Validation admits `redis` only with `[redis]`.
            _ => Backend::Memory(MemoryStore::new(settings.max_bytes, metrics.clone())),
        };
        ResponseCache { backend, max_entry_bytes: settings.max_entry_bytes, metrics }
    }

    pub fn max_entry_bytes(&self) -> usize {
        self.max_entry_bytes
    }

    pub async fn lookup(&self, key: &EntryKey) -> Lookup {
        let started = Instant::now();
        let found = match &self.backend {
            Backend::Memory(m) => m.get(key).map_or(Lookup::Miss, Lookup::Hit),
            Backend::Redis(r) => match r.get(key).await {
                Ok(Some(bytes)) => match serde_json::from_slice::<CachedAnswer>(&bytes) {
                    Ok(answer) => Lookup::Hit(Arc::new(answer)),
                    // Written by another version, say: a miss, overwritten by this answer.
                    Err(_) => Lookup::Miss,
                },
                Ok(None) => Lookup::Miss,
                Err(error) => {
                    tracing::warn!(%error, "response cache unavailable; request served without it");
                    Lookup::Unavailable
                }
            },
        };
        self.metrics.looked_up(started.elapsed().as_secs_f64());
        found
    }

    /// Stores `answer` under `key` for `ttl`, off the request's path when it waits on Redis.
    pub fn store(self: &Arc<Self>, key: EntryKey, answer: CachedAnswer, ttl: Duration) {
        let Ok(bytes) = serde_json::to_vec(&answer) else { return };
        if bytes.len() > self.max_entry_bytes {
            self.metrics.stored("too_large");
            return;
        }
        match &self.backend {
            Backend::Memory(m) => {
                m.put(key, Arc::new(answer), ttl, bytes.len());
                self.metrics.stored("stored");
            }
            Backend::Redis(_) => {
                let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
                let cache = Arc::clone(self);
                runtime.spawn(async move {
                    let Backend::Redis(r) = &cache.backend else { return };
                    match r.put(&key, bytes, ttl).await {
                        Ok(()) => cache.metrics.stored("stored"),
                        Err(error) => {
                            cache.metrics.stored("error");
                            tracing::debug!(%error, "response cache store failed");
                        }
                    }
                });
            }
        }
    }

    /// Removes the entries in `scope`; returns how many.
    pub async fn purge(&self, scope: &PurgeScope) -> Result<u64, PurgeError> {
        let removed = match &self.backend {
            Backend::Memory(m) => m.purge(scope),
            Backend::Redis(r) => r.purge(scope).await?,
        };
        self.metrics.evicted_many("purged", removed);
        self.refresh_size();
        Ok(removed)
    }

    /// Updates the entries and bytes gauges (the in-process backend; Redis keeps its own).
    pub fn refresh_size(&self) {
        if let Backend::Memory(m) = &self.backend {
            let (entries, bytes) = m.size();
            self.metrics.size(entries, bytes);
        }
    }
}
