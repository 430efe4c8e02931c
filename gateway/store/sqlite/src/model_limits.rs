//! A tenant's limits per model.

use serde_json::json;
use sluice_store_model::{Actor, ModelLimits, ScopeLimits, StoreError};
use sqlx::{SqliteConnection, SqlitePool};

use crate::codec;
use crate::error::{self, db};
use crate::tenants;
use crate::write::{self, Audit};

fn target(tenant: &str, model: &str) -> String {
    format!("{tenant}/model/{model}")
}

/// By model name, in byte order (SQLite's default BINARY collation).
pub(crate) async fn list_in(conn: &mut SqliteConnection, tenant_id: i64) -> Result<Vec<ModelLimits>, StoreError> {
    let rows = sqlx::query!(
        "SELECT model, requests_per_minute, tokens_per_minute, max_concurrency, monthly_token_budget
         FROM model_limits WHERE tenant_id = ? ORDER BY model",
        tenant_id
    )
    .fetch_all(conn)
    .await
    .map_err(db)?;
    rows.into_iter()
        .map(|r| {
            let limits = codec::scope_limits_of!(r)?;
            Ok(ModelLimits { model: r.model, limits })
        })
        .collect()
}

pub(crate) async fn list(pool: &SqlitePool, tenant: &str) -> Result<Vec<ModelLimits>, StoreError> {
    let mut tx = pool.begin().await.map_err(db)?;
    let tenant_id = tenants::id_of(&mut tx, tenant).await?;
    let limits = list_in(&mut tx, tenant_id).await?;
    tx.commit().await.map_err(db)?;
    Ok(limits)
}

/// Every tenant's, by tenant id, for the snapshot.
pub(crate) async fn all(conn: &mut SqliteConnection) -> Result<Vec<(i64, ModelLimits)>, StoreError> {
    let rows = sqlx::query!(
        "SELECT tenant_id, model, requests_per_minute, tokens_per_minute, max_concurrency, monthly_token_budget
         FROM model_limits ORDER BY tenant_id, model"
    )
    .fetch_all(conn)
    .await
    .map_err(db)?;
    rows.into_iter()
        .map(|r| {
            let limits = codec::scope_limits_of!(r)?;
            Ok((r.tenant_id, ModelLimits { model: r.model, limits }))
        })
        .collect()
}

pub(crate) async fn set(
    pool: &SqlitePool,
    actor: &Actor,
    tenant: &str,
    model: &str,
    limits: &ScopeLimits,
) -> Result<ModelLimits, StoreError> {
    let [rpm, tpm, concurrency, budget] = limits.to_columns()?;
    let mut tx = write::begin(pool).await?;
    let tenant_id = tenants::id_of(&mut tx, tenant).await?;
    sqlx::query!(
        "INSERT INTO model_limits
             (tenant_id, model, requests_per_minute, tokens_per_minute, max_concurrency, monthly_token_budget)
         VALUES (?, ?, ?, ?, ?, ?)
         ON CONFLICT (tenant_id, model) DO UPDATE SET
             requests_per_minute = excluded.requests_per_minute,
             tokens_per_minute = excluded.tokens_per_minute,
             max_concurrency = excluded.max_concurrency,
             monthly_token_budget = excluded.monthly_token_budget",
        tenant_id,
        model,
        rpm,
        tpm,
        concurrency,
        budget,
    )
    .execute(&mut *tx)
    .await
    .map_err(db)?;
    let row = sqlx::query!(
        "SELECT model, requests_per_minute, tokens_per_minute, max_concurrency, monthly_token_budget
         FROM model_limits WHERE tenant_id = ? AND model = ?",
        tenant_id,
        model
    )
    .fetch_one(&mut *tx)
    .await
    .map_err(db)?;
    let stored = ModelLimits { model: row.model, limits: codec::scope_limits_of!(row)? };
    let detail = serde_json::to_value(stored.limits).map_err(|e| error::json("limits", e))?;
    write::commit(tx, Audit { actor, action: "model_limits.set", target: target(tenant, model), detail }).await?;
    Ok(stored)
}

pub(crate) async fn delete(pool: &SqlitePool, actor: &Actor, tenant: &str, model: &str) -> Result<(), StoreError> {
    let mut tx = write::begin(pool).await?;
    let tenant_id = tenants::id_of(&mut tx, tenant).await?;
    let deleted = sqlx::query!("DELETE FROM model_limits WHERE tenant_id = ? AND model = ?", tenant_id, model)
        .execute(&mut *tx)
        .await
        .map_err(db)?
        .rows_affected();
    if deleted == 0 {
        return Err(StoreError::not_found("model limits", target(tenant, model)));
    }
    write::commit(tx, Audit { actor, action: "model_limits.delete", target: target(tenant, model), detail: json!({}) })
        .await
}
