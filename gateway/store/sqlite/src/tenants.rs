//! Tenants with their limits and SLOs.

use serde_json::json;
use sluice_store_model::{Actor, Limits, NewTenant, Owner, Slo, StoreError, Tenant, TenantDetail, TenantPatch};
use sqlx::{SqliteConnection, SqlitePool};

use crate::codec::{self, now_ms, ts};
use crate::error::{self, db, unique_as};
use crate::keys;
use crate::write::{self, Audit};

struct TenantRow {
    id: i64,
    name: String,
    status: String,
    priority: String,
    created_ms: i64,
    updated_ms: i64,
}

impl TryFrom<TenantRow> for Tenant {
    type Error = StoreError;

    fn try_from(row: TenantRow) -> Result<Self, StoreError> {
        Ok(Tenant {
            id: row.id,
            name: row.name,
            status: codec::status(&row.status)?,
            priority: codec::priority(&row.priority)?,
            created_at: ts(row.created_ms),
            updated_at: ts(row.updated_ms),
        })
    }
}

pub(crate) async fn id_of(conn: &mut SqliteConnection, name: &str) -> Result<i64, StoreError> {
    sqlx::query_scalar!("SELECT id FROM tenants WHERE name = ?", name)
        .fetch_optional(conn)
        .await
        .map_err(db)?
        .ok_or_else(|| StoreError::not_found("tenant", name))
}

async fn read(conn: &mut SqliteConnection, name: &str) -> Result<Tenant, StoreError> {
    sqlx::query_as!(
        TenantRow,
        "SELECT id, name, status, priority, created_ms, updated_ms FROM tenants WHERE name = ?",
        name
    )
    .fetch_optional(conn)
    .await
    .map_err(db)?
    .ok_or_else(|| StoreError::not_found("tenant", name))?
    .try_into()
}

pub(crate) async fn list_in(conn: &mut SqliteConnection) -> Result<Vec<Tenant>, StoreError> {
    sqlx::query_as!(TenantRow, "SELECT id, name, status, priority, created_ms, updated_ms FROM tenants ORDER BY name")
        .fetch_all(conn)
        .await
        .map_err(db)?
        .into_iter()
        .map(Tenant::try_from)
        .collect()
}

pub(crate) async fn create(pool: &SqlitePool, actor: &Actor, new: &NewTenant) -> Result<Tenant, StoreError> {
    let mut tx = write::begin(pool).await?;
    let now = now_ms();
    let (status, priority) = (codec::status_str(new.status), codec::priority_str(new.priority));
    let owner = Owner::of(actor).as_str();
    sqlx::query!(
        "INSERT INTO tenants (name, status, priority, created_ms, updated_ms, managed_by) VALUES (?, ?, ?, ?, ?, ?)",
        new.name,
        status,
        priority,
        now,
        now,
        owner,
    )
    .execute(&mut *tx)
    .await
    .map_err(|e| unique_as(e, || format!("tenant {:?} already exists", new.name)))?;
    let tenant = read(&mut tx, &new.name).await?;
    let detail = json!({ "status": status, "priority": priority });
    write::commit(tx, Audit { actor, action: "tenant.create", target: new.name.clone(), detail }).await?;
    Ok(tenant)
}

pub(crate) async fn list(pool: &SqlitePool) -> Result<Vec<Tenant>, StoreError> {
    let mut conn = pool.acquire().await.map_err(db)?;
    list_in(&mut conn).await
}

pub(crate) async fn get(pool: &SqlitePool, name: &str) -> Result<TenantDetail, StoreError> {
    // One read transaction, so the parts agree with each other.
    let mut tx = pool.begin().await.map_err(db)?;
    let tenant = read(&mut tx, name).await?;
    let limits = limits_of(&mut tx, tenant.id).await?;
    let model_limits = crate::model_limits::list_in(&mut tx, tenant.id).await?;
    let slos = slos_of(&mut tx, tenant.id).await?;
    let keys = keys::list_in(&mut tx, tenant.id).await?;
    tx.commit().await.map_err(db)?;
    Ok(TenantDetail { tenant, limits, model_limits, slos, keys })
}

