//! Tenants with their limits and SLOs.

use serde_json::json;
use sluice_store_model::{Actor, Limits, NewTenant, Owner, Slo, StoreError, Tenant, TenantDetail, TenantPatch};
use sqlx::PgConnection;

use crate::audit::record;
use crate::codec::{self, now_ms, ts};
use crate::error::db;

struct TenantRow {
    id: i64,
    name: String,
    status: String,
    priority: String,
    created_ms: i64,
    updated_ms: i64,
}

impl TenantRow {
    fn into_tenant(self) -> Result<Tenant, StoreError> {
        Ok(Tenant {
            id: self.id,
            name: self.name,
            status: codec::status(&self.status)?,
            priority: codec::priority(&self.priority)?,
            created_at: ts(self.created_ms),
            updated_at: ts(self.updated_ms),
        })
    }
}

/// The tenant's id, locked against deletion until the transaction ends, so that rows a
/// mutation attaches to it cannot outlive it (`delete` waits for the lock).
pub(crate) async fn lock_id(conn: &mut PgConnection, name: &str) -> Result<i64, StoreError> {
    sqlx::query_scalar!("SELECT id FROM tenants WHERE name = $1 FOR KEY SHARE", name)
        .fetch_optional(conn)
        .await
        .map_err(db)?
        .ok_or_else(|| StoreError::not_found("tenant", name))
}

pub(crate) async fn create(conn: &mut PgConnection, actor: &Actor, new: &NewTenant) -> Result<Tenant, StoreError> {
    let row = sqlx::query_as!(
        TenantRow,
        r#"
        INSERT INTO tenants (name, status, priority, created_ms, updated_ms, managed_by)
        VALUES ($1, $2, $3, $4, $4, $5)
        ON CONFLICT (name) DO NOTHING
        RETURNING id, name, status, priority, created_ms, updated_ms
        "#,
        new.name,
        codec::status_str(new.status),
        codec::priority_str(new.priority),
        now_ms(),
        Owner::of(actor).as_str(),
    )
    .fetch_optional(&mut *conn)
    .await
    .map_err(db)?
    .ok_or_else(|| StoreError::Conflict(format!("tenant {:?} already exists", new.name)))?;
    let tenant = row.into_tenant()?;
    let detail = json!({ "status": new.status, "priority": new.priority });
    record(conn, actor, "tenant.create", &tenant.name, detail).await?;
    Ok(tenant)
}

pub(crate) async fn list(conn: &mut PgConnection) -> Result<Vec<Tenant>, StoreError> {
    sqlx::query_as!(
        TenantRow,
        r#"SELECT id, name, status, priority, created_ms, updated_ms FROM tenants ORDER BY name COLLATE "C""#
    )
    .fetch_all(conn)
    .await
    .map_err(db)?
    .into_iter()
    .map(TenantRow::into_tenant)
    .collect()
}

/// Read inside the caller's (repeatable read) transaction so the parts agree.
pub(crate) async fn detail(conn: &mut PgConnection, name: &str) -> Result<TenantDetail, StoreError> {
    let tenant = sqlx::query_as!(
        TenantRow,
        "SELECT id, name, status, priority, created_ms, updated_ms FROM tenants WHERE name = $1",
        name
    )
    .fetch_optional(&mut *conn)
    .await
    .map_err(db)?
    .ok_or_else(|| StoreError::not_found("tenant", name))?
    .into_tenant()?;
    let limits = limits_of(conn, tenant.id).await?;
    let model_limits = crate::model_limits::list_for(conn, tenant.id).await?;
    let slos = slos_of(conn, tenant.id).await?;
    let keys = crate::keys::list_for(conn, tenant.id, &tenant.name).await?;
    Ok(TenantDetail { tenant, limits, model_limits, slos, keys })
}

pub(crate) async fn update(
    conn: &mut PgConnection,
    actor: &Actor,
    name: &str,
    patch: &TenantPatch,
) -> Result<Tenant, StoreError> {
    let tenant = sqlx::query_as!(
        TenantRow,
        r#"
        UPDATE tenants
        SET status = COALESCE($2, status), priority = COALESCE($3, priority), updated_ms = GREATEST($4, created_ms)
        WHERE name = $1
        RETURNING id, name, status, priority, created_ms, updated_ms
        "#,
        name,
        patch.status.map(codec::status_str),
        patch.priority.map(codec::priority_str),
        now_ms(),
    )
    .fetch_optional(&mut *conn)
    .await
    .map_err(db)?
    .ok_or_else(|| StoreError::not_found("tenant", name))?
    .into_tenant()?;
    let detail = json!({ "status": patch.status, "priority": patch.priority });
    record(conn, actor, "tenant.update", name, detail).await?;
    Ok(tenant)
}

/// Keys, limits (the model limits too) and SLOs go by `ON DELETE CASCADE`; tenant-scoped bindings name the tenant
/// rather than reference it, so they are deleted here. Usage rows are kept on purpose.
pub(crate) async fn delete(conn: &mut PgConnection, actor: &Actor, name: &str) -> Result<(), StoreError> {
    let owner = sqlx::query_scalar!("SELECT managed_by FROM tenants WHERE name = $1 FOR UPDATE", name)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db)?
        .ok_or_else(|| StoreError::not_found("tenant", name))?;
    Owner::refuse_delete(&owner, actor, &format!("tenant {name:?}"))?;
    sqlx::query!("DELETE FROM tenants WHERE name = $1", name).execute(&mut *conn).await.map_err(db)?;
    let bindings = sqlx::query!("DELETE FROM plugin_bindings WHERE scope_kind = 'tenant' AND scope_name = $1", name)
        .execute(&mut *conn)
        .await
        .map_err(db)?
        .rows_affected();
    record(conn, actor, "tenant.delete", name, json!({ "bindings_removed": bindings })).await?;
    Ok(())
}

