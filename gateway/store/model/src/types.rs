//! The stored entities, exactly as the admin API shows them in JSON.

use serde::{Deserialize, Serialize};

pub use crate::timestamp::Timestamp;

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TenantStatus {
    #[default]
    Active,
    /// Keys are refused with 403 until the tenant is reactivated; nothing is deleted.
    Suspended,
}

/// Scheduling class: who is shed first under overload, and who the SLO-aware router protects.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    High,
    #[default]
    Normal,
    Low,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tenant {
    pub id: i64,
    pub name: String,
    pub status: TenantStatus,
    pub priority: Priority,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// Per-tenant limits; `None` means unlimited. `PUT …/limits` replaces all of them at once.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(maximum = 9223372036854775807i64))]
    pub requests_per_minute: Option<u64>,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(maximum = 9223372036854775807i64))]
    pub tokens_per_minute: Option<u64>,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(maximum = 9223372036854775807i64))]
    pub max_concurrency: Option<u64>,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(maximum = 9223372036854775807i64))]
    pub monthly_token_budget: Option<u64>,
    /// Models this tenant may call; `None` allows every model the gateway serves.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(pattern = "^[^\\s\\x00-\\x1f\\x7f-\\x9f]{1,256}$"))]
    pub allowed_models: Option<Vec<String>>,
}

/// The limits of a scope narrower than the tenant: one API key, or one tenant × model pair.
/// `None` means this scope sets no such limit (the tenant's own limits still hold). The same
/// four limits as [`Limits`]; `PUT` replaces all of them at once.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ScopeLimits {
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(maximum = 9223372036854775807i64))]
    pub requests_per_minute: Option<u64>,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(maximum = 9223372036854775807i64))]
    pub tokens_per_minute: Option<u64>,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(maximum = 9223372036854775807i64))]
    pub max_concurrency: Option<u64>,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(maximum = 9223372036854775807i64))]
    pub monthly_token_budget: Option<u64>,
}

impl ScopeLimits {
    /// Whether no limit is set.
    pub fn is_empty(&self) -> bool {
        *self == ScopeLimits::default()
    }

    /// From the four signed 64-bit columns both stores keep them in, in field order (NULL:
    /// not set). A negative value (only from a hand-written row) is a database error.
    pub fn from_columns(columns: [Option<i64>; 4]) -> Result<Self, crate::StoreError> {
        let [rpm, tpm, concurrency, budget] = columns;
        let unsigned = |column: &str, value: Option<i64>| {
            value
                .map(|v| {
                    u64::try_from(v)
                        .map_err(|_| crate::StoreError::Database(format!("unexpected {column} {v} in the database")))
                })
                .transpose()
        };
        Ok(ScopeLimits {
            requests_per_minute: unsigned("requests_per_minute", rpm)?,
            tokens_per_minute: unsigned("tokens_per_minute", tpm)?,
            max_concurrency: unsigned("max_concurrency", concurrency)?,
            monthly_token_budget: unsigned("monthly_token_budget", budget)?,
        })
    }

    /// As those four columns; a value beyond `i64::MAX` is `Invalid` (the caller validated it,
    /// see [`crate::validate::scope_limits`], so this only keeps the conversion honest).
    pub fn to_columns(&self) -> Result<[Option<i64>; 4], crate::StoreError> {
        let signed = |field: &'static str, value: Option<u64>| {
            value.map(|v| i64::try_from(v).map_err(|_| crate::StoreError::invalid(field, "is too large"))).transpose()
        };
        Ok([
            signed("requests_per_minute", self.requests_per_minute)?,
            signed("tokens_per_minute", self.tokens_per_minute)?,
            signed("max_concurrency", self.max_concurrency)?,
            signed("monthly_token_budget", self.monthly_token_budget)?,
        ])
    }
}

/// One tenant's limits for one model (the name requests ask for).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelLimits {
    #[cfg_attr(feature = "openapi", schema(pattern = "^[^\\s\\x00-\\x1f\\x7f-\\x9f]{1,256}$"))]
    pub model: String,
    pub limits: ScopeLimits,
}

/// A latency objective for one tenant and one model (`"*"` for every model without its own).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Slo {
    #[cfg_attr(feature = "openapi", schema(pattern = "^[^\\s\\x00-\\x1f\\x7f-\\x9f]{1,256}$"))]
    pub model: String,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 2147483647))]
    pub ttft_p95_ms: Option<u32>,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 2147483647))]
    pub tpot_p95_ms: Option<u32>,
    /// Share of requests that must meet both targets, in (0, 1].
    #[cfg_attr(feature = "openapi", schema(exclusive_minimum = 0, maximum = 1))]
    pub target_attainment: f64,
}

/// A tenant with everything attached to it, as `GET /admin/api/tenants/{name}` shows it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TenantDetail {
    #[serde(flatten)]
    pub tenant: Tenant,
    pub limits: Limits,
    /// Limits per model, by model name (byte order).
    pub model_limits: Vec<ModelLimits>,
    pub slos: Vec<Slo>,
    pub keys: Vec<ApiKey>,
}

