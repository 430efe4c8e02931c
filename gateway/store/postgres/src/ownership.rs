//! What the config file owns (the `managed_by` columns), and handing things to it.

use serde_json::json;
use sluice_store_model::keys::KeyDigest;
use sluice_store_model::{Actor, Adopt, ConfigOwned, OwnedKey, StoreError};
use sqlx::PgConnection;

use crate::audit::record;
use crate::error::db;

/// Read inside the caller's (repeatable read) transaction so the four lists agree.
pub(crate) async fn config_owned(conn: &mut PgConnection) -> Result<ConfigOwned, StoreError> {
    let tenants =
        sqlx::query_scalar!(r#"SELECT name FROM tenants WHERE managed_by = 'config' ORDER BY name COLLATE "C""#)
            .fetch_all(&mut *conn)
            .await
            .map_err(db)?;
    let rows = sqlx::query!(
        r#"
        SELECT k.id, t.name AS tenant, k.prefix, k.sha256, k.revoked_ms IS NOT NULL AS "revoked!"
        FROM api_keys k JOIN tenants t ON t.id = k.tenant_id
        WHERE k.managed_by = 'config' ORDER BY k.id
        "#
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(db)?;
    let mut keys = Vec::with_capacity(rows.len());
    for r in rows {
        let digest = <[u8; 32]>::try_from(r.sha256.as_slice())
            .map_err(|_| StoreError::Database(format!("key {} has a digest that is not 32 bytes", r.id)))?;
        keys.push(OwnedKey {
            tenant: r.tenant,
            id: r.id,
            prefix: r.prefix,
            digest: KeyDigest(digest),
            revoked: r.revoked,
        });
    }
    let pools = sqlx::query_scalar!(r#"SELECT name FROM pools WHERE managed_by = 'config' ORDER BY name COLLATE "C""#)
        .fetch_all(&mut *conn)
        .await
        .map_err(db)?;
    let endpoints = sqlx::query!(
        r#"
        SELECT p.name AS pool, e.name FROM endpoints e JOIN pools p ON p.id = e.pool_id
        WHERE e.managed_by = 'config' ORDER BY e.id
        "#
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(db)?
    .into_iter()
    .map(|r| (r.pool, r.name))
    .collect();
    Ok(ConfigOwned { tenants, keys, pools, endpoints })
}

pub(crate) async fn adopt(conn: &mut PgConnection, actor: &Actor, item: &Adopt) -> Result<bool, StoreError> {
    // The previous owner, read under a row lock; None: no such row.
    let before = match item {
        Adopt::Tenant(name) => {
            sqlx::query_scalar!("SELECT managed_by FROM tenants WHERE name = $1 FOR UPDATE", name)
                .fetch_optional(&mut *conn)
                .await
        }
        Adopt::Key { tenant, id } => {
            sqlx::query_scalar!(
                "SELECT k.managed_by FROM api_keys k JOIN tenants t ON t.id = k.tenant_id
                 WHERE k.id = $1 AND t.name = $2 FOR UPDATE OF k",
                id,
                tenant
            )
            .fetch_optional(&mut *conn)
            .await
        }
        Adopt::Pool(name) => {
            sqlx::query_scalar!("SELECT managed_by FROM pools WHERE name = $1 FOR UPDATE", name)
                .fetch_optional(&mut *conn)
                .await
        }
        Adopt::Endpoint { pool, name } => {
            sqlx::query_scalar!(
                "SELECT e.managed_by FROM endpoints e JOIN pools p ON p.id = e.pool_id
                 WHERE p.name = $1 AND e.name = $2 FOR UPDATE OF e",
                pool,
                name
            )
            .fetch_optional(&mut *conn)
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
        return Ok(false);
    }
    let updated = match item {
        Adopt::Tenant(name) => {
            sqlx::query!("UPDATE tenants SET managed_by = 'config' WHERE name = $1", name).execute(&mut *conn).await
        }
        Adopt::Key { id, .. } => {
            sqlx::query!("UPDATE api_keys SET managed_by = 'config' WHERE id = $1", id).execute(&mut *conn).await
        }
        Adopt::Pool(name) => {
            sqlx::query!("UPDATE pools SET managed_by = 'config' WHERE name = $1", name).execute(&mut *conn).await
        }
        Adopt::Endpoint { pool, name } => {
            sqlx::query!(
                "UPDATE endpoints SET managed_by = 'config'
             WHERE name = $2 AND pool_id = (SELECT id FROM pools WHERE name = $1)",
                pool,
                name
            )
            .execute(&mut *conn)
            .await
        }
    };
    updated.map_err(db)?;
    let action = format!("{what}.adopt");
    record(conn, actor, &action, &item.target(), json!({ "managed_by": "config", "before": before })).await?;
    Ok(true)
}
