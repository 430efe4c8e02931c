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

use sluice_config::{Config, ResponseCacheBackend};
use sluice_semantic::{IndexConfig, Lookup as SemanticLookup, SemanticIndex};

use self::answer::{AnswerKind, CachedAnswer};
use self::key::{EntryKey, PurgeScope};
use self::memory::MemoryStore;
use self::metrics::CacheMetrics;
use self::redis_store::{RedisError, RedisStore};

/// The `x-sluice-cache` header's name.
pub const X_SLUICE_CACHE: http::HeaderName = http::HeaderName::from_static("x-sluice-cache");
/// A semantic hit's cosine similarity to the request it answered first.
pub const X_SLUICE_CACHE_SIMILARITY: http::HeaderName = http::HeaderName::from_static("x-sluice-cache-similarity");
/// The digest of the entry that answered or will answer the request (for purges by key).
pub const X_SLUICE_CACHE_KEY: http::HeaderName = http::HeaderName::from_static("x-sluice-cache-key");

/// What the cache did for a request, as `x-sluice-cache` says it (and the request's record).
pub use sluice_metrics::CacheStatus;

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
    /// The prompts of stored entries whose plugin asked for near matches, per tenant × model ×
    /// namespace. This replica's own: with Redis, a replica finds near matches among the
    /// entries it stored itself (exact hits are shared).
    semantic: Option<SemanticIndex>,
    pub metrics: CacheMetrics,
}

/// What a near-match lookup found.
pub struct NearMatch {
    pub answer: Arc<CachedAnswer>,
    pub digest: [u8; 32],
    pub similarity: f32,
}

/// An index entry takes about 2 KiB at 384 dimensions (vector, graph links, text): the index is
/// bounded to a share of the cache's bytes.
const SEMANTIC_ENTRY_BYTES: usize = 4096;

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
        let entries = (settings.max_bytes / SEMANTIC_ENTRY_BYTES).max(1);
        let index = IndexConfig { max_entries: entries, max_entries_per_namespace: entries, ..IndexConfig::default() };
        let semantic = SemanticIndex::new(index)
            .inspect_err(|error| tracing::error!(%error, "the semantic cache's index is unavailable"))
            .ok();
        ResponseCache { backend, max_entry_bytes: settings.max_entry_bytes, semantic, metrics }
    }

    /// The nearest stored request of `key`'s tenant, model and namespace, answered in `kind`,
    /// above `threshold` that the guard lets through, and its answer.
    pub async fn near_match(
        &self,
        key: &EntryKey,
        kind: AnswerKind,
        vector: &[f32],
        text: &str,
        threshold: f32,
    ) -> Option<NearMatch> {
        let index = self.semantic.as_ref()?;
        let space = key.space(kind);
        let candidate = match index.lookup(&space, vector, text, threshold) {
            Ok(SemanticLookup::Hit(candidate)) => candidate,
            Ok(SemanticLookup::Rejected { mismatch, .. }) => {
                tracing::debug!(mismatch = mismatch.as_str(), "near match rejected by the guard");
                return None;
            }
            Ok(SemanticLookup::Miss) => return None,
            Err(error) => {
                tracing::debug!(%error, "semantic lookup failed; a miss");
                return None;
            }
        };
        let exact = EntryKey { digest: candidate.id, ..key.clone() };
        match self.lookup(&exact).await {
            Lookup::Hit(answer) if answer.kind == kind => {
                Some(NearMatch { answer, digest: candidate.id, similarity: candidate.similarity })
            }
            Lookup::Hit(_) => None,
            // Its entry expired or was evicted: the index follows.
            Lookup::Miss | Lookup::Unavailable => {
                index.remove(&space, &candidate.id);
                None
            }
        }
    }

    /// Remembers `key`'s prompt, answered in `kind`, for near matches (HNSW insertion costs
    /// about a millisecond, so callers run it off the request's path).
    pub fn remember(&self, key: &EntryKey, kind: AnswerKind, vector: &[f32], text: &str) {
        let Some(index) = &self.semantic else { return };
        if let Err(error) = index.insert(&key.space(kind), key.digest, vector, text) {
            tracing::debug!(%error, "semantic insert failed");
        }
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
        match &self.backend {
            Backend::Memory(m) => {
                // What the entry holds in memory, without serialising it to find out.
                let size = answer.heap_bytes();
                if size > self.max_entry_bytes {
                    self.metrics.stored("too_large");
                    return;
                }
                m.put(key, Arc::new(answer), ttl, size);
                self.metrics.stored("stored");
            }
            Backend::Redis(_) => {
                let Ok(bytes) = serde_json::to_vec(&answer) else { return };
                if bytes.len() > self.max_entry_bytes {
                    self.metrics.stored("too_large");
                    return;
                }
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
        if let Some(index) = &self.semantic {
            index.purge(|space| EntryKey::space_in_scope(space, scope));
        }
        let removed = match &self.backend {
            Backend::Memory(m) => m.purge(scope),
            Backend::Redis(r) => r.purge(scope).await?,
        };
        self.metrics.evicted_many("purged", removed);
        self.refresh_size();
        Ok(removed)
    }

    /// `memory` (this replica's own entries) or `redis` (shared by the replicas).
    pub fn backend_name(&self) -> &'static str {
        match &self.backend {
            Backend::Memory(_) => "memory",
            Backend::Redis(_) => "redis",
        }
    }

    /// Updates the entries and bytes gauges (the in-process backend; Redis keeps its own).
    pub fn refresh_size(&self) {
        if let Backend::Memory(m) = &self.backend {
            let (entries, bytes) = m.size();
            self.metrics.size(entries, bytes);
        }
    }
}