pub(crate) async fn update(
    pool: &SqlitePool,
    actor: &Actor,
    name: &str,
    patch: &TenantPatch,
) -> Result<Tenant, StoreError> {
    let mut tx = write::begin(pool).await?;
    let current = read(&mut tx, name).await?;
    let status = codec::status_str(patch.status.unwrap_or(current.status));
    let priority = codec::priority_str(patch.priority.unwrap_or(current.priority));
    let now = now_ms();
    sqlx::query!(
        "UPDATE tenants SET status = ?, priority = ?, updated_ms = ? WHERE id = ?",
        status,
        priority,
        now,
        current.id,
    )
    .execute(&mut *tx)
    .await
    .map_err(db)?;
    let tenant = read(&mut tx, name).await?;
    let mut detail = serde_json::Map::new();
    if let Some(s) = patch.status {
        detail.insert("status".into(), codec::status_str(s).into());
    }
    if let Some(p) = patch.priority {
        detail.insert("priority".into(), codec::priority_str(p).into());
    }
    let audit = Audit { actor, action: "tenant.update", target: name.to_owned(), detail: detail.into() };
    write::commit(tx, audit).await?;
    Ok(tenant)
}

pub(crate) async fn delete(pool: &SqlitePool, actor: &Actor, name: &str) -> Result<(), StoreError> {
    let mut tx = write::begin(pool).await?;
    let id = id_of(&mut tx, name).await?;
    let owner =
        sqlx::query_scalar!("SELECT managed_by FROM tenants WHERE id = ?", id).fetch_one(&mut *tx).await.map_err(db)?;
    Owner::refuse_delete(&owner, actor, &format!("tenant {name:?}"))?;
    // Keys, limits (per model too) and SLOs go with the tenant by ON DELETE CASCADE; bindings name their
    // tenant rather than reference it, so they are removed here.
    sqlx::query!("DELETE FROM plugin_bindings WHERE scope_kind = 'tenant' AND scope_name = ?", name)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    sqlx::query!("DELETE FROM tenants WHERE id = ?", id).execute(&mut *tx).await.map_err(db)?;
    write::commit(tx, Audit { actor, action: "tenant.delete", target: name.to_owned(), detail: json!({}) }).await
}

struct LimitsRow {
    requests_per_minute: Option<i64>,
    tokens_per_minute: Option<i64>,
    max_concurrency: Option<i64>,
    monthly_token_budget: Option<i64>,
    allowed_models: Option<String>,
}

impl TryFrom<LimitsRow> for Limits {
    type Error = StoreError;

    fn try_from(row: LimitsRow) -> Result<Self, StoreError> {
        let allowed_models = row
            .allowed_models
            .map(|text| serde_json::from_str(&text).map_err(|e| error::json("allowed_models", e)))
            .transpose()?;
        Ok(Limits {
            requests_per_minute: codec::to_u64("requests_per_minute", row.requests_per_minute)?,
            tokens_per_minute: codec::to_u64("tokens_per_minute", row.tokens_per_minute)?,
            max_concurrency: codec::to_u64("max_concurrency", row.max_concurrency)?,
            monthly_token_budget: codec::to_u64("monthly_token_budget", row.monthly_token_budget)?,
            allowed_models,
        })
    }
}

/// All tenants' limits by tenant id, for the snapshot.
pub(crate) async fn all_limits(conn: &mut SqliteConnection) -> Result<Vec<(i64, Limits)>, StoreError> {
    let rows = sqlx::query!(
        "SELECT tenant_id, requests_per_minute, tokens_per_minute, max_concurrency, monthly_token_budget,
                allowed_models
         FROM tenant_limits"
    )
    .fetch_all(conn)
    .await
    .map_err(db)?;
    rows.into_iter()
        .map(|r| {
            let row = LimitsRow {
                requests_per_minute: r.requests_per_minute,
                tokens_per_minute: r.tokens_per_minute,
                max_concurrency: r.max_concurrency,
                monthly_token_budget: r.monthly_token_budget,
                allowed_models: r.allowed_models,
            };
            Ok((r.tenant_id, Limits::try_from(row)?))
        })
        .collect()
}

async fn limits_of(conn: &mut SqliteConnection, tenant_id: i64) -> Result<Limits, StoreError> {
    let row = sqlx::query_as!(
        LimitsRow,
        "SELECT requests_per_minute, tokens_per_minute, max_concurrency, monthly_token_budget, allowed_models
         FROM tenant_limits WHERE tenant_id = ?",
        tenant_id
    )
    .fetch_optional(conn)
    .await
    .map_err(db)?;
    row.map_or_else(|| Ok(Limits::default()), Limits::try_from)
}

