//! Everything the gateway serves from, read in one REPEATABLE READ transaction so that the
//! version and the rows agree (a mutation commits entirely before or after it).

use std::collections::HashMap;

use sluice_store_model::keys::KeyDigest;
use sluice_store_model::{Limits, ModelLimits, Slo, SnapshotKey, SnapshotTenant, StoreError, StoreSnapshot};
use sqlx::PgConnection;

use crate::codec;
use crate::error::db;

pub(crate) async fn change_version(conn: &mut PgConnection) -> Result<i64, StoreError> {
    sqlx::query_scalar!("SELECT version FROM change_version WHERE id").fetch_one(conn).await.map_err(db)
}

/// Must run inside a REPEATABLE READ transaction (`PostgresStore::snapshot` opens one).
pub(crate) async fn read(conn: &mut PgConnection) -> Result<StoreSnapshot, StoreError> {
    let version = change_version(conn).await?;
    let tenants = crate::tenants::list(conn).await?;

    let mut limits: HashMap<i64, Limits> = HashMap::new();
    let rows = sqlx::query!(
        r#"
        SELECT tenant_id, requests_per_minute, tokens_per_minute, max_concurrency, monthly_token_budget, allowed_models
        FROM tenant_limits
        "#
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(db)?;
    for r in rows {
        let row_limits = codec::limits(
            r.requests_per_minute,
            r.tokens_per_minute,
            r.max_concurrency,
            r.monthly_token_budget,
            r.allowed_models,
        )?;
        limits.insert(r.tenant_id, row_limits);
    }

    let mut slos: HashMap<i64, Vec<Slo>> = HashMap::new();
    let rows = sqlx::query!(
        r#"
        SELECT tenant_id, model, ttft_p95_ms, tpot_p95_ms, target_attainment
        FROM slos ORDER BY tenant_id, model COLLATE "C"
        "#
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(db)?;
    for r in rows {
        slos.entry(r.tenant_id).or_default().push(Slo {
            model: r.model,
            ttft_p95_ms: codec::slo_ms("ttft_p95_ms", r.ttft_p95_ms)?,
            tpot_p95_ms: codec::slo_ms("tpot_p95_ms", r.tpot_p95_ms)?,
            target_attainment: r.target_attainment,
        });
    }

    let mut keys: HashMap<i64, Vec<SnapshotKey>> = HashMap::new();
    let rows = sqlx::query!(
        r#"
        SELECT id, tenant_id, prefix, sha256,
            requests_per_minute, tokens_per_minute, max_concurrency, monthly_token_budget
        FROM api_keys WHERE revoked_ms IS NULL ORDER BY id
        "#
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(db)?;
    for r in rows {
        let hash = <[u8; 32]>::try_from(r.sha256.as_slice())
            .map_err(|_| StoreError::Database(format!("key {} has a digest that is not 32 bytes", r.id)))?;
        let limits = codec::scope_limits_of!(r)?;
        keys.entry(r.tenant_id).or_default().push(SnapshotKey {
            id: r.id,
            prefix: r.prefix,
            hash: KeyDigest(hash),
            limits,
        });
    }

    let mut model_limits: HashMap<i64, Vec<ModelLimits>> = HashMap::new();
    for (tenant_id, entry) in crate::model_limits::all(conn).await? {
        model_limits.entry(tenant_id).or_default().push(entry);
    }

    let tenants = tenants
        .into_iter()
        .map(|tenant| SnapshotTenant {
            limits: limits.remove(&tenant.id).unwrap_or_default(),
            model_limits: model_limits.remove(&tenant.id).unwrap_or_default(),
            slos: slos.remove(&tenant.id).unwrap_or_default(),
            keys: keys.remove(&tenant.id).unwrap_or_default(),
            tenant,
        })
        .collect();
    Ok(StoreSnapshot {
        version,
        tenants,
        pools: crate::pools::load(conn, None).await?,
        plugins: crate::plugins::active(conn).await?,
        bindings: crate::plugins::bindings(conn).await?,
    })
}
