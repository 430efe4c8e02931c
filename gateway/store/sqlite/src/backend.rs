//! [`Backend`] for [`SqliteStore`]: each operation lives in the module for its area.

use std::time::Duration;

use async_trait::async_trait;
use sluice_store_model::{
    Actor, Adopt, ApiKey, AuditEntry, AuditQuery, Backend, BackendKind, Binding, ConfigOwned, Limits, ModelLimits,
    NewBinding, NewEndpoint, NewKey, NewPluginVersion, NewPool, NewTenant, Plugin, PluginVersion, Pool, PoolApi,
    ScopeLimits, Slo, StoreError, StoreSnapshot, Tenant, TenantDetail, TenantPatch, TenantTokens, UsageCounts,
    UsageKey, UsageQuery, UsageRow,
};

use crate::error::{self, db};
use crate::{
    MIGRATOR, SqliteStore, audit, keys, model_limits, ownership, plugins, pools, snapshot, tenants, usage, write,
};

#[async_trait]
impl Backend for SqliteStore {
    fn kind(&self) -> BackendKind {
        BackendKind::Sqlite
    }

    /// SQLite's migrator takes no lock, so two processes starting on a new file could both
    /// try to create the tables. Running it inside one IMMEDIATE transaction (its own
    /// transactions become savepoints) makes the second wait, then find nothing to do.
    /// `run_direct` is what `Migrator::run` calls once it has a connection; taking the
    /// connection directly avoids `run`'s `Acquire` bound, whose lifetime the compiler cannot
    /// prove `Send` inside an `async_trait` method.
    async fn migrate(&self) -> Result<(), StoreError> {
        let mut tx = write::begin(&self.pool).await?;
        MIGRATOR.run_direct(None, &mut *tx, false).await.map_err(error::migrate)?;
        tx.commit().await.map_err(db)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query_scalar!("SELECT 1 AS one").fetch_one(&self.pool).await.map_err(db).map(|_| ())
    }

    async fn create_tenant(&self, actor: &Actor, tenant: &NewTenant) -> Result<Tenant, StoreError> {
        tenants::create(&self.pool, actor, tenant).await
    }

    async fn list_tenants(&self) -> Result<Vec<Tenant>, StoreError> {
        tenants::list(&self.pool).await
    }

    async fn get_tenant(&self, name: &str) -> Result<TenantDetail, StoreError> {
        tenants::get(&self.pool, name).await
    }

    async fn update_tenant(&self, actor: &Actor, name: &str, patch: &TenantPatch) -> Result<Tenant, StoreError> {
        tenants::update(&self.pool, actor, name, patch).await
    }

    async fn delete_tenant(&self, actor: &Actor, name: &str) -> Result<(), StoreError> {
        tenants::delete(&self.pool, actor, name).await
    }

    async fn set_limits(&self, actor: &Actor, tenant: &str, limits: &Limits) -> Result<Limits, StoreError> {
        tenants::set_limits(&self.pool, actor, tenant, limits).await
    }

    async fn set_slos(&self, actor: &Actor, tenant: &str, slos: &[Slo]) -> Result<Vec<Slo>, StoreError> {
        tenants::set_slos(&self.pool, actor, tenant, slos).await
    }

    async fn list_model_limits(&self, tenant: &str) -> Result<Vec<ModelLimits>, StoreError> {
        model_limits::list(&self.pool, tenant).await
    }

    async fn set_model_limits(
        &self,
        actor: &Actor,
        tenant: &str,
        model: &str,
        limits: &ScopeLimits,
    ) -> Result<ModelLimits, StoreError> {
        model_limits::set(&self.pool, actor, tenant, model, limits).await
    }

    async fn delete_model_limits(&self, actor: &Actor, tenant: &str, model: &str) -> Result<(), StoreError> {
        model_limits::delete(&self.pool, actor, tenant, model).await
    }

    async fn create_key(&self, actor: &Actor, tenant: &str, key: &NewKey) -> Result<ApiKey, StoreError> {
        keys::create(&self.pool, actor, tenant, key).await
    }

    async fn list_keys(&self, tenant: &str) -> Result<Vec<ApiKey>, StoreError> {
        keys::list(&self.pool, tenant).await
    }

    async fn revoke_key(&self, actor: &Actor, tenant: &str, key_id: i64) -> Result<ApiKey, StoreError> {
        keys::revoke(&self.pool, actor, tenant, key_id).await
    }

    async fn set_key_limits(
        &self,
        actor: &Actor,
        tenant: &str,
        key_id: i64,
        limits: &ScopeLimits,
    ) -> Result<ApiKey, StoreError> {
        keys::set_limits(&self.pool, actor, tenant, key_id, limits).await
    }

