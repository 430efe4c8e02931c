//! API keys: a display prefix and the SHA-256 of the secret, never the secret.

use serde_json::json;
use sluice_store_model::keys::KeyDigest;
use sluice_store_model::{Actor, ApiKey, NewKey, Owner, ScopeLimits, SnapshotKey, StoreError};
use sqlx::{SqliteConnection, SqlitePool};

use crate::codec::{self, now_ms, ts};
use crate::error::{corrupt, db, unique_as};
use crate::tenants;
use crate::write::{self, Audit};

struct KeyRow {
    id: i64,
    tenant: String,
    name: Option<String>,
    prefix: String,
    created_ms: i64,
    revoked_ms: Option<i64>,
    requests_per_minute: Option<i64>,
    tokens_per_minute: Option<i64>,
    max_concurrency: Option<i64>,
    monthly_token_budget: Option<i64>,
}

impl TryFrom<KeyRow> for ApiKey {
    type Error = StoreError;

    fn try_from(row: KeyRow) -> Result<Self, StoreError> {
        Ok(ApiKey {
            id: row.id,
            tenant: row.tenant,
            name: row.name,
            prefix: row.prefix,
            created_at: ts(row.created_ms),
            revoked_at: row.revoked_ms.map(ts),
            limits: codec::scope_limits_of!(row)?,
        })
    }
}

/// Revoked keys included, newest first.
pub(crate) async fn list_in(conn: &mut SqliteConnection, tenant_id: i64) -> Result<Vec<ApiKey>, StoreError> {
    let rows = sqlx::query_as!(
        KeyRow,
        "SELECT k.id, t.name AS tenant, k.name, k.prefix, k.created_ms, k.revoked_ms,
                k.requests_per_minute, k.tokens_per_minute, k.max_concurrency, k.monthly_token_budget
         FROM api_keys k JOIN tenants t ON t.id = k.tenant_id
         WHERE k.tenant_id = ?
         ORDER BY k.id DESC",
        tenant_id
    )
    .fetch_all(conn)
    .await
    .map_err(db)?;
    rows.into_iter().map(ApiKey::try_from).collect()
}

async fn read(conn: &mut SqliteConnection, tenant_id: i64, key_id: i64) -> Result<ApiKey, StoreError> {
    let row = sqlx::query_as!(
        KeyRow,
        "SELECT k.id, t.name AS tenant, k.name, k.prefix, k.created_ms, k.revoked_ms,
                k.requests_per_minute, k.tokens_per_minute, k.max_concurrency, k.monthly_token_budget
         FROM api_keys k JOIN tenants t ON t.id = k.tenant_id
         WHERE k.id = ? AND k.tenant_id = ?",
        key_id,
        tenant_id
    )
    .fetch_optional(conn)
    .await
    .map_err(db)?;
    row.ok_or_else(|| StoreError::not_found("key", key_id.to_string()))?.try_into()
}

pub(crate) async fn create(pool: &SqlitePool, actor: &Actor, tenant: &str, key: &NewKey) -> Result<ApiKey, StoreError> {
    let mut tx = write::begin(pool).await?;
    let tenant_id = tenants::id_of(&mut tx, tenant).await?;
    let now = now_ms();
    let digest = key.digest.0.as_slice();
    let owner = Owner::of(actor).as_str();
    let id = sqlx::query!(
        "INSERT INTO api_keys (tenant_id, name, prefix, sha256, created_ms, managed_by) VALUES (?, ?, ?, ?, ?, ?)",
        tenant_id,
        key.name,
        key.prefix,
        digest,
        now,
        owner,
    )
    .execute(&mut *tx)
    .await
    .map_err(|e| unique_as(e, || format!("a key with this secret already exists (prefix {:?})", key.prefix)))?
    .last_insert_rowid();
    let created = read(&mut tx, tenant_id, id).await?;
    let audit = Audit {
        actor,
        action: "key.create",
        target: format!("{tenant}/key/{id}"),
        detail: json!({ "name": key.name, "prefix": key.prefix }),
    };
    write::commit(tx, audit).await?;
    Ok(created)
}

