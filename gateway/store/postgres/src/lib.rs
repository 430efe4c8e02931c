//! Sluice's store on PostgreSQL: the production backend, shared by every gateway replica.
//!
//! All SQL is checked at compile time against the schema in `migrations/postgres` (the
//! committed `.sqlx/` cache when building offline; see `gateway/store/README.md`). Each
//! mutation is one transaction that also writes its audit row, bumps `change_version` and
//! queues `pg_notify('sluice_changes', <version>)`, so other replicas hear of it exactly when
//! it commits; `wait_for_change` listens for that (see `watch.rs`).

mod audit;
mod codec;
mod error;
mod keys;
mod model_limits;
mod ownership;
mod plugins;
mod pools;
mod snapshot;
mod tenants;
mod usage;
mod watch;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sluice_store_model::{
    Actor, Adopt, ApiKey, AuditEntry, AuditQuery, Backend, BackendKind, Binding, ConfigOwned, Limits, ModelLimits,
    NewBinding, NewEndpoint, NewKey, NewPluginVersion, NewPool, NewTenant, Plugin, PluginVersion, Pool, PoolApi,
    ScopeLimits, Slo, StoreError, StoreSnapshot, Tenant, TenantDetail, TenantPatch, TenantTokens, UsageCounts,
    UsageKey, UsageQuery, UsageRow,
};
use sqlx::migrate::{MigrateError, Migrator};
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres, Transaction};

use crate::error::db;

/// The schema, compiled in: a binary always carries the migrations it was checked against.
static MIGRATOR: Migrator = sqlx::migrate!("../../../migrations/postgres");

/// How long to wait for a connection (new or pooled) before answering `Unavailable`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Admin writes and snapshot reloads are rare; the gateway's request path never waits on the
/// database. One of these is the change listener's.
const MAX_CONNECTIONS: u32 = 10;

#[derive(Clone)]
pub struct PostgresStore {
    pool: PgPool,
    watcher: Arc<watch::Watcher>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore").field("pool_size", &self.pool.size()).finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Connects (rustls TLS when the URL asks for it, e.g. `?sslmode=require`), failing with
    /// `Unavailable` after about five seconds if the server cannot be reached.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let options: PgConnectOptions =
            url.parse().map_err(|e: sqlx::Error| StoreError::invalid("database_url", e.to_string()))?;
        let options = options.application_name("sluice");
        let connecting = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(CONNECT_TIMEOUT)
            .connect_with(options);
        // The acquire timeout bounds the first connection too; this outer bound is for a
        // server that accepts the TCP connection and then says nothing.
        let pool = tokio::time::timeout(CONNECT_TIMEOUT + Duration::from_secs(1), connecting)
            .await
            .map_err(|_| StoreError::Unavailable("timed out connecting to PostgreSQL".into()))?
            .map_err(db)?;
        Ok(Self::from_pool(pool))
    }

    /// Uses a pool the caller configured (tests, or an embedding with its own limits).
    pub fn from_pool(pool: PgPool) -> Self {
        PostgresStore { watcher: Arc::new(watch::Watcher::new(pool.clone())), pool }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Stops the change listener and closes every connection (on shutdown).
    pub async fn close(&self) {
        self.watcher.stop();
        self.pool.close().await;
    }

    async fn conn(&self) -> Result<PoolConnection<Postgres>, StoreError> {
        self.pool.acquire().await.map_err(db)
    }

    async fn write(&self) -> Result<Transaction<'static, Postgres>, StoreError> {
        self.pool.begin().await.map_err(db)
    }

    /// Reads of several statements that must agree with each other.
    async fn read(&self) -> Result<Transaction<'static, Postgres>, StoreError> {
        self.pool.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").await.map_err(db)
    }
}

/// Runs `$call(&mut tx, args…)` in a write transaction and commits it; an error on the way
/// drops the transaction, which rolls it back (audit row and version bump included).
macro_rules! in_write {
    ($store:expr, $call:path $(, $arg:expr)* $(,)?) => {{
        let mut tx = $store.write().await?;
        let out = $call(&mut tx $(, $arg)*).await?;
        tx.commit().await.map_err(db)?;
        Ok(out)
    }};
}

