//! Sluice configuration: parse, layer, validate, freeze.
//!
//! Layers, later wins: built-in defaults → the TOML file → environment variables named
//! `SLUICE__SECTION__KEY` (e.g. `SLUICE__SERVER__LISTEN=0.0.0.0:8080`). The result of
//! [`Config::load`] is validated and immutable; every error names the field and the reason.

mod admin;
pub mod duration;
mod layer;
pub mod raw;
pub mod secret;
mod validate;
mod worker_apis;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use raw::RawConfig;
pub use secret::Secret;
pub use worker_apis::WorkerApis;

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub admin: AdminConfig,
    pub database: DatabaseConfig,
    /// `[redis]`, when a URL is set (or `REDIS_URL`).
    pub redis: Option<RedisConfig>,
    pub response_cache: ResponseCacheConfig,
    pub response_affinity: ResponseAffinityConfig,
    /// `[upstream]`: the defaults for pools that do not set their own (including pools
    /// created through the admin API).
    pub upstream: UpstreamConfig,
    pub autoscaling: AutoscalingConfig,
    pub pools: Vec<PoolConfig>,
    pub tenants: Vec<TenantConfig>,
    pub plugin_host: PluginHostConfig,
    pub plugins: Vec<PluginConfig>,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub max_body_bytes: usize,
    /// Request-body bytes held at once, all requests together: past it, requests are refused
    /// with a 503 before their bodies are read (the gateway's memory budget for bodies).
    pub max_inflight_body_bytes: usize,
    /// The most of that one tenant's requests may hold at once: past it, the tenant's requests
    /// are refused with a 429 while other tenants' still fit.
    pub max_inflight_body_bytes_per_tenant: usize,
    /// Longest time a client may take to send its request body.
    pub request_body_timeout: Duration,
    pub shutdown_grace: Duration,
    pub tls: Option<TlsConfig>,
    /// The data listener's connection limits.
    pub connections: ConnectionLimits,
    /// The admin listener's own connection budget.
    pub admin_max_connections: usize,
}

/// What one client connection may hold and for how long. Enforced by the listener before the
/// connection costs more than its socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Open connections, all clients together; the listener may lower it to fit the process's
    /// file-descriptor limit.
    pub max: usize,
    /// Open connections from one client address (IPv6 addresses grouped by /64).
    pub max_per_ip: usize,
    /// Longest wait for a request head (and the TLS handshake) once one is expected.
    pub header_read_timeout: Duration,
    /// A connection with no request in progress for this long is closed.
    pub idle_timeout: Duration,
    /// A streamed response its client leaves unread for this long is cut, and its worker
    /// request cancelled.
    pub write_timeout: Duration,
    /// Requests one HTTP/2 connection may have open at once.
    pub http2_max_concurrent_streams: u32,
}

pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 1_000;
pub const DEFAULT_ADMIN_MAX_CONNECTIONS: usize = 64;
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_CONNECTION_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_HTTP2_MAX_CONCURRENT_STREAMS: u32 = 256;

#[derive(Debug, Clone)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone)]
pub struct AdminConfig {
    /// At least `min_token_length` characters when set.
    pub token: Option<Secret>,
    pub min_token_length: usize,
    /// Wrong or missing tokens one client address (IPv6 by /64) may present within
    /// `failure_window` before it is locked out.
    pub max_failures: u32,
    pub failure_window: Duration,
    /// How long a locked-out address is refused with 429, whatever token it presents.
    pub lockout: Duration,
}

