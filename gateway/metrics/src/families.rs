//! The Prometheus families. One [`Metrics`] per gateway instance with its own registry, so
//! several gateways can run in one process (tests, `sluice demo`).

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};

use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

use crate::record::{Api, Outcome, RecordSink, RequestRecord};

/// OpenTelemetry's advice for TTFT, extended to two minutes for long prompts under load.
const TTFT_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 15.0, 30.0, 60.0, 120.0,
];
/// OpenTelemetry's advice for TPOT, with finer steps below 10 ms for fast small models.
const TPOT_BUCKETS: &[f64] =
    &[0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5];
const E2E_BUCKETS: &[f64] =
    &[0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92, 163.84, 327.68];
/// Gateway overhead is expected in the tens of microseconds.
const OVERHEAD_BUCKETS: &[f64] = &[
    0.000_005, 0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1,
];
/// Waits in a pool's admission queue: bounded by its `queue_timeout` (5 s by default).
const QUEUE_WAIT_BUCKETS: &[f64] = &[0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];
/// OpenTelemetry's advice for `gen_ai.client.token.usage`.
const TOKEN_BUCKETS: &[f64] =
    &[1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262_144.0, 1_048_576.0, 4_194_304.0];

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("registering metric family: {0}")]
    Register(#[from] prometheus::Error),
}

/// The gateway's metric families.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    /// Requests by API and outcome: the one family with the API as a label, pre-initialised
    /// for every API and outcome so each series exists from the start.
    api_requests: IntCounterVec,
    /// `api_requests`' series, at `api × Outcome::COUNT + outcome`: no label lookup per request.
    api_cells: Vec<IntCounter>,
    ttft: HistogramVec,
    tpot: HistogramVec,
    e2e: HistogramVec,
    overhead: Histogram,
    token_usage: HistogramVec,
    tokens: IntCounterVec,
    usage_estimated: IntCounterVec,
    in_flight: IntGauge,
    endpoint_in_flight: IntGaugeVec,
    endpoint_healthy: IntGaugeVec,
    endpoint_ejections: IntCounterVec,
    engine_scrapes: IntCounterVec,
    upstream_errors: IntCounterVec,
    retries: IntCounterVec,
    queue_depth: IntGaugeVec,
    desired_replicas: IntGaugeVec,
    load_ratio: GaugeVec,
    load_input: GaugeVec,
    queue_wait: HistogramVec,
    queue_rejections: IntCounterVec,
    prefix_blocks: IntGaugeVec,
    prefix_routed_blocks: IntCounterVec,
    connections_open: IntGaugeVec,
    connections_refused: IntCounterVec,
    protocol_errors: IntCounterVec,
    client_write_timeouts: IntCounter,
    /// Handles of each tenant and model's series, resolved once: a label lookup hashes every
    /// label value, and a request touches up to nine series.
    series: Arc<RwLock<SeriesMap>>,
}

type SeriesMap = HashMap<(Arc<str>, Arc<str>), Arc<Series>, foldhash::fast::RandomState>;

/// One tenant and model's series. Records carry configured names only (or `unknown`), so the
/// map is as bounded as the series themselves. A series is created on its first sample, as
/// `with_label_values` would.
#[derive(Default)]
struct Series {
    requests: [OnceLock<IntCounter>; Outcome::COUNT],
    e2e: OnceLock<Histogram>,
    ttft: OnceLock<Histogram>,
    tpot: OnceLock<Histogram>,
    input: OnceLock<Histogram>,
    output: OnceLock<Histogram>,
    prompt: OnceLock<IntCounter>,
    cached: OnceLock<IntCounter>,
    completion: OnceLock<IntCounter>,
}

/// Handles for one endpoint, resolved once so the hot path does no label lookups.
#[derive(Clone)]
pub struct EndpointMetrics {
    pub in_flight: IntGauge,
    pub healthy: IntGauge,
    pub ejections: IntCounter,
    upstream_errors: IntCounterVec,
    engine_scrapes: IntCounterVec,
    pool: String,
    endpoint: String,
}

