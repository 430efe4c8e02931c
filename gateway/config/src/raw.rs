//! The config file as parsed: serde structs that reject unknown fields. Everything here is
//! unvalidated; [`crate::Config`] is what the rest of Sluice sees.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
pub use sluice_store_model::ScopeLimits;

use crate::duration;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub admin: RawAdmin,
    #[serde(default)]
    pub database: RawDatabase,
    #[serde(default)]
    pub redis: RawRedis,
    #[serde(default)]
    pub response_cache: RawResponseCache,
    #[serde(default)]
    pub response_affinity: RawResponseAffinity,
    #[serde(default)]
    pub upstream: RawUpstream,
    #[serde(default)]
    pub autoscaling: RawAutoscaling,
    #[serde(default)]
    pub pools: Vec<RawPool>,
    #[serde(default)]
    pub tenants: Vec<RawTenant>,
    #[serde(default)]
    pub plugin_host: RawPluginHost,
    #[serde(default)]
    pub plugins: Vec<RawPlugin>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub listen: Option<String>,
    pub admin_listen: Option<String>,
    pub max_body_bytes: Option<usize>,
    /// Request-body bytes held at once, all requests together.
    pub max_inflight_body_bytes: Option<usize>,
    /// The most of that one tenant's requests may hold at once.
    pub max_inflight_body_bytes_per_tenant: Option<usize>,
    #[serde(default, deserialize_with = "duration::deserialize_opt")]
    pub request_body_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "duration::deserialize_opt")]
    pub shutdown_grace: Option<Duration>,
    pub tls: Option<RawTls>,
    /// Connections the data listener holds open at once, all clients together.
    pub max_connections: Option<usize>,
    /// Connections the data listener holds open at once from one client address (IPv6: one /64).
    pub max_connections_per_ip: Option<usize>,
    /// Connections the admin listener holds open at once: its own budget, apart from the data
    /// listener's, so `/healthz` and `/metrics` answer while the data port is saturated.
    pub admin_max_connections: Option<usize>,
    /// Longest a client may take to send a request head (TLS handshake included) once it is
    /// expected: after connecting and between requests on a kept-alive connection.
    #[serde(default, deserialize_with = "duration::deserialize_opt")]
    pub header_read_timeout: Option<Duration>,
    /// A connection with no request in progress for this long is closed.
    #[serde(default, deserialize_with = "duration::deserialize_opt")]
    pub idle_timeout: Option<Duration>,
    /// Longest a client may leave a streamed response unread before it is cut.
    #[serde(default, deserialize_with = "duration::deserialize_opt")]
    pub write_timeout: Option<Duration>,
    /// Requests one HTTP/2 connection may have open at once.
    pub http2_max_concurrent_streams: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub cert: String,
    pub key: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    /// A secret reference: `env:NAME`, `file:/path` or a literal.
    pub token: Option<String>,
    /// Shorter tokens are refused at load (default 32, at least 16).
    pub min_token_length: Option<usize>,
    /// Failed attempts one client address may make within `failure_window` (default 10).
    pub max_failures: Option<u32>,
    #[serde(default, deserialize_with = "duration::deserialize_opt")]
    pub failure_window: Option<Duration>,
    /// How long an address that went over `max_failures` is refused (default 5 min).
    #[serde(default, deserialize_with = "duration::deserialize_opt")]
    pub lockout: Option<Duration>,
}

/// Defaults for every pool; a pool may override any of them.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    #[serde(default, deserialize_with = "duration::deserialize_opt")]
    pub connect_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "duration::deserialize_opt")]
    pub first_byte_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "duration::deserialize_opt")]
    pub idle_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "duration::deserialize_opt")]
    pub total_timeout: Option<Duration>,
    pub max_retries: Option<u32>,
    pub max_idle_connections_per_endpoint: Option<usize>,
    /// Requests each endpoint may have in flight; unset: no limit (and no admission queue).
    pub max_in_flight: Option<u32>,
    /// Longest wait in the pool's admission queue while every endpoint is at its limit.
    #[serde(default, deserialize_with = "duration::deserialize_opt")]
    pub queue_timeout: Option<Duration>,
    /// Requests the pool's admission queue holds, all tenants together.
    pub max_queued: Option<usize>,
    #[serde(default)]
    pub health: RawHealth,
    #[serde(default)]
    pub ejection: RawEjection,
    #[serde(default)]
    pub prefix_index: RawPrefixIndex,
    #[serde(default)]
    pub engine_metrics: RawEngineMetrics,
}

/// `engine_metrics`: how often, and how patiently, each endpoint's engine metrics are read.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEngineMetrics {
    #[serde(default, deserialize_with = "duration::deserialize_opt")]
    pub interval: Option<Duration>,
    #[serde(default, deserialize_with = "duration::deserialize_opt")]
    pub timeout: Option<Duration>,
    #[serde(default, deserialize_with = "duration::deserialize_opt")]
    pub max_age: Option<Duration>,
}

