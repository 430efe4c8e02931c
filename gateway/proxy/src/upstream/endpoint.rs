//! One upstream worker: its address, live load, and health (active checks and passive ejection).

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::Uri;
use sluice_config::{EjectionConfig, EndpointConfig};
use sluice_metrics::{Api, EndpointMetrics};

use super::engine_metrics::EngineTelemetry;
use super::fair_queue::PoolPermit;

/// Why an attempt failed, as a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    Connect,
    Status5xx,
    Overloaded,
    Timeout,
    Stream,
}

impl FailureKind {
    pub fn label(self) -> &'static str {
        match self {
            FailureKind::Connect => "connect",
            FailureKind::Status5xx => "status_5xx",
            FailureKind::Overloaded => "status_429",
            FailureKind::Timeout => "timeout",
            FailureKind::Stream => "stream",
        }
    }

    /// Overload is the worker protecting itself: retry elsewhere, but do not eject it for that.
    fn counts_against_health(self) -> bool {
        !matches!(self, FailureKind::Overloaded)
    }
}

#[derive(Debug, Default)]
struct Ejection {
    consecutive_failures: u32,
    /// Ejections since the last success; sets the backoff length.
    streak: u32,
}

pub struct Endpoint {
    pub name: Arc<str>,
    pub pool: Arc<str>,
    pub http2: bool,
    /// The base URL as configured; with the pool, name and protocol it identifies the endpoint
    /// across pool rebuilds.
    pub base_url: Uri,
    uris: [Uri; 5],
    health_uri: Uri,
    in_flight: AtomicUsize,
    /// Prompt tokens of the requests sent here that have not had their first byte back: the
    /// prefill work the gateway knows is queued on the worker (what routing calls prefill ahead).
    in_flight_prefill: AtomicU64,
    /// Requests it may have in flight; `None`: unlimited.
    max_in_flight: Option<usize>,
    drained: AtomicBool,
    /// Set by the active health checker.
    healthy: AtomicBool,
    consecutive_probe_failures: AtomicU32,
    consecutive_probe_successes: AtomicU32,
    /// Milliseconds since `clock` until which the endpoint is ejected; 0 when it is not.
    ejected_until_ms: AtomicU64,
    ejection: Mutex<Ejection>,
    ejection_config: EjectionConfig,
    clock: Instant,
    pub metrics: EndpointMetrics,
    /// What the engine's own metrics page said last.
    pub engine: EngineTelemetry,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint").field("name", &self.name).field("pool", &self.pool).finish_non_exhaustive()
    }
}

fn join(base: &Uri, path: &str) -> Result<Uri, http::Error> {
    // A base given as `http://host:8000/v1` (the OpenAI client convention) must not become
    // `/v1/v1/...`.
    let prefix = base.path().trim_end_matches('/');
    let prefix = prefix.strip_suffix("/v1").filter(|_| path.starts_with("/v1/")).unwrap_or(prefix);
    let mut parts = base.clone().into_parts();
    parts.path_and_query = Some(format!("{prefix}{path}").parse()?);
    Ok(Uri::from_parts(parts)?)
}

impl Endpoint {
    pub fn new(
        pool: Arc<str>,
        config: &EndpointConfig,
        max_in_flight: Option<u32>,
        health_path: &str,
        ejection_config: EjectionConfig,
        metrics: EndpointMetrics,
    ) -> Result<Self, http::Error> {
        let uris = [
            join(&config.url, Api::ChatCompletions.path())?,
            join(&config.url, Api::Completions.path())?,
            join(&config.url, Api::Embeddings.path())?,
            join(&config.url, Api::Responses.path())?,
            join(&config.url, Api::Messages.path())?,
        ];
        metrics.healthy.set(1);
        Ok(Endpoint {
            name: Arc::from(config.name.as_str()),
            pool,
            http2: config.http2,
            base_url: config.url.clone(),
            uris,
            health_uri: join(&config.url, health_path)?,
            in_flight: AtomicUsize::new(0),
            in_flight_prefill: AtomicU64::new(0),
            max_in_flight: max_in_flight.map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
            drained: AtomicBool::new(false),
            healthy: AtomicBool::new(true),
            consecutive_probe_failures: AtomicU32::new(0),
            consecutive_probe_successes: AtomicU32::new(0),
            ejected_until_ms: AtomicU64::new(0),
            ejection: Mutex::new(Ejection::default()),
            ejection_config,
            clock: Instant::now(),
            metrics,
            engine: EngineTelemetry::new(config.engine, &config.url)?,
        })
    }

    pub fn uri(&self, api: Api) -> &Uri {
        match api {
            Api::ChatCompletions => &self.uris[0],
            Api::Completions => &self.uris[1],
            Api::Embeddings => &self.uris[2],
            Api::Responses => &self.uris[3],
            Api::Messages => &self.uris[4],
        }
    }