impl EndpointMetrics {
    /// Counts a failed attempt; `kind` is one of a fixed set (connect, timeout, status_5xx, …).
    pub fn upstream_error(&self, kind: &'static str) {
        self.upstream_errors.with_label_values(&[self.pool.as_str(), self.endpoint.as_str(), kind]).inc();
    }

    /// Counts a read of the engine's own metrics page; `outcome` is `ok`, `error` (no answer,
    /// a non-2xx status, a page too large or not text) or `timeout`.
    pub fn engine_scrape(&self, outcome: &'static str) {
        self.engine_scrapes.with_label_values(&[self.pool.as_str(), self.endpoint.as_str(), outcome]).inc();
    }
}

/// Handles for one listener's connections (`data` or `admin`).
#[derive(Clone)]
pub struct ConnectionMetrics {
    pub open: IntGauge,
    refused: IntCounterVec,
    protocol_errors: IntCounterVec,
    listener: &'static str,
}

impl ConnectionMetrics {
    /// Counts a connection closed right after accept; `reason` is `max_connections` or
    /// `max_connections_per_ip`.
    pub fn refuse(&self, reason: &'static str) {
        self.refused.with_label_values(&[self.listener, reason]).inc();
    }

    /// Counts a request answered before any handler ran because it could not be parsed as
    /// HTTP/1.1; `status` is 400, 414 or 431.
    pub fn protocol_error(&self, status: u16) {
        self.protocol_errors.with_label_values(&[self.listener, status.to_string().as_str()]).inc();
    }
}

/// The statuses hyper answers unparseable requests with, as label values.
const PROTOCOL_ERROR_STATUSES: [u16; 3] = [400, 414, 431];

/// Handles for one pool's prefix index.
#[derive(Clone)]
pub struct PrefixIndexMetrics {
    /// Prompt blocks the index remembers.
    pub blocks: IntGauge,
    /// Blocks of the prompts routed: those the chosen endpoint was believed to hold, and the rest.
    pub held: IntCounter,
    pub not_held: IntCounter,
}

/// One pool's autoscaling signal: the replicas it needs, the load ratio they follow from, and
/// that ratio's inputs (an input that is not measured has no series).
#[derive(Clone)]
pub struct PoolLoadMetrics {
    pub desired_replicas: IntGauge,
    pub ratio: Gauge,
    inputs: GaugeVec,
    pool: String,
}

impl PoolLoadMetrics {
    pub const INPUTS: [&'static str; 4] = ["kv_usage", "ttft_slo_ratio", "tpot_slo_ratio", "available_endpoints"];

    /// Sets input `name` (one of [`PoolLoadMetrics::INPUTS`]), or removes it when unmeasured.
    pub fn input(&self, name: &'static str, value: Option<f64>) {
        match value {
            Some(v) => self.inputs.with_label_values(&[self.pool.as_str(), name]).set(v),
            None => {
                let _ = self.inputs.remove_label_values(&[self.pool.as_str(), name]);
            }
        }
    }
}

/// Handles for one pool's admission queue.
#[derive(Clone)]
pub struct PoolQueueMetrics {
    /// Time spent queued by the requests that had to wait and were then admitted.
    pub wait: Histogram,
    depth: IntGaugeVec,
    rejections: IntCounterVec,
    pool: String,
}

impl PoolQueueMetrics {
    /// The tenant's queue depth gauge; resolve once per tenant, not per request.
    pub fn depth(&self, tenant: &str) -> IntGauge {
        self.depth.with_label_values(&[self.pool.as_str(), tenant])
    }

    /// Counts a request refused by the queue; `reason` is `timeout` or `queue_full`.
    pub fn reject(&self, tenant: &str, reason: &'static str) {
        self.rejections.with_label_values(&[self.pool.as_str(), tenant, reason]).inc();
    }
}

fn histogram(name: &str, help: &str, buckets: &[f64], labels: &[&str]) -> Result<HistogramVec, prometheus::Error> {
    HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets.to_vec()), labels)
}

