//! The operations every store provides. The admin API and the gateway hold an
//! `Arc<dyn Backend>`; nothing on the request path calls it (the gateway serves from a
//! [`StoreSnapshot`] it reloads when [`Backend::wait_for_change`] says something changed).
//!
//! Contract for implementations:
//! - Inputs are validated by the caller with [`crate::validate`]; stores still map constraint
//!   violations to [`StoreError::Conflict`] / [`StoreError::NotFound`], never to `Database`.
//! - Every mutation runs in one transaction that also appends an audit row (actor, action,
//!   target, detail) and bumps the change version; Postgres also `NOTIFY sluice_changes` in
//!   that transaction so other replicas reload within a second.
//! - Connection failures are [`StoreError::Unavailable`].

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::keys::KeyDigest;
use crate::{
    Adopt, ApiKey, AuditEntry, AuditQuery, Binding, ConfigOwned, EngineFlavor, FailurePolicy, Limits, ModelLimits,
    Plugin, PluginVersion, Pool, PoolApi, Priority, Scope, ScopeLimits, Slo, StoreError, StoreSnapshot, Tenant,
    TenantDetail, TenantStatus, TenantTokens, UsageCounts, UsageKey, UsageQuery, UsageRow,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendKind {
    Postgres,
    Sqlite,
}

/// Who is making a change, for the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor(pub String);

impl Actor {
    pub fn admin() -> Self {
        Actor("admin".into())
    }

    /// The config file's reconciliation: what it creates is owned by the file
    /// ([`crate::Owner`]).
    pub fn bootstrap() -> Self {
        Actor("bootstrap".into())
    }

    /// `sluice revoke-key`, which opens the store directly.
    pub fn cli() -> Self {
        Actor("cli".into())
    }
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewTenant {
    #[cfg_attr(feature = "openapi", schema(pattern = "^[a-z0-9][a-z0-9._-]{0,63}$"))]
    pub name: String,
    #[serde(default)]
    pub priority: Priority,
    #[serde(default)]
    pub status: TenantStatus,
}

/// A partial update; absent fields stay as they are.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct TenantPatch {
    #[serde(default)]
    pub priority: Option<Priority>,
    #[serde(default)]
    pub status: Option<TenantStatus>,
}

/// What a store keeps of a new key: never the secret itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewKey {
    pub name: Option<String>,
    pub prefix: String,
    pub digest: KeyDigest,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewPool {
    #[cfg_attr(feature = "openapi", schema(pattern = "^[a-z0-9][a-z0-9._-]{0,63}$"))]
    pub name: String,
    #[cfg_attr(feature = "openapi", schema(pattern = "^[^\\s\\x00-\\x1f\\x7f-\\x9f]{1,256}$", min_items = 1))]
    pub models: Vec<String>,
    /// The APIs the workers speak (at least one). Absent or null: the default, chat,
    /// completions and embeddings.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(min_items = 1))]
    pub apis: Option<Vec<PoolApi>>,
}

/// A partial update of a pool; absent fields stay as they are.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct PoolPatch {
    /// The APIs the workers speak (at least one), replacing the pool's list.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(min_items = 1))]
    pub apis: Option<Vec<PoolApi>>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewEndpoint {
    #[cfg_attr(feature = "openapi", schema(pattern = "^[a-z0-9][a-z0-9._-]{0,63}$"))]
    pub name: String,
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = "^https?://[^/\\s\\x00-\\x1f\\x7f-\\x9f][^\\s\\x00-\\x1f\\x7f-\\x9f]*$")
    )]
    pub url: String,
    #[serde(default)]
    pub flavor: EngineFlavor,
    #[serde(default = "default_weight")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 2147483647))]
    pub weight: u32,
    #[serde(default)]
    pub http2: bool,
}

