//! A Sluice in front of simulated workers, all on `127.0.0.1:0`, built the way `main.rs` builds
//! it: TOML text → `Config::from_toml` → `Sluice::build_with` → `start_on`.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use std::sync::Arc;

use serde_json::Value;
use sluice_config::Config;
use sluice_server::{Running, Sluice};
use sluice_sim::{SimConfig, SimHandle, SimWorker};
use sluice_store::Backend;
use tokio::net::TcpListener;

use crate::client::{Reply, TestClient};
use crate::sse::SseStream;
use crate::tap::TcpTap;
use crate::tls::TestCa;

pub const MODEL: &str = "llama-3-8b";
pub const POOL: &str = "sim";
pub const TENANT: &str = "acme";
pub const TENANT_KEY: &str = "sk-acme-0123456789";

/// What to tweak. `Default` is a plain-HTTP gateway with fast health checks, no ejection
/// surprises (the built-in defaults) and simulators that all share one seed, so any worker
/// gives the same answer to the same prompt.
#[derive(Debug, Clone)]
pub struct GatewayOptions {
    /// Template for every worker (each gets a clone).
    pub sim: SimConfig,
    pub health_interval: Duration,
    pub health_timeout: Duration,
    pub unhealthy_threshold: Option<u32>,
    pub healthy_threshold: Option<u32>,
    pub connect_timeout: Option<Duration>,
    pub first_byte_timeout: Option<Duration>,
    pub idle_timeout: Option<Duration>,
    pub total_timeout: Option<Duration>,
    pub max_retries: Option<u32>,
    pub ejection_failures: Option<u32>,
    pub ejection_base: Option<Duration>,
    pub max_body_bytes: Option<usize>,
    /// `[upstream] max_in_flight`: each worker's in-flight limit (the admission queue's trigger).
    pub max_in_flight: Option<u32>,
    /// `[upstream] queue_timeout`.
    pub queue_timeout: Option<Duration>,
    /// `[upstream] max_queued`.
    pub max_queued: Option<usize>,
    pub shutdown_grace: Duration,
    /// Serve HTTPS with a fresh [`TestCa`] certificate.
    pub tls: bool,
    /// Speak h2c to the workers (`http2 = true` on every endpoint).
    pub upstream_http2: bool,
    /// Put a [`TcpTap`] between the gateway and each worker.
    pub tap_upstreams: bool,
    /// Appended to the generated config (`[[plugins]]` tables, say).
    pub extra_toml: String,
    /// Lines added to the generated `[server]` table (`max_connections = 8`, say).
    pub server_toml: String,
    /// Lines added to the generated `[[pools]]` table (`apis = ["chat", "messages"]`, say).
    pub pool_toml: String,
    /// Lines added to the generated `[admin]` table (with a store): `max_failures = 3`, say.
    pub admin_toml: String,
    /// Run with this store (imported, watched, usage written, admin API on) instead of
    /// config-only. The admin token is [`ADMIN_TOKEN`].
    pub store: Option<TestStore>,
    /// Front these workers (another gateway's simulators, for a second replica) instead of
    /// starting simulators of its own: the gateway's `sims` is then empty.
    pub upstream_urls: Vec<String>,
}

/// A store handed to [`TestGateway::start`]; `Debug` so that options stay printable.
#[derive(Clone)]
pub struct TestStore(pub Arc<dyn Backend>);

impl std::fmt::Debug for TestStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TestStore({:?})", self.0.kind())
    }
}

/// The admin token of gateways started with a store.
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789abcdef";

impl Default for GatewayOptions {
    fn default() -> Self {
        GatewayOptions {
            sim: SimConfig::default(),
            health_interval: Duration::from_millis(100),
            health_timeout: Duration::from_millis(500),
            unhealthy_threshold: None,
            healthy_threshold: None,
            connect_timeout: None,
            first_byte_timeout: None,
            idle_timeout: None,
            total_timeout: None,
            max_retries: None,
            ejection_failures: None,
            ejection_base: None,
            max_body_bytes: None,
            max_in_flight: None,
            queue_timeout: None,
            max_queued: None,
            shutdown_grace: Duration::from_secs(10),
            tls: false,
            upstream_http2: false,
            tap_upstreams: false,
            extra_toml: String::new(),
            server_toml: String::new(),
            pool_toml: String::new(),
            admin_toml: String::new(),
            store: None,
            upstream_urls: Vec::new(),
        }
    }
}

