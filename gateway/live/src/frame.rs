//! What one live frame says: the gateway's last second, as the dashboard receives it in
//! `data:` of an `event: frame` on `/admin/api/live`. The format is documented in
//! `docs/metrics.md` ("Live stream"); fields are only ever added, so an older dashboard keeps
//! working against a newer gateway.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Bumped only for incompatible changes; additions keep the number.
pub const FRAME_VERSION: u32 = 1;

/// Seconds over which TTFT and TPOT percentiles are computed (a sliding window, recomputed
/// every second): one second holds too few requests for a meaningful p99.
pub const PERCENTILE_WINDOW_SECS: u32 = 10;

/// Seconds over which [`SloLive::attainment`] is computed.
pub const ATTAINMENT_WINDOW_SECS: u32 = 60;

/// One second of the gateway, as seen by the dashboard.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct LiveFrame {
    /// [`FRAME_VERSION`].
    pub v: u32,
    /// Unix time in milliseconds at the end of the interval this frame covers.
    pub at_ms: i64,
    /// Length of that interval in milliseconds: 1000 give or take scheduling.
    pub interval_ms: u32,
    /// Every request, whatever its tenant or model.
    pub total: Traffic,
    /// By tenant name (`unknown` for requests refused before authentication). Tenants seen in
    /// the last [`ATTAINMENT_WINDOW_SECS`] seconds.
    pub tenants: BTreeMap<String, TenantLive>,
    /// By model name (`unknown` for models nobody serves), same retention as `tenants`.
    pub models: BTreeMap<String, Traffic>,
    /// By API (`chat`, `completions`, `embeddings`, `responses`, `messages`), same retention as
    /// `models`. Requests refused before their API was known (an unknown path) count in `total`
    /// only.
    #[serde(default)]
    pub apis: BTreeMap<String, Traffic>,
    /// Every configured upstream endpoint, in pool order.
    pub workers: Vec<WorkerLive>,
    /// By plugin name: plugins called since the gateway started.
    pub plugins: BTreeMap<String, PluginLive>,
    /// Requests waiting in the admission queues of saturated pools at the end of the interval,
    /// by pool, then tenant; pools and tenants with nobody waiting are left out.
    #[serde(default)]
    pub queues: BTreeMap<String, BTreeMap<String, u64>>,
    /// Further panels by name (`cache`, `rate_limits`, …), each a JSON value its source defines;
    /// the dashboard draws objects of numbers as bar lists and anything else as a table.
    #[serde(default)]
    pub panels: BTreeMap<String, serde_json::Value>,
}

/// Request and token rates for one slice of the traffic. Requests count in the second they
/// finished (a stream's tokens all land when it ends).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Traffic {
    pub requests_per_s: f64,
    /// Requests that ended in anything but success or a client going away (`outcome` other
    /// than `ok`, `cancelled` and `rate_limited`, which `rejected_per_s` counts).
    pub errors_per_s: f64,
    /// Requests the gateway refused with 429 before contacting a worker (rate limits).
    #[serde(default)]
    pub rejected_per_s: f64,
    /// Prompt tokens.
    pub tokens_in_per_s: f64,
    /// Completion tokens.
    pub tokens_out_per_s: f64,
    /// Prompt tokens the worker found in its prefix cache.
    #[serde(default)]
    pub cached_tokens_per_s: f64,
    /// Requests in flight at the end of the interval, where the gateway counts them (overall
    /// today; `None` per tenant and model).
    #[serde(default)]
    pub in_flight: Option<u64>,
    /// Time to first token over the last [`PERCENTILE_WINDOW_SECS`] seconds; `None` without
    /// samples.
    #[serde(default)]
    pub ttft_ms: Option<Percentiles>,
    /// Time per output token over the last [`PERCENTILE_WINDOW_SECS`] seconds.
    #[serde(default)]
    pub tpot_ms: Option<Percentiles>,
    /// What the response cache did for this slice; absent when no request of the last
    /// [`ATTAINMENT_WINDOW_SECS`] seconds went through a cache policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<CacheLive>,
}

/// The response cache's part of a slice: this interval's rates and the window's counts.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct CacheLive {
    pub hits_per_s: f64,
    pub semantic_hits_per_s: f64,
    pub misses_per_s: f64,
    pub bypasses_per_s: f64,
    /// Prompt and completion tokens of the answers served from the cache (work no worker did).
    pub saved_tokens_per_s: f64,
    /// The same, counted over the last [`ATTAINMENT_WINDOW_SECS`] seconds.
    pub window: CacheCounts,
}