fn default_weight() -> u32 {
    1
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewPluginVersion {
    pub plugin: String,
    pub bytes: Vec<u8>,
    /// Hex SHA-256 of `bytes`, computed by the caller.
    pub sha256: String,
    pub manifest: serde_json::Value,
}

/// A binding to create: where a plugin runs, in which order, how it fails, its config and its
/// per-call limits (`None`: the host's defaults).
#[derive(Debug, Clone, PartialEq)]
pub struct NewBinding {
    pub plugin: String,
    pub scope: Scope,
    pub order: i32,
    pub failure_policy: FailurePolicy,
    pub config: serde_json::Value,
    pub timeout_ms: Option<u32>,
    pub max_memory_bytes: Option<u64>,
}

impl NewBinding {
    /// A binding of `plugin` at `scope` with order 0, fail-open, an empty config and the host's
    /// default limits.
    pub fn new(plugin: impl Into<String>, scope: Scope) -> Self {
        NewBinding {
            plugin: plugin.into(),
            scope,
            order: 0,
            failure_policy: FailurePolicy::default(),
            config: serde_json::Value::Object(serde_json::Map::new()),
            timeout_ms: None,
            max_memory_bytes: None,
        }
    }
}

#[async_trait]
pub trait Backend: Send + Sync + 'static {
    fn kind(&self) -> BackendKind;

    /// Applies pending migrations; safe to call on every start and from several replicas.
    async fn migrate(&self) -> Result<(), StoreError>;

    /// A cheap round trip, for readiness.
    async fn ping(&self) -> Result<(), StoreError>;

    // ---- tenants
    /// Conflict if the name exists.
    async fn create_tenant(&self, actor: &Actor, tenant: &NewTenant) -> Result<Tenant, StoreError>;
    async fn list_tenants(&self) -> Result<Vec<Tenant>, StoreError>;
    async fn get_tenant(&self, name: &str) -> Result<TenantDetail, StoreError>;
    async fn update_tenant(&self, actor: &Actor, name: &str, patch: &TenantPatch) -> Result<Tenant, StoreError>;
    /// Deletes the tenant with its keys, limits, SLOs and tenant-scoped bindings; usage rows stay.
    /// Conflict if the config file owns it and `actor` is not [`Actor::bootstrap`].
    async fn delete_tenant(&self, actor: &Actor, name: &str) -> Result<(), StoreError>;
    async fn set_limits(&self, actor: &Actor, tenant: &str, limits: &Limits) -> Result<Limits, StoreError>;
    /// Replaces the tenant's SLOs with this list.
    async fn set_slos(&self, actor: &Actor, tenant: &str, slos: &[Slo]) -> Result<Vec<Slo>, StoreError>;
    /// The tenant's limits per model, by model name (byte order).
    async fn list_model_limits(&self, tenant: &str) -> Result<Vec<ModelLimits>, StoreError>;
    /// Replaces the tenant's limits for `model` (validated by the caller with
    /// [`crate::validate::model_limits`]), creating the entry if it is new.
    async fn set_model_limits(
        &self,
        actor: &Actor,
        tenant: &str,
        model: &str,
        limits: &ScopeLimits,
    ) -> Result<ModelLimits, StoreError>;
    /// NotFound if the tenant has no limits for `model`.
    async fn delete_model_limits(&self, actor: &Actor, tenant: &str, model: &str) -> Result<(), StoreError>;

    // ---- keys
    async fn create_key(&self, actor: &Actor, tenant: &str, key: &NewKey) -> Result<ApiKey, StoreError>;
    /// Revoked keys included, newest first.
    async fn list_keys(&self, tenant: &str) -> Result<Vec<ApiKey>, StoreError>;
    /// Idempotent: revoking a revoked key returns it unchanged.
    async fn revoke_key(&self, actor: &Actor, tenant: &str, key_id: i64) -> Result<ApiKey, StoreError>;
    /// Replaces the key's own limits (`ScopeLimits::default()` clears them). A revoked key's
    /// limits can be set too: they matter to nobody, and refusing would make clearing fail.
    async fn set_key_limits(
        &self,
        actor: &Actor,
        tenant: &str,
        key_id: i64,
        limits: &ScopeLimits,
    ) -> Result<ApiKey, StoreError>;

    // ---- pools and endpoints
    async fn create_pool(&self, actor: &Actor, pool: &NewPool) -> Result<Pool, StoreError>;
    async fn list_pools(&self) -> Result<Vec<Pool>, StoreError>;
    async fn get_pool(&self, name: &str) -> Result<Pool, StoreError>;
    /// Conflict if the config file owns it and `actor` is not [`Actor::bootstrap`].
    async fn delete_pool(&self, actor: &Actor, name: &str) -> Result<(), StoreError>;
    /// Replaces the pool's model list (validated by the caller).
    async fn set_pool_models(&self, actor: &Actor, pool: &str, models: &[String]) -> Result<Pool, StoreError>;
    /// Replaces the APIs the pool's workers speak (validated by the caller with
    /// [`crate::validate::pool_apis`]: at least one, kept without repeats in [`PoolApi::ALL`]
    /// order).
    async fn set_pool_apis(&self, actor: &Actor, pool: &str, apis: &[PoolApi]) -> Result<Pool, StoreError>;
    async fn add_endpoint(&self, actor: &Actor, pool: &str, endpoint: &NewEndpoint) -> Result<Pool, StoreError>;
    async fn set_endpoint_drained(
        &self,
        actor: &Actor,
        pool: &str,
        endpoint: &str,
        drained: bool,
    ) -> Result<Pool, StoreError>;
    /// Conflict if the config file owns it and `actor` is not [`Actor::bootstrap`].
    async fn remove_endpoint(&self, actor: &Actor, pool: &str, endpoint: &str) -> Result<Pool, StoreError>;

    // ---- ownership (see [`crate::Owner`]); what `actor` creates above is owned as
    // `Owner::of(actor)` says
    /// Everything the config file owns.
    async fn config_owned(&self) -> Result<ConfigOwned, StoreError>;
    /// Hands `item` to the config file; `Ok(false)` if the file owned it already (nothing is
    /// written then), NotFound if it does not exist.
    async fn adopt(&self, actor: &Actor, item: &Adopt) -> Result<bool, StoreError>;

    // ---- plugins
    /// Creates the plugin on its first upload. Versions count up from 1. Uploading bytes
    /// identical to an existing version of the same plugin is a Conflict naming that version.
    async fn add_plugin_version(&self, actor: &Actor, version: &NewPluginVersion) -> Result<PluginVersion, StoreError>;
    async fn list_plugins(&self) -> Result<Vec<Plugin>, StoreError>;
    /// Newest first.
    async fn list_plugin_versions(&self, plugin: &str) -> Result<Vec<PluginVersion>, StoreError>;
    /// The bytes of the version with this sha256 (any plugin).
    async fn plugin_bytes(&self, sha256: &str) -> Result<Vec<u8>, StoreError>;
    /// Makes `version` the one bindings run, granted exactly `grants` (capability names,
    /// checked by the caller with [`crate::validate::grants`]); the grants are kept with the
    /// version, so re-activating it later (a rollback) can grant the same again.
    async fn activate_plugin_version(
        &self,
        actor: &Actor,
        plugin: &str,
        version: i32,
        grants: &[String],
    ) -> Result<Plugin, StoreError>;
    /// Limits are checked by the caller against the host's maxima
    /// ([`crate::validate::binding_limits`]); stores refuse only values they cannot hold.
    async fn bind_plugin(&self, actor: &Actor, binding: &NewBinding) -> Result<Binding, StoreError>;
    async fn unbind_plugin(&self, actor: &Actor, binding_id: i64) -> Result<(), StoreError>;
    /// Ordered by `order`, then id.
    async fn list_bindings(&self) -> Result<Vec<Binding>, StoreError>;

    // ---- usage
    /// Adds each delta to its row (creating it), in one transaction: all or nothing, so a
    /// failed batch can be retried whole without double counting.
    async fn add_usage(&self, deltas: &[(UsageKey, UsageCounts)]) -> Result<(), StoreError>;
    /// Per-minute rows in `[from, to)`, ordered by minute, tenant, model.
    async fn usage(&self, query: &UsageQuery) -> Result<Vec<UsageRow>, StoreError>;
    /// Each tenant's prompt + completion tokens over the minutes in `[from, to)` (unix seconds,
    /// matched by the minute's start), summed by the database: a month of per-minute rows never
    /// leaves it. Tenants with no rows in the range are absent; the rest come in byte order of
    /// their names. A total beyond `i64::MAX` saturates there rather than failing every
    /// tenant's figures; a negative one (only from hand-written rows) counts as 0.
    async fn tokens_by_tenant(&self, from: i64, to: i64) -> Result<Vec<TenantTokens>, StoreError>;

    // ---- audit
    async fn audit_log(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError>;

    // ---- what the gateway serves from
    /// Everything in [`StoreSnapshot`], read in one transaction.
    async fn snapshot(&self) -> Result<StoreSnapshot, StoreError>;
    /// A counter bumped by every mutation.
    async fn change_version(&self) -> Result<i64, StoreError>;
    /// Returns the change version once it differs from `seen`, or after at most `max_wait`
    /// (returning the current version, possibly equal to `seen`). Postgres wakes on NOTIFY;
    /// SQLite polls.
    async fn wait_for_change(&self, seen: i64, max_wait: std::time::Duration) -> Result<i64, StoreError>;
}
