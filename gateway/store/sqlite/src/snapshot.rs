//! What the gateway serves from, and how it learns that something changed.

use std::collections::HashMap;
use std::time::Duration;

use sluice_store_model::{SnapshotTenant, StoreError, StoreSnapshot};
use sqlx::{SqliteConnection, SqlitePool};
use tokio::time::Instant;

use crate::error::db;
use crate::{keys, model_limits, plugins, pools, tenants};

/// SQLite has no NOTIFY; a single-row read is cheap enough to repeat this often, and keeps
/// replicas sharing a file within a fraction of a second of each other.
const POLL_INTERVAL: Duration = Duration::from_millis(200);

async fn version_in(conn: &mut SqliteConnection) -> Result<i64, StoreError> {
    sqlx::query_scalar!("SELECT version FROM change_version WHERE id = 1")
        .fetch_optional(conn)
        .await
        .map_err(db)?
        .ok_or_else(|| StoreError::Migration("the change_version row is missing; run migrations".into()))
}

pub(crate) async fn version(pool: &SqlitePool) -> Result<i64, StoreError> {
    let mut conn = pool.acquire().await.map_err(db)?;
    version_in(&mut conn).await
}

pub(crate) async fn wait_for_change(pool: &SqlitePool, seen: i64, max_wait: Duration) -> Result<i64, StoreError> {
    let deadline = Instant::now() + max_wait;
    loop {
        let current = version(pool).await?;
        let now = Instant::now();
        if current != seen || now >= deadline {
            return Ok(current);
        }
        tokio::time::sleep(POLL_INTERVAL.min(deadline - now)).await;
    }
}

/// One read transaction: in WAL mode it sees the file as of its first read, whatever other
/// connections or processes commit meanwhile, so the version matches the rows.
pub(crate) async fn read(pool: &SqlitePool) -> Result<StoreSnapshot, StoreError> {
    let mut tx = pool.begin().await.map_err(db)?;
    let version = version_in(&mut tx).await?;
    let mut limits: HashMap<i64, _> = tenants::all_limits(&mut tx).await?.into_iter().collect();
    let mut slos: HashMap<i64, Vec<_>> = HashMap::new();
    for (tenant_id, slo) in tenants::all_slos(&mut tx).await? {
        slos.entry(tenant_id).or_default().push(slo);
    }
    let mut keys: HashMap<i64, Vec<_>> = HashMap::new();
    for (tenant_id, key) in keys::all_active(&mut tx).await? {
        keys.entry(tenant_id).or_default().push(key);
    }
    let mut model_limits: HashMap<i64, Vec<_>> = HashMap::new();
    for (tenant_id, entry) in model_limits::all(&mut tx).await? {
        model_limits.entry(tenant_id).or_default().push(entry);
    }
    let tenants = tenants::list_in(&mut tx)
        .await?
        .into_iter()
        .map(|tenant| SnapshotTenant {
            limits: limits.remove(&tenant.id).unwrap_or_default(),
            model_limits: model_limits.remove(&tenant.id).unwrap_or_default(),
            slos: slos.remove(&tenant.id).unwrap_or_default(),
            keys: keys.remove(&tenant.id).unwrap_or_default(),
            tenant,
        })
        .collect();
    let pools = pools::list_in(&mut tx).await?;
    let plugins = plugins::active_in(&mut tx).await?;
    let bindings = plugins::bindings_in(&mut tx).await?;
    tx.commit().await.map_err(db)?;
    Ok(StoreSnapshot { version, tenants, pools, plugins, bindings })
}