/// 32 characters: a random token of that length is beyond guessing at any rate the lockout
/// lets through.
pub const DEFAULT_ADMIN_MIN_TOKEN_LENGTH: usize = 32;
/// The floor `min_token_length` may be lowered to.
pub const ADMIN_MIN_TOKEN_LENGTH_FLOOR: usize = 16;
pub const DEFAULT_ADMIN_MAX_FAILURES: u32 = 10;
pub const DEFAULT_ADMIN_FAILURE_WINDOW: Duration = Duration::from_secs(60);
pub const DEFAULT_ADMIN_LOCKOUT: Duration = Duration::from_secs(300);

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            token: None,
            min_token_length: DEFAULT_ADMIN_MIN_TOKEN_LENGTH,
            max_failures: DEFAULT_ADMIN_MAX_FAILURES,
            failure_window: DEFAULT_ADMIN_FAILURE_WINDOW,
            lockout: DEFAULT_ADMIN_LOCKOUT,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamConfig {
    pub connect_timeout: Duration,
    /// From sending the request until the first body byte of the response.
    pub first_byte_timeout: Duration,
    /// Longest silence between two body chunks once the response has started.
    pub idle_timeout: Duration,
    /// The whole exchange, including streaming.
    pub total_timeout: Duration,
    /// Extra attempts on other endpoints, only before the first byte reached the client.
    pub max_retries: u32,
    pub max_idle_connections_per_endpoint: usize,
    /// Requests each endpoint may have in flight; `None`: unlimited. When every usable
    /// endpoint of a pool is at its limit, requests wait in the pool's fair admission queue.
    pub max_in_flight: Option<u32>,
    /// Longest a request waits in that queue before it is refused (503, `pool_saturated`).
    pub queue_timeout: Duration,
    /// Requests the queue holds, all tenants together; past it the tenant with the longest
    /// queue loses its newest request.
    pub max_queued: usize,
    pub health: HealthConfig,
    pub ejection: EjectionConfig,
    pub prefix_index: PrefixIndexConfig,
    pub engine_metrics: EngineMetricsConfig,
}

/// How the host reads each endpoint's engine metrics (its queue, KV cache and prefix cache, from
/// the engine's own Prometheus page), for routing and the live view.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineMetricsConfig {
    /// Between two reads of an endpoint's page.
    pub interval: Duration,
    /// Longest wait for one page.
    pub timeout: Duration,
    /// A reading older than this (the engine stopped answering) is not given to route plugins:
    /// a stale figure misleads more than none.
    pub max_age: Duration,
}

/// Routers act on these figures until the next read, so a read every quarter second keeps a queue
/// read as long from turning requests away from a worker that has since drained it for long
/// (llm-d's scheduler reads every 50 ms).
pub const DEFAULT_ENGINE_METRICS: EngineMetricsConfig = EngineMetricsConfig {
    interval: Duration::from_millis(250),
    timeout: Duration::from_secs(1),
    max_age: Duration::from_secs(2),
};

/// Without the engine's KV events a routed prompt is all the host knows, so a guess lives about
/// as long as a busy worker keeps an unused prefix cached.
pub const DEFAULT_PREFIX_GUESS_TTL: Duration = Duration::from_secs(300);
/// 262,144 blocks of 16 tokens: 4M prompt tokens per pool.
pub const DEFAULT_PREFIX_INDEX_BLOCKS: usize = 262_144;

