//! API keys: a display prefix and the SHA-256 digest, never the secret.

use serde_json::json;
use sluice_store_model::{Actor, ApiKey, NewKey, Owner, ScopeLimits, StoreError};
use sqlx::PgConnection;

use crate::audit::record;
use crate::codec::{self, now_ms, ts};
use crate::error::db;
use crate::tenants::lock_id;

struct KeyRow {
    id: i64,
    name: Option<String>,
    prefix: String,
    created_ms: i64,
    revoked_ms: Option<i64>,
    requests_per_minute: Option<i64>,
    tokens_per_minute: Option<i64>,
    max_concurrency: Option<i64>,
    monthly_token_budget: Option<i64>,
}

impl KeyRow {
    fn into_key(self, tenant: &str) -> Result<ApiKey, StoreError> {
        Ok(ApiKey {
            id: self.id,
            tenant: tenant.to_owned(),
            name: self.name,
            prefix: self.prefix,
            created_at: ts(self.created_ms),
            revoked_at: self.revoked_ms.map(ts),
            limits: codec::scope_limits_of!(self)?,
        })
    }
}

fn target(tenant: &str, id: i64) -> String {
    format!("{tenant}/key/{id}")
}

pub(crate) async fn create(
    conn: &mut PgConnection,
    actor: &Actor,
    tenant: &str,
    key: &NewKey,
) -> Result<ApiKey, StoreError> {
    let tenant_id = lock_id(conn, tenant).await?;
    let row = sqlx::query_as!(
        KeyRow,
        r#"
        INSERT INTO api_keys (tenant_id, name, prefix, sha256, created_ms, managed_by) VALUES ($1, $2, $3, $4, $5, $6)
        ON CONFLICT (sha256) DO NOTHING
        RETURNING id, name, prefix, created_ms, revoked_ms,
            requests_per_minute, tokens_per_minute, max_concurrency, monthly_token_budget
        "#,
        tenant_id,
        key.name,
        key.prefix,
        &key.digest.0[..],
        now_ms(),
        Owner::of(actor).as_str(),
    )
    .fetch_optional(&mut *conn)
    .await
    .map_err(db)?
    // Only possible for a re-imported bootstrap key: generated keys do not collide.
    .ok_or_else(|| StoreError::Conflict("an API key with the same secret already exists".into()))?;
    let created = row.into_key(tenant)?;
    let detail = json!({ "name": created.name, "prefix": created.prefix });
    record(conn, actor, "key.create", &target(tenant, created.id), detail).await?;
    Ok(created)
}

/// Newest first, revoked keys included.
pub(crate) async fn list_for(conn: &mut PgConnection, tenant_id: i64, tenant: &str) -> Result<Vec<ApiKey>, StoreError> {
    let rows = sqlx::query_as!(
        KeyRow,
        r#"
        SELECT id, name, prefix, created_ms, revoked_ms,
            requests_per_minute, tokens_per_minute, max_concurrency, monthly_token_budget
        FROM api_keys WHERE tenant_id = $1 ORDER BY id DESC
        "#,
        tenant_id
    )
    .fetch_all(conn)
    .await
    .map_err(db)?;
    rows.into_iter().map(|r| r.into_key(tenant)).collect()
}

pub(crate) async fn list(conn: &mut PgConnection, tenant: &str) -> Result<Vec<ApiKey>, StoreError> {
    let tenant_id = sqlx::query_scalar!("SELECT id FROM tenants WHERE name = $1", tenant)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db)?
        .ok_or_else(|| StoreError::not_found("tenant", tenant))?;
    list_for(conn, tenant_id, tenant).await
}

/// Revoking twice returns the key as it was, without a second audit row or version bump.
pub(crate) async fn revoke(
    conn: &mut PgConnection,
    actor: &Actor,
    tenant: &str,
    key_id: i64,
) -> Result<ApiKey, StoreError> {
    let tenant_id = lock_id(conn, tenant).await?;
    let revoked = sqlx::query_as!(
        KeyRow,
        r#"
        UPDATE api_keys SET revoked_ms = $3
        WHERE id = $1 AND tenant_id = $2 AND revoked_ms IS NULL
        RETURNING id, name, prefix, created_ms, revoked_ms,
            requests_per_minute, tokens_per_minute, max_concurrency, monthly_token_budget
        "#,
        key_id,
        tenant_id,
        now_ms(),
    )
    .fetch_optional(&mut *conn)
    .await
    .map_err(db)?;
    if let Some(row) = revoked {
        let key = row.into_key(tenant)?;
        record(conn, actor, "key.revoke", &target(tenant, key_id), json!({ "prefix": key.prefix })).await?;
        return Ok(key);
    }
    sqlx::query_as!(
        KeyRow,
        r#"
        SELECT id, name, prefix, created_ms, revoked_ms,
            requests_per_minute, tokens_per_minute, max_concurrency, monthly_token_budget
        FROM api_keys WHERE id = $1 AND tenant_id = $2
        "#,
        key_id,
        tenant_id
    )
    .fetch_optional(conn)
    .await
    .map_err(db)?
    .ok_or_else(|| StoreError::not_found("key", target(tenant, key_id)))?
    .into_key(tenant)
}

pub(crate) async fn set_limits(
    conn: &mut PgConnection,
    actor: &Actor,
    tenant: &str,
    key_id: i64,
    limits: &ScopeLimits,
) -> Result<ApiKey, StoreError> {
    let tenant_id = lock_id(conn, tenant).await?;
    let [rpm, tpm, concurrency, budget] = limits.to_columns()?;
    let key = sqlx::query_as!(
        KeyRow,
        r#"
        UPDATE api_keys
        SET requests_per_minute = $3, tokens_per_minute = $4, max_concurrency = $5, monthly_token_budget = $6
        WHERE id = $1 AND tenant_id = $2
        RETURNING id, name, prefix, created_ms, revoked_ms,
            requests_per_minute, tokens_per_minute, max_concurrency, monthly_token_budget
        "#,
        key_id,
        tenant_id,
        rpm,
        tpm,
        concurrency,
        budget,
    )
    .fetch_optional(&mut *conn)
    .await
    .map_err(db)?
    .ok_or_else(|| StoreError::not_found("key", target(tenant, key_id)))?
    .into_key(tenant)?;
    let detail = serde_json::to_value(key.limits).map_err(|e| StoreError::Database(e.to_string()))?;
    record(conn, actor, "key_limits.set", &target(tenant, key_id), detail).await?;
    Ok(key)
}