impl Metrics {
    pub fn new() -> Result<Self, MetricsError> {
        let registry = Registry::new();
        let m = Metrics {
            requests: IntCounterVec::new(
                Opts::new("sluice_requests_total", "Requests handled, by tenant, model and outcome."),
                &["tenant", "model", "outcome"],
            )?,
            api_requests: IntCounterVec::new(
                Opts::new(
                    "sluice_api_requests_total",
                    "Requests handled, by API (chat, completions, embeddings, responses, messages) and outcome.",
                ),
                &["api", "outcome"],
            )?,
            api_cells: Vec::new(),
            ttft: histogram(
                "gen_ai_server_time_to_first_token_seconds",
                "Time from receiving a streamed request to relaying its first generated token.",
                TTFT_BUCKETS,
                &["tenant", "model"],
            )?,
            tpot: histogram(
                "gen_ai_server_time_per_output_token_seconds",
                "Time per output token after the first: (e2e - ttft) / (output tokens - 1).",
                TPOT_BUCKETS,
                &["tenant", "model"],
            )?,
            e2e: histogram(
                "gen_ai_server_request_duration_seconds",
                "End-to-end request duration as seen by the gateway.",
                E2E_BUCKETS,
                &["tenant", "model"],
            )?,
            overhead: Histogram::with_opts(
                HistogramOpts::new(
                    "sluice_gateway_overhead_seconds",
                    "Time spent inside the gateway per request, excluding waits on the upstream and the client.",
                )
                .buckets(OVERHEAD_BUCKETS.to_vec()),
            )?,
            token_usage: histogram(
                "gen_ai_client_token_usage",
                "Tokens per request by type (input, output).",
                TOKEN_BUCKETS,
                &["model", "gen_ai_token_type"],
            )?,
            tokens: IntCounterVec::new(
                Opts::new("sluice_tokens_total", "Tokens by tenant, model and type (prompt, cached, completion)."),
                &["tenant", "model", "type"],
            )?,
            usage_estimated: IntCounterVec::new(
                Opts::new(
                    "sluice_usage_estimated_requests_total",
                    "Requests whose recorded tokens are partly the gateway's estimate (the worker reported no usage), by outcome.",
                ),
                &["outcome"],
            )?,
            in_flight: IntGauge::new("sluice_requests_in_flight", "Requests being handled right now.")?,
            endpoint_in_flight: IntGaugeVec::new(
                Opts::new("sluice_endpoint_in_flight", "Requests in flight to each upstream endpoint."),
                &["pool", "endpoint"],
            )?,
            endpoint_healthy: IntGaugeVec::new(
                Opts::new(
                    "sluice_endpoint_healthy",
                    "1 when the endpoint passes health checks and is not ejected, else 0.",
                ),
                &["pool", "endpoint"],
            )?,
            endpoint_ejections: IntCounterVec::new(
                Opts::new("sluice_endpoint_ejections_total", "Passive ejections after consecutive failures."),
                &["pool", "endpoint"],
            )?,
            engine_scrapes: IntCounterVec::new(
                Opts::new(
                    "sluice_engine_scrapes_total",
                    "Reads of each endpoint's engine metrics page (queue, KV cache, prefix cache) by outcome.",
                ),
                &["pool", "endpoint", "outcome"],
            )?,
            upstream_errors: IntCounterVec::new(
                Opts::new("sluice_upstream_errors_total", "Failed upstream attempts by kind."),
                &["pool", "endpoint", "kind"],
            )?,
            retries: IntCounterVec::new(
                Opts::new("sluice_upstream_retries_total", "Attempts retried on another endpoint."),
                &["pool"],
            )?,
            queue_depth: IntGaugeVec::new(
                Opts::new(
                    "sluice_pool_queue_depth",
                    "Requests waiting for a slot in a saturated pool, by pool and tenant.",
                ),
                &["pool", "tenant"],
            )?,
            desired_replicas: IntGaugeVec::new(
                Opts::new(
                    "sluice_pool_desired_replicas",
                    "Workers the pool needs for its load and SLOs as this replica measures them (for an HPA or KEDA).",
                ),
                &["pool"],
            )?,
            load_ratio: GaugeVec::new(
                Opts::new(
                    "sluice_pool_load_ratio",
                    "How loaded the pool is against what it should be (1: as it should be; desired replicas are \
                     the available endpoints times this).",
                ),
                &["pool"],
            )?,
            load_input: GaugeVec::new(
                Opts::new(
                    "sluice_pool_load_input",
                    "What the load ratio is computed from: kv_usage (the engines' mean), ttft_slo_ratio and \
                     tpot_slo_ratio (p95 of measured over target), available_endpoints.",
                ),
                &["pool", "input"],
            )?,
            prefix_blocks: IntGaugeVec::new(
                Opts::new(
                    "sluice_prefix_index_blocks",
                    "Prompt blocks a pool's prefix index remembers (what the host routed, all endpoints together).",
                ),
                &["pool"],
            )?,
            prefix_routed_blocks: IntCounterVec::new(
                Opts::new(
                    "sluice_prefix_routed_blocks_total",
                    "Blocks of the prompts routed by plugins, by whether the chosen endpoint was believed to hold them.",
                ),
                &["pool", "held"],
            )?,
            queue_wait: histogram(
                "sluice_pool_queue_wait_seconds",
                "Time requests waited in a saturated pool's admission queue before being admitted.",
                QUEUE_WAIT_BUCKETS,
                &["pool"],
            )?,
            queue_rejections: IntCounterVec::new(
                Opts::new(
                    "sluice_pool_queue_rejections_total",
                    "Requests refused by a saturated pool's admission queue, by reason (timeout, queue_full).",
                ),
                &["pool", "tenant", "reason"],
            )?,
            connections_open: IntGaugeVec::new(
                Opts::new("sluice_connections_open", "Client connections open, by listener (data, admin)."),
                &["listener"],
            )?,
            connections_refused: IntCounterVec::new(
                Opts::new(
                    "sluice_connections_refused_total",
                    "Client connections closed right after accept, by listener and the cap they met \
                     (max_connections, max_connections_per_ip).",
                ),
                &["listener", "reason"],
            )?,
            protocol_errors: IntCounterVec::new(
                Opts::new(
                    "sluice_http_protocol_errors_total",
                    "Requests that could not be parsed as HTTP/1.1 (a head too large, a malformed request \
                     line or header, conflicting framing), answered before any handler ran, by listener \
                     and status (400, 414, 431).",
                ),
                &["listener", "status"],
            )?,
            client_write_timeouts: IntCounter::new(
                "sluice_client_write_timeouts_total",
                "Streamed responses cut because their client left them unread for server.write_timeout.",
            )?,
            series: Arc::default(),
            registry,
        };
        m.registry.register(Box::new(m.requests.clone()))?;
        m.registry.register(Box::new(m.api_requests.clone()))?;
        let m = Metrics {
            api_cells: Api::ALL
                .iter()
                .flat_map(|api| Outcome::ALL.iter().map(move |o| (api.label(), o.label())))
                .map(|(api, outcome)| m.api_requests.with_label_values(&[api, outcome]))
                .collect(),
            ..m
        };
        m.registry.register(Box::new(m.ttft.clone()))?;
        m.registry.register(Box::new(m.tpot.clone()))?;
        m.registry.register(Box::new(m.e2e.clone()))?;
        m.registry.register(Box::new(m.overhead.clone()))?;
        m.registry.register(Box::new(m.token_usage.clone()))?;
        m.registry.register(Box::new(m.tokens.clone()))?;
        m.registry.register(Box::new(m.usage_estimated.clone()))?;
        // The outcomes a worker's work can end in, at 0 from the start: estimates are rare, and
        // a family with no series is missing from /metrics (and from dashboards' queries).
        for outcome in
            [Outcome::Ok, Outcome::UpstreamError, Outcome::UpstreamTimeout, Outcome::Unavailable, Outcome::Cancelled]
        {
            m.usage_estimated.with_label_values(&[outcome.label()]);
        }
        m.registry.register(Box::new(m.in_flight.clone()))?;
        m.registry.register(Box::new(m.endpoint_in_flight.clone()))?;
        m.registry.register(Box::new(m.endpoint_healthy.clone()))?;
        m.registry.register(Box::new(m.endpoint_ejections.clone()))?;
        m.registry.register(Box::new(m.engine_scrapes.clone()))?;
        m.registry.register(Box::new(m.upstream_errors.clone()))?;
        m.registry.register(Box::new(m.retries.clone()))?;
        m.registry.register(Box::new(m.queue_depth.clone()))?;
        m.registry.register(Box::new(m.desired_replicas.clone()))?;
        m.registry.register(Box::new(m.load_ratio.clone()))?;
        m.registry.register(Box::new(m.load_input.clone()))?;
        m.registry.register(Box::new(m.queue_wait.clone()))?;
        m.registry.register(Box::new(m.prefix_blocks.clone()))?;
        m.registry.register(Box::new(m.prefix_routed_blocks.clone()))?;
        m.registry.register(Box::new(m.queue_rejections.clone()))?;
        m.registry.register(Box::new(m.connections_open.clone()))?;
        m.registry.register(Box::new(m.connections_refused.clone()))?;
        m.registry.register(Box::new(m.protocol_errors.clone()))?;
        m.registry.register(Box::new(m.client_write_timeouts.clone()))?;
        Ok(m)
    }

