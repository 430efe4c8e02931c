//! What the config file owns (the `managed_by` columns), and handing things to it.

use serde_json::json;
use sluice_store_model::keys::KeyDigest;
use sluice_store_model::{Actor, Adopt, ConfigOwned, OwnedKey, StoreError};
use sqlx::SqlitePool;

use crate::error::{corrupt, db};
use crate::write::{self, Audit};

pub(crate) async fn config_owned(pool: &SqlitePool) -> Result<ConfigOwned, StoreError> {
    // One read transaction, so the four lists agree.
    let mut tx = pool.begin().await.map_err(db)?;
    let tenants = sqlx::query_scalar!("SELECT name FROM tenants WHERE managed_by = 'config' ORDER BY name")
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?;
    let rows = sqlx::query!(
        r#"SELECT k.id, t.name AS tenant, k.prefix, k.sha256, k.revoked_ms IS NOT NULL AS "revoked: bool"
           FROM api_keys k JOIN tenants t ON t.id = k.tenant_id
           WHERE k.managed_by = 'config' ORDER BY k.id"#
    )
    .fetch_all(&mut *tx)
    .await
    .map_err(db)?;
    let mut keys = Vec::with_capacity(rows.len());
    for r in rows {
        let digest: [u8; 32] = r.sha256.as_slice().try_into().map_err(|_| corrupt("key digest", r.id))?;
        keys.push(OwnedKey {
            tenant: r.tenant,
            id: r.id,
            prefix: r.prefix,
            digest: KeyDigest(digest),
            revoked: r.revoked,
        });
    }
    let pools = sqlx::query_scalar!("SELECT name FROM pools WHERE managed_by = 'config' ORDER BY name")
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?;
    let endpoints = sqlx::query!(
        "SELECT p.name AS pool, e.name FROM endpoints e JOIN pools p ON p.id = e.pool_id
         WHERE e.managed_by = 'config' ORDER BY e.id"
    )
    .fetch_all(&mut *tx)
    .await
    .map_err(db)?
    .into_iter()
    .map(|r| (r.pool, r.name))
    .collect();
    tx.commit().await.map_err(db)?;
    Ok(ConfigOwned { tenants, keys, pools, endpoints })
}

pub(crate) async fn adopt(pool: &SqlitePool, actor: &Actor, item: &Adopt) -> Result<bool, StoreError> {
    let mut tx = write::begin(pool).await?;
    let before = match item {
        Adopt::Tenant(name) => {
            sqlx::query_scalar!("SELECT managed_by FROM tenants WHERE name = ?", name).fetch_optional(&mut *tx).await
        }
        Adopt::Key { tenant, id } => {
            sqlx::query_scalar!(
                "SELECT k.managed_by FROM api_keys k JOIN tenants t ON t.id = k.tenant_id
                 WHERE k.id = ? AND t.name = ?",
                id,
                tenant
            )
            .fetch_optional(&mut *tx)
            .await
        }
        Adopt::Pool(name) => {
            sqlx::query_scalar!("SELECT managed_by FROM pools WHERE name = ?", name).fetch_optional(&mut *tx).await
        }
        Adopt::Endpoint { pool, name } => {
            sqlx::query_scalar!(
                "SELECT e.managed_by FROM endpoints e JOIN pools p ON p.id = e.pool_id
                 WHERE p.name = ? AND e.name = ?",
                pool,
                name
            )
            .fetch_optional(&mut *tx)
            .await
        }
    }
    .map_err(db)?;
    let what = match item {
        Adopt::Tenant(_) => "tenant",
        Adopt::Key { .. } => "key",
        Adopt::Pool(_) => "pool",
        Adopt::Endpoint { .. } => "endpoint",
    };
    let before = before.ok_or_else(|| StoreError::not_found(what, item.target()))?;
    if before == "config" {
        // Nothing changes: no audit row, no version bump.
        tx.rollback().await.map_err(db)?;
        return Ok(false);
    }
    let updated = match item {
        Adopt::Tenant(name) => {
            sqlx::query!("UPDATE tenants SET managed_by = 'config' WHERE name = ?", name).execute(&mut *tx).await
        }
        Adopt::Key { id, .. } => {
            sqlx::query!("UPDATE api_keys SET managed_by = 'config' WHERE id = ?", id).execute(&mut *tx).await
        }
        Adopt::Pool(name) => {
            sqlx::query!("UPDATE pools SET managed_by = 'config' WHERE name = ?", name).execute(&mut *tx).await
        }
        Adopt::Endpoint { pool, name } => {
            sqlx::query!(
                "UPDATE endpoints SET managed_by = 'config'
                 WHERE name = ? AND pool_id = (SELECT id FROM pools WHERE name = ?)",
                name,
                pool
            )
            .execute(&mut *tx)
            .await
        }
    };
    updated.map_err(db)?;
    let audit = Audit {
        actor,
        action: match item {
            Adopt::Tenant(_) => "tenant.adopt",
            Adopt::Key { .. } => "key.adopt",
            Adopt::Pool(_) => "pool.adopt",
            Adopt::Endpoint { .. } => "endpoint.adopt",
        },
        target: item.target(),
        detail: json!({ "managed_by": "config", "before": before }),
    };
    write::commit(tx, audit).await?;
    Ok(true)
}