/// `prefix_index`: what the host remembers of which worker holds which prompt prefix, for the
/// route plugins' candidates.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPrefixIndex {
    /// How long the host believes a worker holds a prompt it routed there.
    #[serde(default, deserialize_with = "duration::deserialize_opt")]
    pub guess_ttl: Option<Duration>,
    /// Prompt blocks remembered per pool, all workers together.
    pub max_blocks: Option<usize>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealth {
    pub path: Option<String>,
    #[serde(default, deserialize_with = "duration::deserialize_opt")]
    pub interval: Option<Duration>,
    #[serde(default, deserialize_with = "duration::deserialize_opt")]
    pub timeout: Option<Duration>,
    pub unhealthy_threshold: Option<u32>,
    pub healthy_threshold: Option<u32>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEjection {
    pub consecutive_failures: Option<u32>,
    #[serde(default, deserialize_with = "duration::deserialize_opt")]
    pub base: Option<Duration>,
    #[serde(default, deserialize_with = "duration::deserialize_opt")]
    pub max: Option<Duration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPool {
    pub name: String,
    pub models: Vec<String>,
    pub endpoints: Vec<RawEndpoint>,
    /// The APIs the pool's workers speak (`chat`, `completions`, `embeddings`, `responses`,
    /// `messages`); unset: the first three.
    #[serde(default)]
    pub apis: Option<Vec<String>>,
    #[serde(default)]
    pub upstream: RawUpstream,
}

/// An endpoint is a base URL, or a table when it needs a name or options.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawEndpoint {
    Url(String),
    Table(RawEndpointTable),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEndpointTable {
    pub url: String,
    pub name: Option<String>,
    /// Speak HTTP/2 to this endpoint (prior knowledge on `http://`, ALPN on `https://`).
    #[serde(default)]
    pub http2: bool,
    /// Overrides the pool's `max_in_flight` for this endpoint.
    pub max_in_flight: Option<u32>,
    /// `vllm` (the default), `sglang`, `trtllm`, `llama_cpp`, or `openai` for any other server
    /// (its metrics are not read).
    pub engine: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTenant {
    pub name: String,
    /// Bootstrap keys: literal or secret references (`env:NAME`, `file:/path`), or tables
    /// `{ key = "env:NAME", limits = { requests_per_minute = 60 } }` for a key with limits of
    /// its own.
    #[serde(default)]
    pub api_keys: Vec<RawApiKey>,
    /// `high`, `normal` (default) or `low`.
    pub priority: Option<String>,
    /// `[tenants.limits]`: the same fields as `PUT /admin/api/tenants/{name}/limits`.
    pub limits: Option<RawLimits>,
    /// `[tenants.model_limits."model-name"]`: the tenant's limits for one model, the same
    /// fields as `PUT /admin/api/tenants/{name}/models/{model}/limits`.
    pub model_limits: Option<BTreeMap<String, ScopeLimits>>,
}

/// One entry of `api_keys`: the key alone, or a table with the key and its own limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawApiKey {
    Plain(String),
    Table(RawApiKeyTable),
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApiKeyTable {
    /// A literal key or a secret reference, as in the plain form.
    pub key: String,
    /// The same fields as `PUT /admin/api/tenants/{name}/keys/{id}/limits`.
    pub limits: Option<ScopeLimits>,
}

impl RawApiKey {
    pub fn reference(&self) -> &str {
        match self {
            RawApiKey::Plain(key) | RawApiKey::Table(RawApiKeyTable { key, .. }) => key,
        }
    }

    pub fn limits(&self) -> Option<ScopeLimits> {
        match self {
            RawApiKey::Plain(_) => None,
            RawApiKey::Table(table) => table.limits,
        }
    }
}

/// Written out rather than `#[serde(untagged)]`, whose error for a table with a misspelt field
/// is "data did not match any variant"; this one names the field.
impl<'de> Deserialize<'de> for RawApiKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;

        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = RawApiKey;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an API key (literal, `env:NAME` or `file:/path`) or a table `{ key = …, limits = { … } }`")
            }

            fn visit_str<E: de::Error>(self, value: &str) -> Result<RawApiKey, E> {
                Ok(RawApiKey::Plain(value.to_owned()))
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawApiKey, A::Error> {
                RawApiKeyTable::deserialize(de::value::MapAccessDeserializer::new(map)).map(RawApiKey::Table)
            }
        }

        deserializer.deserialize_any(KeyVisitor)
    }
}

#[derive(Debug, Default, Deserialize, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub requests_per_minute: Option<u64>,
    pub tokens_per_minute: Option<u64>,
    pub max_concurrency: Option<u64>,
    pub monthly_token_budget: Option<u64>,
    pub allowed_models: Option<Vec<String>>,
}

/// `[database]`: where Sluice keeps tenants, keys, limits, plugins and usage.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDatabase {
    /// `postgres://…` (or a secret reference to one); unset means `DATABASE_URL`, then the
    /// embedded SQLite file in the data directory.
    pub url: Option<String>,
    /// Apply pending migrations on start (default true).
    pub migrate: Option<bool>,
    /// How often usage aggregates are written.
    #[serde(default, deserialize_with = "duration::deserialize_opt")]
    pub usage_flush_interval: Option<Duration>,
}