pub(crate) async fn list(pool: &SqlitePool, tenant: &str) -> Result<Vec<ApiKey>, StoreError> {
    let mut tx = pool.begin().await.map_err(db)?;
    let tenant_id = tenants::id_of(&mut tx, tenant).await?;
    let keys = list_in(&mut tx, tenant_id).await?;
    tx.commit().await.map_err(db)?;
    Ok(keys)
}

pub(crate) async fn revoke(pool: &SqlitePool, actor: &Actor, tenant: &str, key_id: i64) -> Result<ApiKey, StoreError> {
    let mut tx = write::begin(pool).await?;
    let tenant_id = tenants::id_of(&mut tx, tenant).await?;
    let current = read(&mut tx, tenant_id, key_id).await?;
    if current.revoked_at.is_some() {
        // Nothing changes, so there is nothing to audit and no reason for replicas to reload.
        tx.rollback().await.map_err(db)?;
        return Ok(current);
    }
    let now = now_ms();
    sqlx::query!("UPDATE api_keys SET revoked_ms = ? WHERE id = ?", now, key_id).execute(&mut *tx).await.map_err(db)?;
    let revoked = read(&mut tx, tenant_id, key_id).await?;
    let audit = Audit {
        actor,
        action: "key.revoke",
        target: format!("{tenant}/key/{key_id}"),
        detail: json!({ "prefix": revoked.prefix }),
    };
    write::commit(tx, audit).await?;
    Ok(revoked)
}

pub(crate) async fn set_limits(
    pool: &SqlitePool,
    actor: &Actor,
    tenant: &str,
    key_id: i64,
    limits: &ScopeLimits,
) -> Result<ApiKey, StoreError> {
    let [rpm, tpm, concurrency, budget] = limits.to_columns()?;
    let mut tx = write::begin(pool).await?;
    let tenant_id = tenants::id_of(&mut tx, tenant).await?;
    let updated = sqlx::query!(
        "UPDATE api_keys
         SET requests_per_minute = ?, tokens_per_minute = ?, max_concurrency = ?, monthly_token_budget = ?
         WHERE id = ? AND tenant_id = ?",
        rpm,
        tpm,
        concurrency,
        budget,
        key_id,
        tenant_id,
    )
    .execute(&mut *tx)
    .await
    .map_err(db)?
    .rows_affected();
    if updated == 0 {
        return Err(StoreError::not_found("key", format!("{tenant}/key/{key_id}")));
    }
    let key = read(&mut tx, tenant_id, key_id).await?;
    let detail = serde_json::to_value(key.limits).map_err(|e| crate::error::json("limits", e))?;
    let audit = Audit { actor, action: "key_limits.set", target: format!("{tenant}/key/{key_id}"), detail };
    write::commit(tx, audit).await?;
    Ok(key)
}

/// Keys that are not revoked, by tenant id, for the snapshot.
pub(crate) async fn all_active(conn: &mut SqliteConnection) -> Result<Vec<(i64, SnapshotKey)>, StoreError> {
    let rows = sqlx::query!(
        "SELECT id, tenant_id, prefix, sha256,
                requests_per_minute, tokens_per_minute, max_concurrency, monthly_token_budget
         FROM api_keys WHERE revoked_ms IS NULL ORDER BY id"
    )
    .fetch_all(conn)
    .await
    .map_err(db)?;
    rows.into_iter()
        .map(|r| {
            let hash: [u8; 32] = r.sha256.as_slice().try_into().map_err(|_| corrupt("key digest", r.id))?;
            let limits = codec::scope_limits_of!(r)?;
            Ok((r.tenant_id, SnapshotKey { id: r.id, prefix: r.prefix, hash: KeyDigest(hash), limits }))
        })
        .collect()
}