/// Requests by what the cache did, and the tokens its answers saved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CacheCounts {
    pub hits: u64,
    pub semantic_hits: u64,
    pub misses: u64,
    pub bypasses: u64,
    pub saved_tokens: u64,
}

impl CacheCounts {
    pub fn is_empty(&self) -> bool {
        self.hits + self.semantic_hits + self.misses + self.bypasses == 0
    }

    /// Hits (exact and semantic) of the requests looked up; `None` when none were.
    pub fn hit_ratio(&self) -> Option<f64> {
        let hits = self.hits + self.semantic_hits;
        let looked_up = hits + self.misses;
        (looked_up > 0).then(|| hits as f64 / looked_up as f64)
    }

    pub fn add(&mut self, other: &CacheCounts) {
        self.hits += other.hits;
        self.semantic_hits += other.semantic_hits;
        self.misses += other.misses;
        self.bypasses += other.bypasses;
        self.saved_tokens += other.saved_tokens;
    }
}

/// Percentiles in milliseconds, with the number of samples they summarise.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub count: u64,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TenantLive {
    #[serde(flatten)]
    pub traffic: Traffic,
    /// `None` when the tenant has no SLO for the models it used.
    #[serde(default)]
    pub slo: Option<SloLive>,
}

/// A tenant's latency objective for one model: each request must meet both targets (a missing
/// one always passes), and `attainment` of the requests must.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct SloTarget {
    pub ttft_ms: Option<u32>,
    pub tpot_ms: Option<u32>,
    /// In (0, 1].
    pub attainment: f64,
}

impl LiveFrame {
    /// Requests `tenant` has waiting in every pool's admission queue.
    pub fn queued(&self, tenant: &str) -> u64 {
        self.queues.values().filter_map(|q| q.get(tenant)).sum()
    }
}

impl SloTarget {
    /// Whether one streamed request met the target. Whole (non-streamed) responses are not
    /// judged against it: their first token arrives with the rest of the answer.
    pub fn met_by(&self, ttft_ms: Option<f64>, tpot_ms: Option<f64>) -> bool {
        let ok = |target: Option<u32>, value: Option<f64>| match (target, value) {
            (Some(t), Some(v)) => v <= f64::from(t),
            _ => true,
        };
        ok(self.ttft_ms, ttft_ms) && ok(self.tpot_ms, tpot_ms)
    }
}

/// Goodput for one tenant.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct SloLive {
    /// The target of the model the tenant sent most requests to in the attainment window
    /// (the one the dashboard draws).
    pub target: SloTarget,
    /// Requests that count towards the SLO in this interval: finished streams, minus those the
    /// client caused (4xx before a worker, worker 4xx) or abandoned. Whole (non-streamed)
    /// responses are not judged: TTFT and TPOT targets describe streams, and a whole answer's
    /// first token arrives with its last.
    pub eligible: u64,
    /// Of those, requests that met their model's targets.
    pub met: u64,
    /// `met / eligible` over the last [`ATTAINMENT_WINDOW_SECS`] seconds; `None` without
    /// eligible requests.
    pub attainment: Option<f64>,
    /// The requests `attainment` covers: eligible ones over the last
    /// [`ATTAINMENT_WINDOW_SECS`] seconds (0 from gateways older than this field).
    #[serde(default)]
    pub window_eligible: u64,
    /// Requests of the same window that would count but are not judged: whole (non-streamed)
    /// responses. `window_eligible` of `window_eligible + window_unjudged` is what the
    /// attainment covers.
    #[serde(default)]
    pub window_unjudged: u64,
}

impl SloLive {
    /// `(judged, of)`: the requests behind `attainment` and all requests of the window that
    /// count towards the SLO; `None` when the window has none (or the gateway predates the
    /// counts).
    pub fn coverage(&self) -> Option<(u64, u64)> {
        let of = self.window_eligible + self.window_unjudged;
        (of > 0).then_some((self.window_eligible, of))
    }
}

/// One upstream endpoint.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct WorkerLive {
    pub pool: String,
    pub name: String,
    /// Requests the gateway has in flight on it.
    pub in_flight: u64,
    pub health: WorkerHealth,
    /// What the engine's own `/metrics` said at the last successful scrape; `None` for engines
    /// that are not scraped or have not answered yet.
    #[serde(default)]
    pub engine: Option<EngineLive>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerHealth {
    #[default]
    Healthy,
    /// Failing active health checks.
    Unhealthy,
    /// Passively ejected after consecutive failures, for a backoff.
    Ejected,
    /// Taken out of rotation by an operator; finishes what it has.
    Drained,
}