/// `[redis]`: state shared by every gateway replica (the `limits` capability's counters).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRedis {
    /// `redis://…` or `rediss://…` (or a secret reference to one); unset means `REDIS_URL`, then
    /// no Redis: limits are kept in each replica's memory.
    pub url: Option<String>,
    /// The longest a decision waits for Redis before the fallback.
    #[serde(default, deserialize_with = "duration::deserialize_opt")]
    pub timeout: Option<Duration>,
    /// `local` (default) or `closed`: what decisions do while Redis is unreachable.
    pub on_unavailable: Option<String>,
    /// How many replicas share the limits: while Redis is away, each enforces its share.
    pub replicas: Option<u64>,
    /// Prefix of every key Sluice writes (several gateways may share one Redis).
    pub key_prefix: Option<String>,
    /// `leased` (default: replicas decide from slices of quota leased from Redis) or `exact`
    /// (a Redis round trip per decision).
    pub limits: Option<String>,
}

/// `[response_cache]`: where the response cache keeps its entries (what is cached is the
/// `cache` plugin's policy).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawResponseCache {
    /// `memory` (this replica's) or `redis` (shared by the replicas; needs `[redis]`). Unset:
    /// `redis` when `[redis]` is set, else `memory`.
    pub backend: Option<String>,
    /// What the in-process backend keeps, in bytes (entries and semantic vectors).
    pub max_bytes: Option<usize>,
    /// The largest answer stored; larger ones are served but not kept.
    pub max_entry_bytes: Option<usize>,
}

/// `[response_affinity]`: which worker made each stored Responses answer, so that a request
/// continuing it (`previous_response_id`) goes to that worker.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawResponseAffinity {
    /// How long a response's worker is remembered.
    #[serde(default, deserialize_with = "duration::deserialize_opt")]
    pub ttl: Option<Duration>,
    /// Responses this replica remembers in its own memory (the least used go first).
    pub max_entries: Option<u64>,
}

/// `[autoscaling]`: how the pools' desired-replicas signal is computed.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAutoscaling {
    /// How often the signal is recomputed.
    #[serde(default, deserialize_with = "duration::deserialize_opt")]
    pub interval: Option<Duration>,
    /// The span of requests and engine readings it is computed over.
    #[serde(default, deserialize_with = "duration::deserialize_opt")]
    pub window: Option<Duration>,
}

/// `[plugin_host]`: the WebAssembly engine shared by every plugin.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPluginHost {
    /// Directory for precompiled plugin artifacts; unset compiles at every start.
    pub cache_dir: Option<String>,
    pub max_instances: Option<u32>,
    pub max_memory_bytes: Option<usize>,
    /// The longest deadline a binding made through the admin API may set.
    #[serde(default, deserialize_with = "duration::deserialize_opt")]
    pub max_timeout: Option<Duration>,
    pub builtin_router: Option<bool>,
    pub builtin_ratelimit: Option<bool>,
}

/// `scope = { tenant = "acme" }` or `{ model = "llama-3-8b" }`.
#[derive(Debug, Deserialize, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RawPluginScope {
    pub tenant: Option<String>,
    pub model: Option<String>,
}

/// `[plugins.breaker]`: when a binding's circuit breaker opens and closes.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBreaker {
    /// Failures within `window` that open it; 0 turns the breaker off.
    pub failures: Option<u32>,
    #[serde(default, deserialize_with = "duration::deserialize_opt")]
    pub window: Option<Duration>,
    #[serde(default, deserialize_with = "duration::deserialize_opt")]
    pub cooldown: Option<Duration>,
    /// Successful probes in a row that close it.
    pub probes: Option<u32>,
}

/// `[[plugins]]`: one plugin bound globally (or to a tenant or model by `scope`), in `order`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPlugin {
    pub name: String,
    /// Which requests it runs for; global when absent.
    pub scope: Option<RawPluginScope>,
    /// `builtin:<name>` or a path to a `.wasm` component.
    pub source: String,
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// `per-request` or `reuse`.
    pub isolation: Option<String>,
    pub reuse_max_calls: Option<u32>,
    #[serde(default, deserialize_with = "duration::deserialize_opt")]
    pub reuse_max_age: Option<Duration>,
    /// `closed` or `open`.
    pub failure: Option<String>,
    pub order: Option<i64>,
    #[serde(default, deserialize_with = "duration::deserialize_opt")]
    pub timeout: Option<Duration>,
    pub max_memory_bytes: Option<usize>,
    /// Handed to the plugin as JSON through the `config` capability.
    #[serde(default)]
    pub config: toml::Table,
    /// Hosts (`host` or `host:port`) the `http` capability may reach.
    #[serde(default)]
    pub http_allow: Vec<String>,
    /// Calls that may run at once; unset: the host's default.
    pub max_concurrent_calls: Option<u32>,
    /// A `counters`/`cache` namespace shared with other bindings granted the same name.
    pub state_namespace: Option<String>,
    #[serde(default)]
    pub breaker: RawBreaker,
}