/// An API key as listed: never the secret, only a prefix long enough to recognise it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKey {
    pub id: i64,
    pub tenant: String,
    pub name: Option<String>,
    pub prefix: String,
    pub created_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
    /// This key's own limits, on top of its tenant's.
    pub limits: ScopeLimits,
}

/// The response to creating a key: the only time the secret is ever shown.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedKey {
    pub key: String,
    #[serde(flatten)]
    pub info: ApiKey,
}

/// Which serving engine an endpoint runs; it decides how the gateway reads its `/metrics`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum EngineFlavor {
    #[default]
    Vllm,
    Sglang,
    Trtllm,
    LlamaCpp,
    /// Any other OpenAI-compatible server; no engine metrics are read.
    Openai,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub id: i64,
    pub pool: String,
    pub name: String,
    pub url: String,
    pub flavor: EngineFlavor,
    pub weight: u32,
    pub http2: bool,
    /// A drained endpoint finishes what it has and receives nothing new.
    pub drained: bool,
    pub created_at: Timestamp,
}

/// An inference API a pool's workers speak: what `[[pools]] apis` names in the config file.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PoolApi {
    /// `POST /v1/chat/completions`.
    Chat,
    /// `POST /v1/completions`.
    Completions,
    /// `POST /v1/embeddings`.
    Embeddings,
    /// OpenAI's Responses API, `POST /v1/responses`.
    Responses,
    /// Anthropic's Messages API, `POST /v1/messages`.
    Messages,
}

impl PoolApi {
    /// Every API, in this order (the order lists of them are kept in).
    pub const ALL: [PoolApi; 5] =
        [PoolApi::Chat, PoolApi::Completions, PoolApi::Embeddings, PoolApi::Responses, PoolApi::Messages];

    /// Their names, as JSON and the config file spell them, in the order of [`PoolApi::ALL`].
    pub const NAMES: [&'static str; 5] = ["chat", "completions", "embeddings", "responses", "messages"];

    /// What a pool speaks unless it says otherwise: the three OpenAI APIs every
    /// OpenAI-compatible server has. Responses and Messages are served by some engines only
    /// (vLLM has both), so a pool declares them.
    pub const DEFAULT: [PoolApi; 3] = [PoolApi::Chat, PoolApi::Completions, PoolApi::Embeddings];

    pub fn name(self) -> &'static str {
        Self::NAMES[self as usize]
    }

    pub fn from_name(name: &str) -> Option<PoolApi> {
        Self::NAMES.iter().position(|n| *n == name).map(|i| Self::ALL[i])
    }

    /// `apis` without repeats, in [`PoolApi::ALL`] order, so that equal sets are stored and
    /// compared alike.
    pub fn normalized(apis: &[PoolApi]) -> Vec<PoolApi> {
        Self::ALL.into_iter().filter(|a| apis.contains(a)).collect()
    }

    /// A pool's APIs as a store read them: an empty list (or none, a NULL column: a pool
    /// created before the stores kept APIs, or without naming any) is the default.
    pub fn from_stored(apis: &[PoolApi]) -> Vec<PoolApi> {
        if apis.is_empty() { Self::DEFAULT.to_vec() } else { Self::normalized(apis) }
    }
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pool {
    pub id: i64,
    pub name: String,
    pub models: Vec<String>,
    /// The APIs the pool's workers speak, without repeats, in the order chat, completions,
    /// embeddings, responses, messages. A pool that never named any speaks (and shows) the
    /// default: chat, completions and embeddings.
    pub apis: Vec<PoolApi>,
    pub endpoints: Vec<Endpoint>,
    pub created_at: Timestamp,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plugin {
    pub id: i64,
    pub name: String,
    /// The version bindings run; `None` until one is activated.
    pub active_version: Option<i32>,
    /// The capabilities the admin granted the active version when activating it (empty while
    /// no version is active).
    pub granted: Vec<String>,
    pub created_at: Timestamp,
}

/// One uploaded build of a plugin. The bytes are stored beside it and fetched on their own.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginVersion {
    pub plugin: String,
    pub version: i32,
    pub sha256: String,
    pub size_bytes: i64,
    /// The manifest the gateway's plugin host reported at upload: the contract, the hooks the
    /// component exports, and in `capabilities` the host capabilities it imports — what it
    /// requests, which activation must grant (see docs/plugins.md).
    pub manifest: serde_json::Value,
    /// The capabilities granted the last time this version was activated; null if it never
    /// was. Rolling back to this version grants these again.
    pub granted: Option<Vec<String>>,
    pub created_at: Timestamp,
}

/// Where a binding applies.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", content = "name", rename_all = "snake_case")]
pub enum Scope {
    Global,
    Tenant(String),
    Model(String),
}

/// What the gateway does when a plugin traps, times out or is missing.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum FailurePolicy {
    /// Skip the plugin and go on: for optional policies such as caching.
    #[default]
    Open,
    /// Refuse the request: for policies that must hold, such as quotas.
    Closed,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Binding {
    pub id: i64,
    pub plugin: String,
    pub scope: Scope,
    /// Lower runs first.
    pub order: i32,
    pub failure_policy: FailurePolicy,
    pub config: serde_json::Value,
    /// The deadline of each call into the plugin, in milliseconds; null: the host's default
    /// (10 ms).
    pub timeout_ms: Option<u32>,
    /// The most linear memory one instance may grow to; null: the host's default (16 MiB, or
    /// the engine's maximum if lower).
    pub max_memory_bytes: Option<u64>,
    pub created_at: Timestamp,
}

/// Usage counted by one gateway replica for one tenant, model and minute; stores add deltas
/// from every replica into one row.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
pub struct UsageKey {
    pub tenant: String,
    pub model: String,
    /// Unix time in seconds of the minute's start (always a multiple of 60).
    pub minute: i64,
}

/// Additive counters; `merge` is how replicas' deltas and retried batches combine.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct UsageCounts {
    pub requests: i64,
    pub errors: i64,
    pub prompt_tokens: i64,
    pub cached_tokens: i64,
    pub completion_tokens: i64,
    /// Requests that met their tenant's SLO for the model (goodput).
    pub slo_met: i64,
    pub ttft_count: i64,
    pub ttft_sum_ms: i64,
    pub ttft_max_ms: i64,
    pub tpot_count: i64,
    /// Sum of per-request TPOT in microseconds, so that the mean keeps sub-millisecond detail.
    pub tpot_sum_us: i64,
    pub tpot_max_us: i64,
    /// Requests billed on the gateway's own figures because the worker reported no usage (a
    /// stream cut short, an answer without usage).
    #[serde(default)]
    pub estimated_requests: i64,
    /// The part of `prompt_tokens` that is the gateway's estimate (request bytes / 4), not the
    /// worker's count.
    #[serde(default)]
    pub estimated_prompt_tokens: i64,
    /// The part of `completion_tokens` counted from the token events relayed, not reported by
    /// the worker.
    #[serde(default)]
    pub estimated_completion_tokens: i64,
}