/// Runs `$call(&mut tx, args…)` in a read-only repeatable-read transaction.
macro_rules! in_read {
    ($store:expr, $call:path $(, $arg:expr)* $(,)?) => {{
        let mut tx = $store.read().await?;
        let out = $call(&mut tx $(, $arg)*).await?;
        tx.commit().await.map_err(db)?;
        Ok(out)
    }};
}

#[async_trait]
impl Backend for PostgresStore {
    fn kind(&self) -> BackendKind {
        BackendKind::Postgres
    }

    /// sqlx holds a PostgreSQL advisory lock while it migrates, so replicas starting together
    /// apply each migration once; the others wait, then find nothing left to do.
    async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.pool).await.map_err(|e| match e {
            MigrateError::Execute(inner) => match db(inner) {
                unavailable @ StoreError::Unavailable(_) => unavailable,
                other => StoreError::Migration(other.to_string()),
            },
            other => StoreError::Migration(other.to_string()),
        })
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        sqlx::query_scalar!("SELECT 1 AS \"one!\"").fetch_one(&mut *conn).await.map_err(db)?;
        Ok(())
    }

    async fn create_tenant(&self, actor: &Actor, tenant: &NewTenant) -> Result<Tenant, StoreError> {
        in_write!(self, tenants::create, actor, tenant)
    }

    async fn list_tenants(&self) -> Result<Vec<Tenant>, StoreError> {
        tenants::list(&mut *self.conn().await?).await
    }

    async fn get_tenant(&self, name: &str) -> Result<TenantDetail, StoreError> {
        in_read!(self, tenants::detail, name)
    }

    async fn update_tenant(&self, actor: &Actor, name: &str, patch: &TenantPatch) -> Result<Tenant, StoreError> {
        in_write!(self, tenants::update, actor, name, patch)
    }

    async fn delete_tenant(&self, actor: &Actor, name: &str) -> Result<(), StoreError> {
        in_write!(self, tenants::delete, actor, name)
    }

    async fn set_limits(&self, actor: &Actor, tenant: &str, limits: &Limits) -> Result<Limits, StoreError> {
        in_write!(self, tenants::set_limits, actor, tenant, limits)
    }

    async fn set_slos(&self, actor: &Actor, tenant: &str, slos: &[Slo]) -> Result<Vec<Slo>, StoreError> {
        in_write!(self, tenants::set_slos, actor, tenant, slos)
    }

    async fn list_model_limits(&self, tenant: &str) -> Result<Vec<ModelLimits>, StoreError> {
        in_read!(self, model_limits::list, tenant)
    }

    async fn set_model_limits(
        &self,
        actor: &Actor,
        tenant: &str,
        model: &str,
        limits: &ScopeLimits,
    ) -> Result<ModelLimits, StoreError> {
        in_write!(self, model_limits::set, actor, tenant, model, limits)
    }

    async fn delete_model_limits(&self, actor: &Actor, tenant: &str, model: &str) -> Result<(), StoreError> {
        in_write!(self, model_limits::delete, actor, tenant, model)
    }

    async fn create_key(&self, actor: &Actor, tenant: &str, key: &NewKey) -> Result<ApiKey, StoreError> {
        in_write!(self, keys::create, actor, tenant, key)
    }

    async fn list_keys(&self, tenant: &str) -> Result<Vec<ApiKey>, StoreError> {
        in_read!(self, keys::list, tenant)
    }

    async fn revoke_key(&self, actor: &Actor, tenant: &str, key_id: i64) -> Result<ApiKey, StoreError> {
        in_write!(self, keys::revoke, actor, tenant, key_id)
    }

    async fn set_key_limits(
        &self,
        actor: &Actor,
        tenant: &str,
        key_id: i64,
        limits: &ScopeLimits,
    ) -> Result<ApiKey, StoreError> {
        in_write!(self, keys::set_limits, actor, tenant, key_id, limits)
    }

    async fn create_pool(&self, actor: &Actor, pool: &NewPool) -> Result<Pool, StoreError> {
        in_write!(self, pools::create, actor, pool)
    }

    async fn list_pools(&self) -> Result<Vec<Pool>, StoreError> {
        in_read!(self, pools::load, None)
    }

    async fn get_pool(&self, name: &str) -> Result<Pool, StoreError> {
        in_read!(self, pools::get, name)
    }

    async fn delete_pool(&self, actor: &Actor, name: &str) -> Result<(), StoreError> {
        in_write!(self, pools::delete, actor, name)
    }

    async fn add_endpoint(&self, actor: &Actor, pool: &str, endpoint: &NewEndpoint) -> Result<Pool, StoreError> {
        in_write!(self, pools::add_endpoint, actor, pool, endpoint)
    }

    async fn set_endpoint_drained(
        &self,
        actor: &Actor,
        pool: &str,
        endpoint: &str,
        drained: bool,
    ) -> Result<Pool, StoreError> {
        in_write!(self, pools::set_drained, actor, pool, endpoint, drained)
    }

    async fn remove_endpoint(&self, actor: &Actor, pool: &str, endpoint: &str) -> Result<Pool, StoreError> {
        in_write!(self, pools::remove_endpoint, actor, pool, endpoint)
    }

    async fn set_pool_models(&self, actor: &Actor, pool: &str, models: &[String]) -> Result<Pool, StoreError> {
        in_write!(self, pools::set_models, actor, pool, models)
    }

    async fn set_pool_apis(&self, actor: &Actor, pool: &str, apis: &[PoolApi]) -> Result<Pool, StoreError> {
        in_write!(self, pools::set_apis, actor, pool, apis)
    }

    async fn config_owned(&self) -> Result<ConfigOwned, StoreError> {
        in_read!(self, ownership::config_owned)
    }

    async fn adopt(&self, actor: &Actor, item: &Adopt) -> Result<bool, StoreError> {
        in_write!(self, ownership::adopt, actor, item)
    }

    async fn add_plugin_version(&self, actor: &Actor, version: &NewPluginVersion) -> Result<PluginVersion, StoreError> {
        in_write!(self, plugins::add_version, actor, version)
    }

    async fn list_plugins(&self) -> Result<Vec<Plugin>, StoreError> {
        plugins::list(&mut *self.conn().await?).await
    }

    async fn list_plugin_versions(&self, plugin: &str) -> Result<Vec<PluginVersion>, StoreError> {
        in_read!(self, plugins::list_versions, plugin)
    }

    async fn plugin_bytes(&self, sha256: &str) -> Result<Vec<u8>, StoreError> {
        plugins::bytes(&mut *self.conn().await?, sha256).await
    }

    async fn activate_plugin_version(
        &self,
        actor: &Actor,
        plugin: &str,
        version: i32,
        grants: &[String],
    ) -> Result<Plugin, StoreError> {
        in_write!(self, plugins::activate, actor, plugin, version, grants)
    }

    async fn bind_plugin(&self, actor: &Actor, binding: &NewBinding) -> Result<Binding, StoreError> {
        in_write!(self, plugins::bind, actor, binding)
    }

    async fn unbind_plugin(&self, actor: &Actor, binding_id: i64) -> Result<(), StoreError> {
        in_write!(self, plugins::unbind, actor, binding_id)
    }

    async fn list_bindings(&self) -> Result<Vec<Binding>, StoreError> {
        plugins::bindings(&mut *self.conn().await?).await
    }

    /// Not a configuration change: no audit row, no version bump (gateways would otherwise
    /// reload their snapshot on every usage flush).
    async fn add_usage(&self, deltas: &[(UsageKey, UsageCounts)]) -> Result<(), StoreError> {
        usage::add(&mut *self.conn().await?, deltas).await
    }

    async fn usage(&self, query: &UsageQuery) -> Result<Vec<UsageRow>, StoreError> {
        usage::query(&mut *self.conn().await?, query).await
    }

    async fn tokens_by_tenant(&self, from: i64, to: i64) -> Result<Vec<TenantTokens>, StoreError> {
        usage::tokens_by_tenant(&mut *self.conn().await?, from, to).await
    }

    async fn audit_log(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        audit::log(&mut *self.conn().await?, query).await
    }

    async fn snapshot(&self) -> Result<StoreSnapshot, StoreError> {
        in_read!(self, snapshot::read)
    }

    async fn change_version(&self) -> Result<i64, StoreError> {
        snapshot::change_version(&mut *self.conn().await?).await
    }

    async fn wait_for_change(&self, seen: i64, max_wait: Duration) -> Result<i64, StoreError> {
        self.watcher.wait_for_change(seen, max_wait).await
    }
}