    pub fn health_uri(&self) -> &Uri {
        &self.health_uri
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Prompt tokens sent here still waiting for their first byte.
    pub fn in_flight_prefill(&self) -> u64 {
        self.in_flight_prefill.load(Ordering::Relaxed)
    }

    pub fn max_in_flight(&self) -> Option<usize> {
        self.max_in_flight
    }

    /// Below its in-flight limit (always, without one).
    pub fn has_room(&self) -> bool {
        self.max_in_flight.is_none_or(|max| self.in_flight() < max)
    }

    /// Passing health checks, not ejected and not drained.
    pub fn is_available(&self) -> bool {
        self.healthy.load(Ordering::Relaxed) && !self.is_ejected() && !self.is_drained()
    }

    /// Taken out of rotation by an operator: requests already on it finish, no new ones come.
    pub fn is_drained(&self) -> bool {
        self.drained.load(Ordering::Relaxed)
    }

    pub fn set_drained(&self, drained: bool) {
        self.drained.store(drained, Ordering::Relaxed);
    }

    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    pub fn is_ejected(&self) -> bool {
        let until = self.ejected_until_ms.load(Ordering::Relaxed);
        until != 0 && self.now_ms() < until
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.clock.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Counts a request in flight until the guard is dropped.
    pub fn begin(self: &Arc<Self>) -> InFlightGuard {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.metrics.in_flight.inc();
        InFlightGuard { endpoint: Arc::clone(self), permit: None, prefill: 0 }
    }

    /// Counts a request in flight if the endpoint is below its limit. Two requests racing for
    /// its last slot cannot both get it.
    pub fn try_begin(self: &Arc<Self>) -> Option<InFlightGuard> {
        if let Some(max) = self.max_in_flight {
            self.in_flight.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1)).ok()?;
        } else {
            self.in_flight.fetch_add(1, Ordering::Relaxed);
        }
        self.metrics.in_flight.inc();
        Some(InFlightGuard { endpoint: Arc::clone(self), permit: None, prefill: 0 })
    }

    pub fn record_success(&self) {
        if let Ok(mut e) = self.ejection.lock() {
            e.consecutive_failures = 0;
            e.streak = 0;
        }
    }

    pub fn record_failure(&self, kind: FailureKind) {
        self.metrics.upstream_error(kind.label());
        if !kind.counts_against_health() {
            return;
        }
        let Ok(mut e) = self.ejection.lock() else { return };
        e.consecutive_failures += 1;
        if e.consecutive_failures < self.ejection_config.consecutive_failures || self.is_ejected() {
            return;
        }
        let factor = 2u32.saturating_pow(e.streak.min(16));
        let backoff = self.ejection_config.base.saturating_mul(factor).min(self.ejection_config.max);
        e.streak += 1;
        e.consecutive_failures = 0;
        let until = self.now_ms().saturating_add(u64::try_from(backoff.as_millis()).unwrap_or(u64::MAX)).max(1);
        self.ejected_until_ms.store(until, Ordering::Relaxed);
        self.metrics.ejections.inc();
        self.metrics.healthy.set(0);
        tracing::warn!(pool = %self.pool, endpoint = %self.name, ?backoff, "endpoint ejected after consecutive failures");
    }

    /// Feeds one active probe result; flips health after the configured thresholds.
    pub fn record_probe(&self, ok: bool, unhealthy_threshold: u32, healthy_threshold: u32) {
        if ok {
            self.consecutive_probe_failures.store(0, Ordering::Relaxed);
            let n = self.consecutive_probe_successes.fetch_add(1, Ordering::Relaxed) + 1;
            if n >= healthy_threshold && !self.healthy.swap(true, Ordering::Relaxed) {
                tracing::info!(pool = %self.pool, endpoint = %self.name, "endpoint healthy again");
            }
        } else {
            self.consecutive_probe_successes.store(0, Ordering::Relaxed);
            let n = self.consecutive_probe_failures.fetch_add(1, Ordering::Relaxed) + 1;
            if n >= unhealthy_threshold && self.healthy.swap(false, Ordering::Relaxed) {
                tracing::warn!(pool = %self.pool, endpoint = %self.name, "endpoint failed health checks");
            }
        }
        self.metrics.healthy.set(i64::from(self.is_available()));
    }

    /// How long until an ejection ends (zero when not ejected).
    pub fn ejection_remaining(&self) -> Duration {
        let until = self.ejected_until_ms.load(Ordering::Relaxed);
        Duration::from_millis(until.saturating_sub(self.now_ms()))
    }
}

/// Decrements the endpoint's in-flight count when dropped, then returns the request's pool
/// permit, if it holds one: the endpoint's slot is free by the time the next queued request is
/// admitted.
#[derive(Debug)]
pub struct InFlightGuard {
    endpoint: Arc<Endpoint>,
    permit: Option<PoolPermit>,
    /// Prompt tokens charged to the endpoint's prefill in flight and not yet released.
    prefill: u64,
}

impl InFlightGuard {
    pub fn endpoint(&self) -> &Arc<Endpoint> {
        &self.endpoint
    }

    /// Keeps the request's admission to the pool until the response ends.
    pub fn hold(&mut self, permit: Option<PoolPermit>) {
        self.permit = permit;
    }