    async fn create_pool(&self, actor: &Actor, pool: &NewPool) -> Result<Pool, StoreError> {
        pools::create(&self.pool, actor, pool).await
    }

    async fn list_pools(&self) -> Result<Vec<Pool>, StoreError> {
        pools::list(&self.pool).await
    }

    async fn get_pool(&self, name: &str) -> Result<Pool, StoreError> {
        pools::get(&self.pool, name).await
    }

    async fn delete_pool(&self, actor: &Actor, name: &str) -> Result<(), StoreError> {
        pools::delete(&self.pool, actor, name).await
    }

    async fn add_endpoint(&self, actor: &Actor, pool: &str, endpoint: &NewEndpoint) -> Result<Pool, StoreError> {
        pools::add_endpoint(&self.pool, actor, pool, endpoint).await
    }

    async fn set_endpoint_drained(
        &self,
        actor: &Actor,
        pool: &str,
        endpoint: &str,
        drained: bool,
    ) -> Result<Pool, StoreError> {
        pools::set_drained(&self.pool, actor, pool, endpoint, drained).await
    }

    async fn remove_endpoint(&self, actor: &Actor, pool: &str, endpoint: &str) -> Result<Pool, StoreError> {
        pools::remove_endpoint(&self.pool, actor, pool, endpoint).await
    }

    async fn set_pool_models(&self, actor: &Actor, pool: &str, models: &[String]) -> Result<Pool, StoreError> {
        pools::set_models(&self.pool, actor, pool, models).await
    }

    async fn set_pool_apis(&self, actor: &Actor, pool: &str, apis: &[PoolApi]) -> Result<Pool, StoreError> {
        pools::set_apis(&self.pool, actor, pool, apis).await
    }

    async fn config_owned(&self) -> Result<ConfigOwned, StoreError> {
        ownership::config_owned(&self.pool).await
    }

    async fn adopt(&self, actor: &Actor, item: &Adopt) -> Result<bool, StoreError> {
        ownership::adopt(&self.pool, actor, item).await
    }

    async fn add_plugin_version(&self, actor: &Actor, version: &NewPluginVersion) -> Result<PluginVersion, StoreError> {
        plugins::add_version(&self.pool, actor, version).await
    }

    async fn list_plugins(&self) -> Result<Vec<Plugin>, StoreError> {
        plugins::list(&self.pool).await
    }

    async fn list_plugin_versions(&self, plugin: &str) -> Result<Vec<PluginVersion>, StoreError> {
        plugins::list_versions(&self.pool, plugin).await
    }

    async fn plugin_bytes(&self, sha256: &str) -> Result<Vec<u8>, StoreError> {
        plugins::bytes(&self.pool, sha256).await
    }

    async fn activate_plugin_version(
        &self,
        actor: &Actor,
        plugin: &str,
        version: i32,
        grants: &[String],
    ) -> Result<Plugin, StoreError> {
        plugins::activate(&self.pool, actor, plugin, version, grants).await
    }

    async fn bind_plugin(&self, actor: &Actor, binding: &NewBinding) -> Result<Binding, StoreError> {
        plugins::bind(&self.pool, actor, binding).await
    }

    async fn unbind_plugin(&self, actor: &Actor, binding_id: i64) -> Result<(), StoreError> {
        plugins::unbind(&self.pool, actor, binding_id).await
    }

    async fn list_bindings(&self) -> Result<Vec<Binding>, StoreError> {
        plugins::bindings(&self.pool).await
    }

    async fn add_usage(&self, deltas: &[(UsageKey, UsageCounts)]) -> Result<(), StoreError> {
        usage::add(&self.pool, deltas).await
    }

    async fn usage(&self, query: &UsageQuery) -> Result<Vec<UsageRow>, StoreError> {
        usage::query(&self.pool, query).await
    }

    async fn tokens_by_tenant(&self, from: i64, to: i64) -> Result<Vec<TenantTokens>, StoreError> {
        usage::tokens_by_tenant(&self.pool, from, to).await
    }

    async fn audit_log(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        audit::log(&self.pool, query).await
    }

    async fn snapshot(&self) -> Result<StoreSnapshot, StoreError> {
        snapshot::read(&self.pool).await
    }

    async fn change_version(&self) -> Result<i64, StoreError> {
        snapshot::version(&self.pool).await
    }

    async fn wait_for_change(&self, seen: i64, max_wait: Duration) -> Result<i64, StoreError> {
        snapshot::wait_for_change(&self.pool, seen, max_wait).await
    }
}