impl UsageCounts {
    pub fn merge(&mut self, other: &UsageCounts) {
        self.requests += other.requests;
        self.errors += other.errors;
        self.prompt_tokens += other.prompt_tokens;
        self.cached_tokens += other.cached_tokens;
        self.completion_tokens += other.completion_tokens;
        self.slo_met += other.slo_met;
        self.ttft_count += other.ttft_count;
        self.ttft_sum_ms += other.ttft_sum_ms;
        self.ttft_max_ms = self.ttft_max_ms.max(other.ttft_max_ms);
        self.tpot_count += other.tpot_count;
        self.tpot_sum_us += other.tpot_sum_us;
        self.tpot_max_us = self.tpot_max_us.max(other.tpot_max_us);
        self.estimated_requests += other.estimated_requests;
        self.estimated_prompt_tokens += other.estimated_prompt_tokens;
        self.estimated_completion_tokens += other.estimated_completion_tokens;
    }
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageRow {
    #[serde(flatten)]
    pub key: UsageKey,
    #[serde(flatten)]
    pub counts: UsageCounts,
}

/// A usage query: half-open range `[from, to)` in unix seconds, optionally narrowed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UsageQuery {
    pub tenant: Option<String>,
    pub model: Option<String>,
    pub from: i64,
    pub to: i64,
}

/// One tenant's tokens (prompt + completion) over a range of minutes: what monthly budgets
/// count. Cached prompt tokens are part of the prompt's count, so they are not added again.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantTokens {
    pub tenant: String,
    pub tokens: u64,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub id: i64,
    pub at: Timestamp,
    /// Who made the change: `admin` (the admin token), `bootstrap` (the config file), …
    pub actor: String,
    /// What was done, as `noun.verb`: `tenant.create`, `key.revoke`, `plugin.activate`, …
    pub action: String,
    /// What it was done to: a tenant name, `acme/key/12`, `pool/gpu-a/endpoint/w1`, …
    pub target: String,
    pub detail: serde_json::Value,
}

/// Newest first; `before` pages backwards by id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditQuery {
    pub limit: u32,
    pub before: Option<i64>,
}

/// A key as the gateway's hot path needs it: the hash, and an id for logs and revocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotKey {
    pub id: i64,
    pub prefix: String,
    pub hash: crate::keys::KeyDigest,
    pub limits: ScopeLimits,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotTenant {
    pub tenant: Tenant,
    pub limits: Limits,
    /// By model name.
    pub model_limits: Vec<ModelLimits>,
    pub slos: Vec<Slo>,
    /// Only keys that are not revoked.
    pub keys: Vec<SnapshotKey>,
}

/// A plugin version that bindings run, without its bytes (fetched by sha256 when not cached).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivePlugin {
    pub name: String,
    pub version: i32,
    pub sha256: String,
    /// The capabilities its bindings are granted: those the admin granted at activation.
    pub granted: Vec<String>,
}

/// Everything the gateway serves from, read in one consistent transaction.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StoreSnapshot {
    /// The change counter this snapshot reflects; see [`crate::Backend::change_version`].
    pub version: i64,
    pub tenants: Vec<SnapshotTenant>,
    pub pools: Vec<Pool>,
    pub plugins: Vec<ActivePlugin>,
    pub bindings: Vec<Binding>,
}