/// A running gateway and its workers.
pub struct TestGateway {
    pub running: Running,
    /// Worker `i` is the endpoint named `sim-i`.
    pub sims: Vec<SimHandle>,
    /// One per worker when [`GatewayOptions::tap_upstreams`] is set.
    pub taps: Vec<TcpTap>,
    /// Set when serving HTTPS.
    pub ca: Option<TestCa>,
    pub key: &'static str,
    /// A client that fits the gateway: HTTP/1.1, or HTTPS trusting [`TestGateway::ca`].
    pub client: TestClient,
}

fn ms(d: Duration) -> String {
    format!("\"{}ms\"", d.as_millis())
}

impl TestGateway {
    pub async fn start(workers: usize, opts: GatewayOptions) -> Self {
        assert!(workers >= 1 || !opts.upstream_urls.is_empty(), "a pool needs at least one worker");
        let own_workers = if opts.upstream_urls.is_empty() { workers } else { 0 };
        let mut sims = Vec::with_capacity(own_workers);
        for _ in 0..own_workers {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind worker");
            sims.push(SimWorker::start(opts.sim.clone(), listener).await.expect("start worker"));
        }
        let mut taps = Vec::new();
        if opts.tap_upstreams {
            for sim in &sims {
                taps.push(TcpTap::start(sim.addr()).await);
            }
        }
        let urls: Vec<String> = if !opts.upstream_urls.is_empty() {
            opts.upstream_urls.clone()
        } else if opts.tap_upstreams {
            taps.iter().map(TcpTap::base_url).collect()
        } else {
            sims.iter().map(SimHandle::base_url).collect()
        };
        let toml = config_toml(&urls, &opts);
        let config =
            Config::from_toml(&toml, &[], &|_| None).unwrap_or_else(|e| panic!("test config is invalid: {e}\n{toml}"));
        let ca = opts.tls.then(TestCa::new);
        let acceptor = ca.as_ref().map(TestCa::acceptor);
        let sluice = match &opts.store {
            Some(store) => Sluice::build_with_store(config, Arc::clone(&store.0), Vec::new(), acceptor)
                .await
                .expect("build sluice"),
            None => Sluice::build_with(config, Vec::new(), acceptor).expect("build sluice"),
        };
        let data = TcpListener::bind("127.0.0.1:0").await.expect("bind data plane");
        let admin = TcpListener::bind("127.0.0.1:0").await.expect("bind admin plane");
        let running = sluice.start_on(data, admin).expect("start sluice");
        let client = match &ca {
            Some(ca) => TestClient::https(&ca.root, true),
            None => TestClient::http1(),
        };
        TestGateway { running, sims, taps, ca, key: TENANT_KEY, client }
    }

    pub fn data_addr(&self) -> SocketAddr {
        self.running.data_addr
    }

    /// A data-plane URL: `url("/v1/models")`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.running.base_url())
    }

    /// An admin-plane URL: `admin_url("/metrics")`.
    pub fn admin_url(&self, path: &str) -> String {
        format!("{}{path}", self.running.admin_url())
    }

    /// `POST /v1/chat/completions` with the tenant's key, read whole.
    pub async fn chat(&self, body: &Value) -> Reply {
        self.client.post_json_whole(&self.url("/v1/chat/completions"), Some(self.key), body).await
    }

    /// `POST /v1/chat/completions` with the tenant's key, streamed.
    pub async fn chat_stream(&self, body: &Value) -> SseStream {
        self.client.post_stream(&self.url("/v1/chat/completions"), Some(self.key), body).await
    }

    /// The admin plane's `/metrics` text, scraped over HTTP.
    pub async fn metrics_text(&self) -> String {
        let reply = TestClient::http1().get(&self.admin_url("/metrics"), None).await;
        assert_eq!(reply.status, 200, "GET /metrics");
        reply.text()
    }

    /// One value from `/metrics`; see [`crate::metrics::value`].
    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        crate::metrics::value(&self.metrics_text().await, name, labels)
    }

    /// Stops the gateway (draining streams), then the workers.
    pub async fn shutdown(self) {
        self.running.shutdown().await;
        for sim in self.sims {
            sim.shutdown().await;
        }
    }
}

/// A chat request for `MODEL` with one user message; `extra` members are merged in.
pub fn chat_body(prompt: &str, extra: Value) -> Value {
    let mut body = serde_json::json!({
        "model": MODEL,
        "messages": [{"role": "user", "content": prompt}],
    });
    if let (Some(body), Value::Object(extra)) = (body.as_object_mut(), extra) {
        body.extend(extra);
    }
    body
}

