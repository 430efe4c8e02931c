//! The response cache's metric families (`sluice_cache_*`, see docs/metrics.md).

use prometheus::{Histogram, HistogramOpts, IntCounterVec, IntGauge, Opts, Registry};

/// Lookups take microseconds in memory and up to `[redis] timeout` in Redis.
const LOOKUP_BUCKETS: &[f64] =
    &[0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1];

/// The bypass reason of a Responses request that continues a stored response or asks for its
/// own to be stored: the host's, not a plugin's (see `stages/cache.rs`).
pub const STORED_STATE: &str = "stored-state";

#[derive(Clone)]
pub struct CacheMetrics {
    requests: IntCounterVec,
    bypasses: IntCounterVec,
    stores: IntCounterVec,
    evictions: IntCounterVec,
    saved_tokens: IntCounterVec,
    saved_gpu_seconds: prometheus::CounterVec,
    lookup: Histogram,
    entries: IntGauge,
    bytes: IntGauge,
}

impl CacheMetrics {
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = CacheMetrics {
            requests: IntCounterVec::new(
                Opts::new("sluice_cache_requests_total", "Requests a cache plugin ran for, by what the cache did"),
                &["tenant", "model", "result"],
            )?,
            bypasses: IntCounterVec::new(
                Opts::new("sluice_cache_bypasses_total", "Requests that did not use the cache, by reason"),
                &["reason"],
            )?,
            stores: IntCounterVec::new(
                Opts::new(
                    "sluice_cache_stores_total",
                    "Answers offered to the cache after a miss, by what became of them",
                ),
                &["result"],
            )?,
            evictions: IntCounterVec::new(
                Opts::new("sluice_cache_evictions_total", "Entries removed from the in-process cache, by cause"),
                &["cause"],
            )?,
            saved_tokens: IntCounterVec::new(
                Opts::new("sluice_cache_saved_tokens_total", "Tokens answered from the cache instead of a worker"),
                &["tenant", "model", "kind"],
            )?,
            saved_gpu_seconds: prometheus::CounterVec::new(
                Opts::new(
                    "sluice_cache_saved_gpu_seconds_total",
                    "Worker time the cache saved: each hit's original request's duration",
                ),
                &["tenant", "model"],
            )?,
            lookup: Histogram::with_opts(
                HistogramOpts::new("sluice_cache_lookup_seconds", "Time to look up a request in the cache")
                    .buckets(LOOKUP_BUCKETS.to_vec()),
            )?,
            entries: IntGauge::new("sluice_cache_entries", "Entries in the in-process cache")?,
            bytes: IntGauge::new("sluice_cache_bytes", "Bytes the in-process cache holds")?,
        };
        // Fixed vocabularies start at zero, so that their series exist before the first event.
        for reason in sluice_plugin_host::BypassReason::ALL {
            m.bypasses.with_label_values(&[reason.as_str()]);
        }
        m.bypasses.with_label_values(&[STORED_STATE]);
        for result in ["stored", "not_cacheable", "too_large", "error"] {
            m.stores.with_label_values(&[result]);
        }
        for cause in ["expired", "size", "purged"] {
            m.evictions.with_label_values(&[cause]);
        }
        registry.register(Box::new(m.requests.clone()))?;
        registry.register(Box::new(m.bypasses.clone()))?;
        registry.register(Box::new(m.stores.clone()))?;
        registry.register(Box::new(m.evictions.clone()))?;
        registry.register(Box::new(m.saved_tokens.clone()))?;
        registry.register(Box::new(m.saved_gpu_seconds.clone()))?;
        registry.register(Box::new(m.lookup.clone()))?;
        registry.register(Box::new(m.entries.clone()))?;
        registry.register(Box::new(m.bytes.clone()))?;
        Ok(m)
    }

    pub fn request(&self, tenant: &str, model: &str, result: &str) {
        self.requests.with_label_values(&[tenant, model, result]).inc();
    }

    pub fn bypassed(&self, reason: &str) {
        self.bypasses.with_label_values(&[reason]).inc();
    }

    pub fn stored(&self, result: &str) {
        self.stores.with_label_values(&[result]).inc();
    }

    pub fn evicted(&self, cause: &str) {
        self.evictions.with_label_values(&[cause]).inc();
    }

    pub fn evicted_many(&self, cause: &str, n: u64) {
        self.evictions.with_label_values(&[cause]).inc_by(n);
    }

    pub fn saved(&self, tenant: &str, model: &str, prompt: u64, completion: u64, gpu_seconds: f64) {
        self.saved_tokens.with_label_values(&[tenant, model, "prompt"]).inc_by(prompt);
        self.saved_tokens.with_label_values(&[tenant, model, "completion"]).inc_by(completion);
        self.saved_gpu_seconds.with_label_values(&[tenant, model]).inc_by(gpu_seconds);
    }

    pub fn looked_up(&self, seconds: f64) {
        self.lookup.observe(seconds);
    }

    pub fn size(&self, entries: u64, bytes: u64) {
        self.entries.set(i64::try_from(entries).unwrap_or(i64::MAX));
        self.bytes.set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }
}
