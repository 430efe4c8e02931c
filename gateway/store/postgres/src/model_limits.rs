//! A tenant's limits per model.

use serde_json::json;
use sluice_store_model::{Actor, ModelLimits, ScopeLimits, StoreError};
use sqlx::PgConnection;

use crate::audit::record;
use crate::codec;
use crate::error::db;
use crate::tenants::lock_id;

fn target(tenant: &str, model: &str) -> String {
    format!("{tenant}/model/{model}")
}

/// By model name, in byte order.
pub(crate) async fn list_for(conn: &mut PgConnection, tenant_id: i64) -> Result<Vec<ModelLimits>, StoreError> {
    let rows = sqlx::query!(
        r#"
        SELECT model, requests_per_minute, tokens_per_minute, max_concurrency, monthly_token_budget
        FROM model_limits WHERE tenant_id = $1 ORDER BY model COLLATE "C"
        "#,
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

pub(crate) async fn list(conn: &mut PgConnection, tenant: &str) -> Result<Vec<ModelLimits>, StoreError> {
    let tenant_id = sqlx::query_scalar!("SELECT id FROM tenants WHERE name = $1", tenant)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db)?
        .ok_or_else(|| StoreError::not_found("tenant", tenant))?;
    list_for(conn, tenant_id).await
}

/// Every tenant's, by tenant id, for the snapshot.
pub(crate) async fn all(conn: &mut PgConnection) -> Result<Vec<(i64, ModelLimits)>, StoreError> {
    let rows = sqlx::query!(
        r#"
        SELECT tenant_id, model, requests_per_minute, tokens_per_minute, max_concurrency, monthly_token_budget
        FROM model_limits ORDER BY tenant_id, model COLLATE "C"
        "#
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
    conn: &mut PgConnection,
    actor: &Actor,
    tenant: &str,
    model: &str,
    limits: &ScopeLimits,
) -> Result<ModelLimits, StoreError> {
    let tenant_id = lock_id(conn, tenant).await?;
    let [rpm, tpm, concurrency, budget] = limits.to_columns()?;
    let row = sqlx::query!(
        r#"
        INSERT INTO model_limits
            (tenant_id, model, requests_per_minute, tokens_per_minute, max_concurrency, monthly_token_budget)
        VALUES ($1, $2, $3, $4, $5, $6)
        ON CONFLICT (tenant_id, model) DO UPDATE SET
            requests_per_minute = EXCLUDED.requests_per_minute,
            tokens_per_minute = EXCLUDED.tokens_per_minute,
            max_concurrency = EXCLUDED.max_concurrency,
            monthly_token_budget = EXCLUDED.monthly_token_budget
        RETURNING model, requests_per_minute, tokens_per_minute, max_concurrency, monthly_token_budget
        "#,
        tenant_id,
        model,
        rpm,
        tpm,
        concurrency,
        budget,
    )
    .fetch_one(&mut *conn)
    .await
    .map_err(db)?;
    let stored = ModelLimits { model: row.model, limits: codec::scope_limits_of!(row)? };
    let detail = serde_json::to_value(stored.limits).map_err(|e| StoreError::Database(e.to_string()))?;
    record(conn, actor, "model_limits.set", &target(tenant, model), detail).await?;
    Ok(stored)
}

pub(crate) async fn delete(
    conn: &mut PgConnection,
    actor: &Actor,
    tenant: &str,
    model: &str,
) -> Result<(), StoreError> {
    let tenant_id = lock_id(conn, tenant).await?;
    sqlx::query_scalar!(
        "DELETE FROM model_limits WHERE tenant_id = $1 AND model = $2 RETURNING tenant_id",
        tenant_id,
        model
    )
    .fetch_optional(&mut *conn)
    .await
    .map_err(db)?
    .ok_or_else(|| StoreError::not_found("model limits", target(tenant, model)))?;
    record(conn, actor, "model_limits.delete", &target(tenant, model), json!({})).await?;
    Ok(())
}