fn config_toml(urls: &[String], o: &GatewayOptions) -> String {
    let mut t = String::new();
    if o.store.is_some() {
        let _ = writeln!(t, "[admin]\ntoken = \"{ADMIN_TOKEN}\"\n{}", o.admin_toml);
        let _ = writeln!(t, "[database]\nusage_flush_interval = \"100ms\"\n");
    }
    let _ = writeln!(t, "[server]\nshutdown_grace = {}", ms(o.shutdown_grace));
    if let Some(n) = o.max_body_bytes {
        let _ = writeln!(t, "max_body_bytes = {n}");
    }
    if !o.server_toml.is_empty() {
        let _ = writeln!(t, "{}", o.server_toml);
    }
    let _ = writeln!(t, "\n[upstream]");
    for (name, value) in [
        ("connect_timeout", o.connect_timeout),
        ("first_byte_timeout", o.first_byte_timeout),
        ("idle_timeout", o.idle_timeout),
        ("total_timeout", o.total_timeout),
        ("queue_timeout", o.queue_timeout),
    ] {
        if let Some(d) = value {
            let _ = writeln!(t, "{name} = {}", ms(d));
        }
    }
    if let Some(n) = o.max_retries {
        let _ = writeln!(t, "max_retries = {n}");
    }
    if let Some(n) = o.max_in_flight {
        let _ = writeln!(t, "max_in_flight = {n}");
    }
    if let Some(n) = o.max_queued {
        let _ = writeln!(t, "max_queued = {n}");
    }
    let _ =
        writeln!(t, "\n[upstream.health]\ninterval = {}\ntimeout = {}", ms(o.health_interval), ms(o.health_timeout));
    if let Some(n) = o.unhealthy_threshold {
        let _ = writeln!(t, "unhealthy_threshold = {n}");
    }
    if let Some(n) = o.healthy_threshold {
        let _ = writeln!(t, "healthy_threshold = {n}");
    }
    let _ = writeln!(t, "\n[upstream.ejection]");
    if let Some(n) = o.ejection_failures {
        let _ = writeln!(t, "consecutive_failures = {n}");
    }
    if let Some(d) = o.ejection_base {
        let _ = writeln!(t, "base = {}\nmax = {}", ms(d), ms(d.max(Duration::from_secs(120))));
    }
    let endpoints: Vec<String> = urls
        .iter()
        .enumerate()
        .map(|(i, url)| format!("{{ url = \"{url}\", name = \"sim-{i}\", http2 = {} }}", o.upstream_http2))
        .collect();
    let _ = writeln!(
        t,
        "\n[[pools]]\nname = \"{POOL}\"\nmodels = [\"{MODEL}\"]\nendpoints = [{}]\n{}\n\
         [[tenants]]\nname = \"{TENANT}\"\napi_keys = [\"{TENANT_KEY}\"]",
        endpoints.join(", "),
        o.pool_toml
    );
    let _ = writeln!(t, "\n{}", o.extra_toml);
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_config_is_valid() {
        let opts = GatewayOptions {
            first_byte_timeout: Some(Duration::from_millis(300)),
            max_retries: Some(1),
            ejection_failures: Some(2),
            ejection_base: Some(Duration::from_secs(60)),
            max_body_bytes: Some(1024),
            max_in_flight: Some(3),
            queue_timeout: Some(Duration::from_millis(700)),
            upstream_http2: true,
            ..GatewayOptions::default()
        };
        let toml = config_toml(&["http://127.0.0.1:1".into(), "http://127.0.0.1:2".into()], &opts);
        let config = Config::from_toml(&toml, &[], &|_| None).unwrap();
        let pool = &config.pools[0];
        assert_eq!(pool.endpoints.len(), 2);
        assert!(pool.endpoints[1].http2);
        assert_eq!(pool.endpoints[1].name, "sim-1");
        assert_eq!(pool.upstream.first_byte_timeout, Duration::from_millis(300));
        assert_eq!(pool.upstream.ejection.consecutive_failures, 2);
        assert_eq!(pool.upstream.health.interval, Duration::from_millis(100));
        assert_eq!(config.server.max_body_bytes, 1024);
        assert_eq!(pool.upstream.max_in_flight, Some(3));
        assert_eq!(pool.upstream.queue_timeout, Duration::from_millis(700));
        assert_eq!(config.tenants[0].api_keys[0].key.expose(), TENANT_KEY);
    }
}