    /// The registry, for families other crates add (plugins, store, …).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn in_flight(&self) -> &IntGauge {
        &self.in_flight
    }

    pub fn endpoint(&self, pool: &str, endpoint: &str) -> EndpointMetrics {
        EndpointMetrics {
            in_flight: self.endpoint_in_flight.with_label_values(&[pool, endpoint]),
            healthy: self.endpoint_healthy.with_label_values(&[pool, endpoint]),
            ejections: self.endpoint_ejections.with_label_values(&[pool, endpoint]),
            upstream_errors: self.upstream_errors.clone(),
            engine_scrapes: self.engine_scrapes.clone(),
            pool: pool.to_owned(),
            endpoint: endpoint.to_owned(),
        }
    }

    pub fn pool_queue(&self, pool: &str) -> PoolQueueMetrics {
        PoolQueueMetrics {
            wait: self.queue_wait.with_label_values(&[pool]),
            depth: self.queue_depth.clone(),
            rejections: self.queue_rejections.clone(),
            pool: pool.to_owned(),
        }
    }

    /// The autoscaling signal of one pool; see [`PoolLoadMetrics`].
    pub fn pool_load(&self, pool: &str) -> PoolLoadMetrics {
        PoolLoadMetrics {
            desired_replicas: self.desired_replicas.with_label_values(&[pool]),
            ratio: self.load_ratio.with_label_values(&[pool]),
            inputs: self.load_input.clone(),
            pool: pool.to_owned(),
        }
    }

    /// Drops the autoscaling series of a pool that is gone.
    pub fn forget_pool_load(&self, pool: &str) {
        let _ = self.desired_replicas.remove_label_values(&[pool]);
        let _ = self.load_ratio.remove_label_values(&[pool]);
        for input in PoolLoadMetrics::INPUTS {
            let _ = self.load_input.remove_label_values(&[pool, input]);
        }
    }

    /// The prefix index handles of one pool; every series starts at zero.
    pub fn prefix_index(&self, pool: &str) -> PrefixIndexMetrics {
        PrefixIndexMetrics {
            blocks: self.prefix_blocks.with_label_values(&[pool]),
            held: self.prefix_routed_blocks.with_label_values(&[pool, "yes"]),
            not_held: self.prefix_routed_blocks.with_label_values(&[pool, "no"]),
        }
    }

    /// The connection handles of one listener; both series start at zero.
    pub fn connections(&self, listener: &'static str) -> ConnectionMetrics {
        for reason in ["max_connections", "max_connections_per_ip"] {
            self.connections_refused.with_label_values(&[listener, reason]);
        }
        for status in PROTOCOL_ERROR_STATUSES {
            self.protocol_errors.with_label_values(&[listener, status.to_string().as_str()]);
        }
        ConnectionMetrics {
            open: self.connections_open.with_label_values(&[listener]),
            refused: self.connections_refused.clone(),
            protocol_errors: self.protocol_errors.clone(),
            listener,
        }
    }

    /// Counts a stream cut because its client stopped reading it.
    pub fn client_write_timeout(&self) {
        self.client_write_timeouts.inc();
    }

    pub fn retry(&self, pool: &str) {
        self.retries.with_label_values(&[pool]).inc();
    }

    /// The Prometheus text exposition of every family.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 * 1024);
        // Encoding into a Vec only fails on invalid families, which `new` would have refused.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }
}