/// Engine-side load, from vLLM (`vllm:*`) or SGLang (`sglang:*`) metrics.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct EngineLive {
    /// Requests in the running batch.
    pub running: Option<f64>,
    /// Requests queued in the engine: the queue depth.
    pub waiting: Option<f64>,
    /// KV cache in use, 0–1.
    pub kv_cache_usage: Option<f64>,
    /// Prompt tokens found in the prefix cache over those looked up, 0–1, since the previous
    /// scrape (the last known value when nothing was looked up since).
    pub prefix_cache_hit_rate: Option<f64>,
    /// How old the sample is, in milliseconds: large when the engine stopped answering.
    pub age_ms: u64,
}

/// Per-plugin rates over the interval, from the plugin host's counters.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct PluginLive {
    pub calls_per_s: f64,
    pub errors_per_s: f64,
    /// Mean time per call over the interval in microseconds; `None` without calls.
    pub mean_us: Option<f64>,
    /// Total calls since the gateway started.
    pub calls_total: u64,
    pub errors_total: u64,
    /// Bindings of the plugin whose circuit breaker is open (the plugin is skipped and its
    /// failure policy applies) or half-open (probing).
    #[serde(default)]
    pub breakers_open: u32,
    #[serde(default)]
    pub breakers_half_open: u32,
    /// Calls skipped per second because a breaker was open.
    #[serde(default)]
    pub short_circuits_per_s: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slo_verdicts() {
        let t = SloTarget { ttft_ms: Some(500), tpot_ms: Some(50), attainment: 0.95 };
        assert!(t.met_by(Some(500.0), Some(50.0)));
        assert!(!t.met_by(Some(500.1), Some(10.0)));
        assert!(!t.met_by(Some(100.0), Some(51.0)));
        // A request with one token has no TPOT: only TTFT decides.
        assert!(t.met_by(Some(100.0), None));
        let ttft_only = SloTarget { ttft_ms: Some(200), tpot_ms: None, attainment: 0.9 };
        assert!(ttft_only.met_by(Some(150.0), Some(10_000.0)));
    }

    #[test]
    fn frames_round_trip_and_tolerate_missing_optional_fields() {
        let mut frame =
            LiveFrame { v: FRAME_VERSION, at_ms: 1_700_000_000_000, interval_ms: 1000, ..Default::default() };
        frame.total.requests_per_s = 3.0;
        frame.total.ttft_ms = Some(Percentiles { p50: 1.0, p95: 2.0, p99: 3.0, count: 4 });
        frame.tenants.insert("acme".into(), TenantLive::default());
        frame.workers.push(WorkerLive { pool: "p".into(), name: "w".into(), ..Default::default() });
        frame.panels.insert("cache".into(), serde_json::json!({"hit_ratio": 0.5}));
        frame.queues.entry("p".into()).or_default().insert("acme".into(), 3);
        frame.apis.insert("messages".into(), Traffic { requests_per_s: 2.0, ..Traffic::default() });
        let json = serde_json::to_string(&frame).unwrap();
        let back: LiveFrame = serde_json::from_str(&json).unwrap();
        assert_eq!(back, frame);
        // A minimal frame (an older gateway) still parses.
        let old = r#"{"v":1,"at_ms":1,"interval_ms":1000,
            "total":{"requests_per_s":0,"errors_per_s":0,"tokens_in_per_s":0,"tokens_out_per_s":0},
            "tenants":{},"models":{},"workers":[],"plugins":{}}"#;
        let f: LiveFrame = serde_json::from_str(old).unwrap();
        assert!(f.panels.is_empty());
        assert!(f.queues.is_empty());
        assert!(f.apis.is_empty(), "a frame from before the API dimension has none");
        // An SLO from a gateway that predates the window counts: no coverage to show.
        let old_slo =
            r#"{"target":{"ttft_ms":500,"tpot_ms":null,"attainment":0.9},"eligible":3,"met":2,"attainment":0.5}"#;
        let s: SloLive = serde_json::from_str(old_slo).unwrap();
        assert_eq!((s.window_eligible, s.window_unjudged, s.coverage()), (0, 0, None));
    }

    #[test]
    fn coverage_is_the_judged_share_of_the_window() {
        let s = SloLive { window_eligible: 8, window_unjudged: 4, ..SloLive::default() };
        assert_eq!(s.coverage(), Some((8, 12)));
        let whole_only = SloLive { window_unjudged: 5, ..SloLive::default() };
        assert_eq!(whole_only.coverage(), Some((0, 5)));
    }
}