    /// Counts the request's prompt tokens in the endpoint's prefill in flight until
    /// [`InFlightGuard::prefill_done`] (or the end of the request).
    pub fn charge_prefill(&mut self, tokens: u64) {
        self.endpoint.in_flight_prefill.fetch_add(tokens, Ordering::Relaxed);
        self.prefill += tokens;
    }

    /// The worker answered (its first byte arrived): the prompt is computed.
    pub fn prefill_done(&mut self) {
        let tokens = std::mem::take(&mut self.prefill);
        if tokens > 0 {
            self.endpoint.in_flight_prefill.fetch_sub(tokens, Ordering::Relaxed);
        }
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.prefill_done();
        self.endpoint.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.endpoint.metrics.in_flight.dec();
        // `permit` drops after this, releasing the pool slot.
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(url: &str, failures: u32) -> Arc<Endpoint> {
        let metrics = sluice_metrics::Metrics::new().unwrap();
        let cfg = EndpointConfig {
            name: "w".into(),
            url: url.parse().unwrap(),
            http2: false,
            max_in_flight: None,
            engine: Default::default(),
        };
        let ej = EjectionConfig {
            consecutive_failures: failures,
            base: Duration::from_secs(10),
            max: Duration::from_secs(60),
        };
        Arc::new(Endpoint::new(Arc::from("p"), &cfg, None, "/health", ej, metrics.endpoint("p", "w")).unwrap())
    }

    #[test]
    fn paths_join_with_and_without_v1_base() {
        let e = endpoint("http://h:8000", 1);
        assert_eq!(e.uri(Api::ChatCompletions).to_string(), "http://h:8000/v1/chat/completions");
        assert_eq!(e.health_uri().to_string(), "http://h:8000/health");
        let e = endpoint("http://h:8000/v1", 1);
        assert_eq!(e.uri(Api::Embeddings).to_string(), "http://h:8000/v1/embeddings");
        let e = endpoint("http://h/prefix", 1);
        assert_eq!(e.uri(Api::Completions).to_string(), "http://h/prefix/v1/completions");
    }

    #[test]
    fn in_flight_guard_counts() {
        let e = endpoint("http://h", 1);
        let g1 = e.begin();
        let g2 = e.begin();
        assert_eq!(e.in_flight(), 2);
        drop(g1);
        drop(g2);
        assert_eq!(e.in_flight(), 0);
    }

    #[test]
    fn prefill_in_flight_is_released_at_the_first_byte_or_the_end() {
        let e = endpoint("http://h", 1);
        let mut first = e.begin();
        let mut second = e.begin();
        first.charge_prefill(700);
        second.charge_prefill(300);
        assert_eq!(e.in_flight_prefill(), 1_000);
        first.prefill_done();
        first.prefill_done();
        assert_eq!(e.in_flight_prefill(), 300, "released once");
        drop(second);
        assert_eq!(e.in_flight_prefill(), 0, "a request that never answered releases its charge");
        drop(first);
        assert_eq!(e.in_flight_prefill(), 0);
    }

    #[test]
    fn try_begin_respects_the_limit() {
        let metrics = sluice_metrics::Metrics::new().unwrap();
        let cfg = EndpointConfig {
            name: "w".into(),
            url: "http://h".parse().unwrap(),
            http2: false,
            max_in_flight: None,
            engine: Default::default(),
        };
        let ej = EjectionConfig { consecutive_failures: 1, base: Duration::from_secs(1), max: Duration::from_secs(1) };
        let e = Arc::new(Endpoint::new(Arc::from("p"), &cfg, Some(2), "/h", ej, metrics.endpoint("p", "w")).unwrap());
        let a = e.try_begin().unwrap();
        let _b = e.try_begin().unwrap();
        assert!(!e.has_room());
        assert!(e.try_begin().is_none());
        drop(a);
        assert!(e.has_room());
        let _c = e.try_begin().unwrap();
        assert_eq!(e.in_flight(), 2);
    }

    #[test]
    fn consecutive_failures_eject_and_success_resets() {
        let e = endpoint("http://h", 2);
        e.record_failure(FailureKind::Connect);
        assert!(e.is_available());
        e.record_success();
        e.record_failure(FailureKind::Connect);
        assert!(e.is_available(), "success reset the count");
        e.record_failure(FailureKind::Status5xx);
        assert!(!e.is_available());
        assert!(e.ejection_remaining() > Duration::from_secs(9));
    }

    #[test]
    fn overload_never_ejects() {
        let e = endpoint("http://h", 1);
        for _ in 0..5 {
            e.record_failure(FailureKind::Overloaded);
        }
        assert!(e.is_available());
    }

    #[test]
    fn probes_flip_health_at_thresholds() {
        let e = endpoint("http://h", 1);
        e.record_probe(false, 2, 2);
        assert!(e.is_healthy());
        e.record_probe(false, 2, 2);
        assert!(!e.is_healthy());
        e.record_probe(true, 2, 2);
        assert!(!e.is_healthy());
        e.record_probe(true, 2, 2);
        assert!(e.is_healthy());
    }
}