impl Metrics {
    fn series(&self, tenant: &Arc<str>, model: &Arc<str>) -> Arc<Series> {
        let key = (Arc::clone(tenant), Arc::clone(model));
        if let Some(series) = self.series.read().ok().and_then(|map| map.get(&key).cloned()) {
            return series;
        }
        match self.series.write() {
            Ok(mut map) => Arc::clone(map.entry(key).or_default()),
            // A poisoned lock only loses the cache: the handles still resolve from the families.
            Err(_) => Arc::default(),
        }
    }
}

impl RecordSink for Metrics {
    fn record(&self, r: &RequestRecord) {
        let (tenant, model) = (&*r.tenant, &*r.model);
        let pair = [tenant, model];
        let s = self.series(&r.tenant, &r.model);
        let requests = || self.requests.with_label_values(&[tenant, model, r.outcome.label()]);
        match s.requests.get(r.outcome as usize) {
            Some(cell) => cell.get_or_init(requests).inc(),
            None => requests().inc(),
        }
        if let Some(cell) = r.api.and_then(|api| self.api_cells.get(api as usize * Outcome::COUNT + r.outcome as usize))
        {
            cell.inc();
        }
        s.e2e.get_or_init(|| self.e2e.with_label_values(&pair)).observe(r.e2e.as_secs_f64());
        self.overhead.observe(r.overhead.as_secs_f64());
        if let Some(ttft) = r.ttft {
            s.ttft.get_or_init(|| self.ttft.with_label_values(&pair)).observe(ttft.as_secs_f64());
        }
        if let Some(tpot) = r.tpot {
            s.tpot.get_or_init(|| self.tpot.with_label_values(&pair)).observe(tpot.as_secs_f64());
        }
        if r.attempts > 0 && (r.prompt_tokens > 0 || r.completion_tokens > 0) {
            for (cell, kind, n) in [(&s.input, "input", r.prompt_tokens), (&s.output, "output", r.completion_tokens)] {
                cell.get_or_init(|| self.token_usage.with_label_values(&[model, kind])).observe(n as f64);
            }
            for (cell, kind, n) in [
                (&s.prompt, "prompt", r.prompt_tokens),
                (&s.cached, "cached", r.cached_tokens),
                (&s.completion, "completion", r.completion_tokens),
            ] {
                if n > 0 {
                    cell.get_or_init(|| self.tokens.with_label_values(&[tenant, model, kind])).inc_by(n);
                }
            }
            // Rare (streams cut short, answers without usage): a label lookup is fine here.
            if r.estimated.any() {
                self.usage_estimated.with_label_values(&[r.outcome.label()]).inc();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::{Api, Outcome};

    #[test]
    fn a_record_shows_up_under_its_names() {
        let m = Metrics::new().unwrap();
        m.record(&RequestRecord {
            tenant: Arc::from("acme"),
            model: Arc::from("llama"),
            api: Some(Api::ChatCompletions),
            stream: true,
            pool: Some(Arc::from("p")),
            endpoint: Some(Arc::from("w1")),
            status: 200,
            outcome: Outcome::Ok,
            attempts: 1,
            ttft: Some(Duration::from_millis(120)),
            tpot: Some(Duration::from_millis(20)),
            e2e: Duration::from_secs(1),
            overhead: Duration::from_micros(40),
            prompt_tokens: 100,
            cached_tokens: 64,
            completion_tokens: 10,
            estimated: crate::Estimated::default(),
            cache: None,
        });
        let ep = m.endpoint("p", "w1");
        ep.in_flight.inc();
        ep.upstream_error("connect");
        let queue = m.pool_queue("p");
        queue.depth("acme").set(2);
        queue.reject("acme", "timeout");
        queue.wait.observe(0.2);
        let text = String::from_utf8(m.render()).unwrap();
        for needle in [
            r#"sluice_requests_total{model="llama",outcome="ok",tenant="acme"} 1"#,
            r#"gen_ai_server_time_to_first_token_seconds_count{model="llama",tenant="acme"} 1"#,
            r#"gen_ai_server_time_per_output_token_seconds_count{model="llama",tenant="acme"} 1"#,
            r#"sluice_tokens_total{model="llama",tenant="acme",type="cached"} 64"#,
            r#"gen_ai_client_token_usage_sum{gen_ai_token_type="input",model="llama"} 100"#,
            r#"sluice_gateway_overhead_seconds_bucket{le="0.00005"} 1"#,
            r#"sluice_endpoint_in_flight{endpoint="w1",pool="p"} 1"#,
            r#"sluice_upstream_errors_total{endpoint="w1",kind="connect",pool="p"} 1"#,
            r#"sluice_pool_queue_depth{pool="p",tenant="acme"} 2"#,
            r#"sluice_pool_queue_rejections_total{pool="p",reason="timeout",tenant="acme"} 1"#,
            r#"sluice_pool_queue_wait_seconds_bucket{pool="p",le="0.25"} 1"#,
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
    }

    #[test]
    fn series_resolved_once_keep_counting_per_tenant_model_and_outcome() {
        let m = Metrics::new().unwrap();
        let record = |tenant: &str, outcome: Outcome, completion_tokens: u64| RequestRecord {
            tenant: Arc::from(tenant),
            model: Arc::from("llama"),
            api: Some(Api::ChatCompletions),
            stream: false,
            pool: None,
            endpoint: None,
            status: 200,
            outcome,
            attempts: 1,
            ttft: None,
            tpot: None,
            e2e: Duration::from_millis(5),
            overhead: Duration::from_micros(40),
            prompt_tokens: 10,
            cached_tokens: 0,
            completion_tokens,
            estimated: crate::Estimated {
                prompt: outcome == Outcome::Cancelled,
                completion: outcome == Outcome::Cancelled,
            },
            cache: None,
        };
        for _ in 0..3 {
            m.record(&record("acme", Outcome::Ok, 2));
        }
        m.record(&record("acme", Outcome::Cancelled, 1));
        m.record(&record("globex", Outcome::Ok, 4));
        let text = String::from_utf8(m.render()).unwrap();
        for needle in [
            r#"sluice_requests_total{model="llama",outcome="ok",tenant="acme"} 3"#,
            r#"sluice_requests_total{model="llama",outcome="cancelled",tenant="acme"} 1"#,
            r#"sluice_requests_total{model="llama",outcome="ok",tenant="globex"} 1"#,
            r#"gen_ai_server_request_duration_seconds_count{model="llama",tenant="acme"} 4"#,
            r#"sluice_tokens_total{model="llama",tenant="acme",type="completion"} 7"#,
            r#"gen_ai_client_token_usage_count{gen_ai_token_type="output",model="llama"} 5"#,
            r#"sluice_usage_estimated_requests_total{outcome="cancelled"} 1"#,
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
        assert!(!text.contains(r#"type="cached""#), "no sample, no series:\n{text}");
        assert!(text.contains(r#"sluice_usage_estimated_requests_total{outcome="ok"} 0"#), "measured usage:\n{text}");
        assert!(!text.contains("time_to_first_token_seconds_count"), "no sample, no series:\n{text}");
    }
}