/// The host's prefix index of a pool (`sluice_proxy`'s `upstream::prefixes`).
#[derive(Debug, Clone, PartialEq)]
pub struct PrefixIndexConfig {
    /// How long a worker is believed to hold the blocks of a prompt routed to it.
    pub guess_ttl: Duration,
    /// Blocks remembered per pool; past it the least recently written are forgotten.
    pub max_blocks: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HealthConfig {
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
    /// Consecutive failed probes before an endpoint is marked unhealthy.
    pub unhealthy_threshold: u32,
    /// Consecutive good probes before it is healthy again.
    pub healthy_threshold: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EjectionConfig {
    /// Consecutive failed requests before an endpoint is ejected.
    pub consecutive_failures: u32,
    /// First ejection length; each further ejection doubles it, up to `max`.
    pub base: Duration,
    pub max: Duration,
}

#[derive(Debug, Clone)]
pub struct PoolConfig {
    pub name: String,
    pub models: Vec<String>,
    pub endpoints: Vec<EndpointConfig>,
    /// The APIs the pool's workers speak; a request for another is refused.
    pub apis: WorkerApis,
    pub upstream: UpstreamConfig,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointConfig {
    /// Metric label and log name; defaults to the URL's `host:port`.
    pub name: String,
    /// Base URL without a trailing slash, e.g. `http://10.0.0.7:8000`.
    pub url: http::Uri,
    pub http2: bool,
    /// This endpoint's own in-flight limit; `None`: the pool's `max_in_flight`.
    pub max_in_flight: Option<u32>,
    /// The serving engine, which decides where and how its metrics are read.
    pub engine: sluice_store_model::EngineFlavor,
}

#[derive(Debug, Clone)]
pub struct TenantConfig {
    pub name: String,
    pub api_keys: Vec<ApiKeyConfig>,
    /// `high`, `normal` or `low`; `None` leaves the stored priority alone.
    pub priority: Option<String>,
    /// `None` leaves the stored limits alone; a table replaces them at every start.
    pub limits: Option<raw::RawLimits>,
    /// `None` leaves the stored per-model limits alone; a table replaces them all at every
    /// start (models it does not name lose theirs). By model name.
    pub model_limits: Option<Vec<sluice_store_model::ModelLimits>>,
}

/// A bootstrap API key.
#[derive(Debug, Clone)]
pub struct ApiKeyConfig {
    pub key: Secret,
    /// `None` leaves the key's stored limits alone; a table replaces them at every start.
    pub limits: Option<sluice_store_model::ScopeLimits>,
}

/// `[database]`, validated.
#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    /// A PostgreSQL URL from `[database] url` or `DATABASE_URL`; `None` selects the embedded
    /// SQLite file in the data directory.
    pub url: Option<Secret>,
    pub migrate: bool,
    pub usage_flush_interval: Duration,
}

/// `[redis]`, validated.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    pub url: Secret,
    pub timeout: Duration,
    pub on_unavailable: RedisFallbackConfig,
    pub replicas: u64,
    pub key_prefix: String,
    pub limits: RedisLimitsMode,
}

/// How rate limits use Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisLimitsMode {
    /// Each replica decides from small slices of quota leased from Redis: no round trip for
    /// most decisions; never over the limit, under it by at most replicas × slice while leases
    /// are held.
    Leased,
    /// One script per decision: exact, a round trip per request.
    Exact,
}

/// `[response_cache]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseCacheConfig {
    pub backend: ResponseCacheBackend,
    pub max_bytes: usize,
    pub max_entry_bytes: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseCacheBackend {
    Memory,
    Redis,
}

pub const DEFAULT_RESPONSE_CACHE_BYTES: usize = 256 << 20;
pub const DEFAULT_RESPONSE_CACHE_ENTRY_BYTES: usize = 1 << 20;

/// `[response_affinity]`, validated: how long and how many stored Responses answers' workers
/// are remembered (shared through `[redis]` when it is set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseAffinityConfig {
    pub ttl: Duration,
    pub max_entries: u64,
}

/// `[autoscaling]`, validated: the pools' desired-replicas signal is recomputed every
/// `interval` over the last `window` of requests and engine readings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AutoscalingConfig {
    pub interval: Duration,
    pub window: Duration,
}

/// Autoscalers read their metric every 15 s (the HPA's default sync period) to a minute; a
/// signal recomputed every 10 s over the last minute is fresh for each read and steady between.
pub const DEFAULT_AUTOSCALING: AutoscalingConfig =
    AutoscalingConfig { interval: Duration::from_secs(10), window: Duration::from_secs(60) };

/// vLLM never drops a stored response (it lives as long as the worker process), so no expiry
/// matches it; a day covers a conversation continued within a working day and bounds what
/// Redis holds.
pub const DEFAULT_RESPONSE_AFFINITY_TTL: Duration = Duration::from_secs(24 * 3600);
/// About 25 MiB of memory per replica.
pub const DEFAULT_RESPONSE_AFFINITY_ENTRIES: u64 = 100_000;

/// What limits decisions do while Redis is unreachable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisFallbackConfig {
    /// Each replica enforces `1 / replicas` of every limit from its own memory.
    Local,
    /// Refuse requests that a limit applies to (503).
    Closed,
}