pub(crate) async fn set_limits(
    pool: &SqlitePool,
    actor: &Actor,
    tenant: &str,
    limits: &Limits,
) -> Result<Limits, StoreError> {
    let rpm = codec::to_i64("requests_per_minute", limits.requests_per_minute)?;
    let tpm = codec::to_i64("tokens_per_minute", limits.tokens_per_minute)?;
    let concurrency = codec::to_i64("max_concurrency", limits.max_concurrency)?;
    let budget = codec::to_i64("monthly_token_budget", limits.monthly_token_budget)?;
    let models = limits.allowed_models.as_ref().map(|m| serde_json::Value::from(m.clone()).to_string());
    let mut tx = write::begin(pool).await?;
    let id = id_of(&mut tx, tenant).await?;
    sqlx::query!(
        "INSERT INTO tenant_limits
             (tenant_id, requests_per_minute, tokens_per_minute, max_concurrency, monthly_token_budget, allowed_models)
         VALUES (?, ?, ?, ?, ?, ?)
         ON CONFLICT (tenant_id) DO UPDATE SET
             requests_per_minute = excluded.requests_per_minute,
             tokens_per_minute = excluded.tokens_per_minute,
             max_concurrency = excluded.max_concurrency,
             monthly_token_budget = excluded.monthly_token_budget,
             allowed_models = excluded.allowed_models",
        id,
        rpm,
        tpm,
        concurrency,
        budget,
        models,
    )
    .execute(&mut *tx)
    .await
    .map_err(db)?;
    let stored = limits_of(&mut tx, id).await?;
    let detail = serde_json::to_value(&stored).map_err(|e| error::json("limits", e))?;
    write::commit(tx, Audit { actor, action: "limits.set", target: tenant.to_owned(), detail }).await?;
    Ok(stored)
}

struct SloRow {
    model: String,
    ttft_p95_ms: Option<i64>,
    tpot_p95_ms: Option<i64>,
    target_attainment: f64,
}

impl TryFrom<SloRow> for Slo {
    type Error = StoreError;

    fn try_from(row: SloRow) -> Result<Self, StoreError> {
        Ok(Slo {
            model: row.model,
            ttft_p95_ms: row.ttft_p95_ms.map(|v| codec::to_u32("ttft_p95_ms", v)).transpose()?,
            tpot_p95_ms: row.tpot_p95_ms.map(|v| codec::to_u32("tpot_p95_ms", v)).transpose()?,
            target_attainment: row.target_attainment,
        })
    }
}

/// All tenants' SLOs by tenant id, ordered by model, for the snapshot.
pub(crate) async fn all_slos(conn: &mut SqliteConnection) -> Result<Vec<(i64, Slo)>, StoreError> {
    let rows = sqlx::query!(
        "SELECT tenant_id, model, ttft_p95_ms, tpot_p95_ms, target_attainment FROM slos ORDER BY tenant_id, model"
    )
    .fetch_all(conn)
    .await
    .map_err(db)?;
    rows.into_iter()
        .map(|r| {
            let row = SloRow {
                model: r.model,
                ttft_p95_ms: r.ttft_p95_ms,
                tpot_p95_ms: r.tpot_p95_ms,
                target_attainment: r.target_attainment,
            };
            Ok((r.tenant_id, Slo::try_from(row)?))
        })
        .collect()
}

async fn slos_of(conn: &mut SqliteConnection, tenant_id: i64) -> Result<Vec<Slo>, StoreError> {
    sqlx::query_as!(
        SloRow,
        "SELECT model, ttft_p95_ms, tpot_p95_ms, target_attainment FROM slos WHERE tenant_id = ? ORDER BY model",
        tenant_id
    )
    .fetch_all(conn)
    .await
    .map_err(db)?
    .into_iter()
    .map(Slo::try_from)
    .collect()
}

pub(crate) async fn set_slos(
    pool: &SqlitePool,
    actor: &Actor,
    tenant: &str,
    slos: &[Slo],
) -> Result<Vec<Slo>, StoreError> {
    let mut tx = write::begin(pool).await?;
    let id = id_of(&mut tx, tenant).await?;
    sqlx::query!("DELETE FROM slos WHERE tenant_id = ?", id).execute(&mut *tx).await.map_err(db)?;
    for slo in slos {
        let ttft = slo.ttft_p95_ms.map(i64::from);
        let tpot = slo.tpot_p95_ms.map(i64::from);
        sqlx::query!(
            "INSERT INTO slos (tenant_id, model, ttft_p95_ms, tpot_p95_ms, target_attainment) VALUES (?, ?, ?, ?, ?)",
            id,
            slo.model,
            ttft,
            tpot,
            slo.target_attainment,
        )
        .execute(&mut *tx)
        .await
        .map_err(|e| unique_as(e, || format!("model {:?} appears more than once", slo.model)))?;
    }
    let stored = slos_of(&mut tx, id).await?;
    let detail = json!({ "slos": serde_json::to_value(&stored).map_err(|e| error::json("slos", e))? });
    write::commit(tx, Audit { actor, action: "slos.set", target: tenant.to_owned(), detail }).await?;
    Ok(stored)
}