pub(crate) async fn limits_of(conn: &mut PgConnection, tenant_id: i64) -> Result<Limits, StoreError> {
    let row = sqlx::query!(
        r#"
        SELECT requests_per_minute, tokens_per_minute, max_concurrency, monthly_token_budget, allowed_models
        FROM tenant_limits WHERE tenant_id = $1
        "#,
        tenant_id
    )
    .fetch_optional(conn)
    .await
    .map_err(db)?;
    let Some(r) = row else { return Ok(Limits::default()) };
    codec::limits(
        r.requests_per_minute,
        r.tokens_per_minute,
        r.max_concurrency,
        r.monthly_token_budget,
        r.allowed_models,
    )
}

pub(crate) async fn set_limits(
    conn: &mut PgConnection,
    actor: &Actor,
    name: &str,
    limits: &Limits,
) -> Result<Limits, StoreError> {
    let tenant_id = lock_id(conn, name).await?;
    sqlx::query!(
        r#"
        INSERT INTO tenant_limits
            (tenant_id, requests_per_minute, tokens_per_minute, max_concurrency, monthly_token_budget, allowed_models)
        VALUES ($1, $2, $3, $4, $5, $6)
        ON CONFLICT (tenant_id) DO UPDATE SET
            requests_per_minute = EXCLUDED.requests_per_minute,
            tokens_per_minute = EXCLUDED.tokens_per_minute,
            max_concurrency = EXCLUDED.max_concurrency,
            monthly_token_budget = EXCLUDED.monthly_token_budget,
            allowed_models = EXCLUDED.allowed_models
        "#,
        tenant_id,
        codec::to_i64("requests_per_minute", limits.requests_per_minute)?,
        codec::to_i64("tokens_per_minute", limits.tokens_per_minute)?,
        codec::to_i64("max_concurrency", limits.max_concurrency)?,
        codec::to_i64("monthly_token_budget", limits.monthly_token_budget)?,
        limits.allowed_models.as_deref().map(codec::json_list),
    )
    .execute(&mut *conn)
    .await
    .map_err(db)?;
    let stored = limits_of(conn, tenant_id).await?;
    let detail = serde_json::to_value(&stored).map_err(|e| StoreError::Database(e.to_string()))?;
    record(conn, actor, "limits.set", name, detail).await?;
    Ok(stored)
}

pub(crate) async fn slos_of(conn: &mut PgConnection, tenant_id: i64) -> Result<Vec<Slo>, StoreError> {
    let rows = sqlx::query!(
        r#"
        SELECT model, ttft_p95_ms, tpot_p95_ms, target_attainment
        FROM slos WHERE tenant_id = $1 ORDER BY model COLLATE "C"
        "#,
        tenant_id
    )
    .fetch_all(conn)
    .await
    .map_err(db)?;
    rows.into_iter()
        .map(|r| {
            Ok(Slo {
                model: r.model,
                ttft_p95_ms: codec::slo_ms("ttft_p95_ms", r.ttft_p95_ms)?,
                tpot_p95_ms: codec::slo_ms("tpot_p95_ms", r.tpot_p95_ms)?,
                target_attainment: r.target_attainment,
            })
        })
        .collect()
}

pub(crate) async fn set_slos(
    conn: &mut PgConnection,
    actor: &Actor,
    name: &str,
    slos: &[Slo],
) -> Result<Vec<Slo>, StoreError> {
    let tenant_id = lock_id(conn, name).await?;
    sqlx::query!("DELETE FROM slos WHERE tenant_id = $1", tenant_id).execute(&mut *conn).await.map_err(db)?;
    let ms = |field: &'static str, v: Option<u32>| {
        v.map(|v| i32::try_from(v).map_err(|_| StoreError::invalid(field, "is too large"))).transpose()
    };
    // A handful of rows per tenant: one INSERT each is clearer than arrays of nullable columns.
    for slo in slos {
        sqlx::query!(
            r#"
            INSERT INTO slos (tenant_id, model, ttft_p95_ms, tpot_p95_ms, target_attainment)
            VALUES ($1, $2, $3, $4, $5)
            "#,
            tenant_id,
            slo.model,
            ms("ttft_p95_ms", slo.ttft_p95_ms)?,
            ms("tpot_p95_ms", slo.tpot_p95_ms)?,
            slo.target_attainment,
        )
        .execute(&mut *conn)
        .await
        .map_err(|e| {
            if crate::error::is_unique_violation(&e) {
                StoreError::invalid("model", format!("{:?} appears more than once", slo.model))
            } else {
                db(e)
            }
        })?;
    }
    let stored = slos_of(conn, tenant_id).await?;
    let models: Vec<&str> = stored.iter().map(|s| s.model.as_str()).collect();
    record(conn, actor, "slos.set", name, json!({ "models": models })).await?;
    Ok(stored)
}