/// `[plugin_host]`.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginHostConfig {
    pub cache_dir: Option<PathBuf>,
    pub max_instances: u32,
    /// The largest memory any plugin may be given.
    pub max_memory_bytes: usize,
    /// The longest deadline a binding made through the admin API may set.
    pub max_timeout: Duration,
    /// Bind the built-in router when no `[[plugins]]` entry is named `router`; without it, the
    /// host's own least-in-flight choice routes (no plugin call per request).
    pub builtin_router: bool,
    /// Bind the built-in rate limiter when no `[[plugins]]` entry is named `ratelimit`.
    pub builtin_ratelimit: bool,
}

/// Where a plugin's component comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginSourceConfig {
    /// `builtin:<name>`.
    Builtin(String),
    File(PathBuf),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PluginIsolationConfig {
    PerRequest,
    Reuse { max_calls: u32, max_age: Duration },
}

/// A `[[plugins]]` entry, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginConfig {
    pub name: String,
    pub source: PluginSourceConfig,
    /// Capability names, each one of [`PLUGIN_CAPABILITIES`].
    pub capabilities: Vec<String>,
    pub isolation: PluginIsolationConfig,
    /// `true`: a failing plugin refuses the request (503); `false`: it is skipped.
    pub fail_closed: bool,
    pub order: i64,
    pub timeout: Duration,
    pub max_memory_bytes: usize,
    /// The binding's `config` table as JSON.
    pub config_json: String,
    /// Hosts (`host` or `host:port`) the `http` capability may reach; none by default.
    pub http_allow: Vec<String>,
    pub scope: PluginScopeConfig,
    /// `None`: the host's default.
    pub max_concurrent_calls: Option<u32>,
    pub state_namespace: Option<String>,
    pub breaker: PluginBreakerConfig,
}

/// Which requests a `[[plugins]]` binding runs for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum PluginScopeConfig {
    #[default]
    Global,
    Tenant(String),
    Model(String),
}

/// A binding's circuit breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PluginBreakerConfig {
    /// 0: no breaker.
    pub failures: u32,
    pub window: Duration,
    pub cooldown: Duration,
    pub probes: u32,
}

/// The host capabilities a plugin may be granted.
pub const PLUGIN_CAPABILITIES: &[&str] =
    &["log", "clock", "counters", "limits", "cache", "response-cache", "config", "metrics", "embeddings", "http"];

/// Why a configuration was refused. `field` is a dotted path such as `pools[1].endpoints[0]`.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {error}")]
    Read { path: PathBuf, error: std::io::Error },
    #[error("config is not valid TOML or has unknown fields: {0}")]
    Parse(String),
    #[error("environment override {var}: {reason}")]
    Env { var: String, reason: String },
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
}

impl ConfigError {
    fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError::Invalid { field: field.into(), reason: reason.into() }
    }
}

impl Config {
    /// Reads `path` (or only defaults when `None`), applies `SLUICE__*` overrides from the
    /// process environment, and validates.
    pub fn load(path: Option<&std::path::Path>) -> Result<Config, ConfigError> {
        let text = match path {
            Some(p) => std::fs::read_to_string(p).map_err(|error| ConfigError::Read { path: p.to_owned(), error })?,
            None => String::new(),
        };
        let vars: Vec<(String, String)> = std::env::vars().collect();
        Self::from_toml(&text, &vars, &|name| std::env::var(name).ok())
    }

    /// The pure core of [`Config::load`]: `overrides` are `SLUICE__*` variables, `env` resolves
    /// `env:NAME` secret references.
    pub fn from_toml(
        text: &str,
        overrides: &[(String, String)],
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let mut doc: toml::Table = text.parse().map_err(|e: toml::de::Error| ConfigError::Parse(e.to_string()))?;
        layer::apply_env(&mut doc, overrides)?;
        let raw: RawConfig =
            toml::Value::Table(doc).try_into().map_err(|e: toml::de::Error| ConfigError::Parse(e.to_string()))?;
        validate::validate(raw, env)
    }

    /// Every model any pool serves, sorted, without duplicates.
    pub fn models(&self) -> Vec<String> {
        let mut models: Vec<String> = self.pools.iter().flat_map(|p| p.models.iter().cloned()).collect();
        models.sort();
        models.dedup();
        models
    }
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        validate::upstream(&raw::RawUpstream::default(), None)
    }
}
