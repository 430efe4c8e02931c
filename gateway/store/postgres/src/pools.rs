//! Pools of upstream endpoints.

use serde_json::json;
use sluice_store_model::{Actor, Endpoint, NewEndpoint, NewPool, Owner, Pool, PoolApi, StoreError};
use sqlx::PgConnection;

use crate::audit::record;
use crate::codec::{self, now_ms, ts};
use crate::error::db;

fn target(pool: &str) -> String {
    format!("pool/{pool}")
}

fn endpoint_target(pool: &str, endpoint: &str) -> String {
    format!("pool/{pool}/endpoint/{endpoint}")
}

/// Pools by name with their endpoints in the order they were added; `only` narrows to one.
pub(crate) async fn load(conn: &mut PgConnection, only: Option<&str>) -> Result<Vec<Pool>, StoreError> {
    let pools = sqlx::query!(
        r#"
        SELECT id, name, models, apis, created_ms FROM pools
        WHERE $1::text IS NULL OR name = $1
        ORDER BY name COLLATE "C"
        "#,
        only
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(db)?;
    let endpoints = sqlx::query!(
        r#"
        SELECT e.id, e.pool_id, e.name, e.url, e.flavor, e.weight, e.http2, e.drained, e.created_ms
        FROM endpoints e JOIN pools p ON p.id = e.pool_id
        WHERE $1::text IS NULL OR p.name = $1
        ORDER BY e.id
        "#,
        only
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(db)?;
    let mut out = Vec::with_capacity(pools.len());
    for pool in pools {
        let mut members = Vec::new();
        for e in endpoints.iter().filter(|e| e.pool_id == pool.id) {
            members.push(Endpoint {
                id: e.id,
                pool: pool.name.clone(),
                name: e.name.clone(),
                url: e.url.clone(),
                flavor: codec::flavor(&e.flavor)?,
                weight: u32::try_from(e.weight)
                    .map_err(|_| StoreError::Database(format!("negative weight {}", e.weight)))?,
                http2: e.http2,
                drained: e.drained,
                created_at: ts(e.created_ms),
            });
        }
        out.push(Pool {
            id: pool.id,
            models: codec::string_list("models", pool.models)?,
            apis: codec::pool_apis(pool.apis)?,
            name: pool.name,
            endpoints: members,
            created_at: ts(pool.created_ms),
        });
    }
    Ok(out)
}

pub(crate) async fn get(conn: &mut PgConnection, name: &str) -> Result<Pool, StoreError> {
    load(conn, Some(name)).await?.pop().ok_or_else(|| StoreError::not_found("pool", name))
}

pub(crate) async fn create(conn: &mut PgConnection, actor: &Actor, new: &NewPool) -> Result<Pool, StoreError> {
    // NULL when the pool names no APIs: it speaks the default, whatever that is when read.
    let apis = new.apis.as_deref().map(codec::pool_apis_json);
    let row = sqlx::query!(
        r#"
        INSERT INTO pools (name, models, apis, created_ms, managed_by) VALUES ($1, $2, $3, $4, $5)
        ON CONFLICT (name) DO NOTHING
        RETURNING id, created_ms
        "#,
        new.name,
        codec::json_list(&new.models),
        apis,
        now_ms(),
        Owner::of(actor).as_str(),
    )
    .fetch_optional(&mut *conn)
    .await
    .map_err(db)?
    .ok_or_else(|| StoreError::Conflict(format!("pool {:?} already exists", new.name)))?;
    let apis = codec::pool_apis(apis)?;
    record(conn, actor, "pool.create", &target(&new.name), json!({ "models": new.models, "apis": apis })).await?;
    Ok(Pool {
        id: row.id,
        name: new.name.clone(),
        models: new.models.clone(),
        apis,
        endpoints: Vec::new(),
        created_at: ts(row.created_ms),
    })
}

/// Endpoints go with the pool (`ON DELETE CASCADE`).
pub(crate) async fn delete(conn: &mut PgConnection, actor: &Actor, name: &str) -> Result<(), StoreError> {
    let owner = sqlx::query_scalar!("SELECT managed_by FROM pools WHERE name = $1 FOR UPDATE", name)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db)?
        .ok_or_else(|| StoreError::not_found("pool", name))?;
    Owner::refuse_delete(&owner, actor, &format!("pool {name:?}"))?;
    let models = sqlx::query_scalar!("DELETE FROM pools WHERE name = $1 RETURNING models", name)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db)?
        .ok_or_else(|| StoreError::not_found("pool", name))?;
    record(conn, actor, "pool.delete", &target(name), json!({ "models": models })).await?;
    Ok(())
}

/// The pool's id, locked against deletion until the transaction ends.
async fn lock_id(conn: &mut PgConnection, name: &str) -> Result<i64, StoreError> {
    sqlx::query_scalar!("SELECT id FROM pools WHERE name = $1 FOR KEY SHARE", name)
        .fetch_optional(conn)
        .await
        .map_err(db)?
        .ok_or_else(|| StoreError::not_found("pool", name))
}

pub(crate) async fn add_endpoint(
    conn: &mut PgConnection,
    actor: &Actor,
    pool: &str,
    endpoint: &NewEndpoint,
) -> Result<Pool, StoreError> {
    let weight = i32::try_from(endpoint.weight).map_err(|_| StoreError::invalid("weight", "is too large"))?;
    let pool_id = lock_id(conn, pool).await?;
    sqlx::query_scalar!(
        r#"
        INSERT INTO endpoints (pool_id, name, url, flavor, weight, http2, created_ms, managed_by)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
        ON CONFLICT (pool_id, name) DO NOTHING
        RETURNING id
        "#,
        pool_id,
        endpoint.name,
        endpoint.url,
        codec::flavor_str(endpoint.flavor),
        weight,
        endpoint.http2,
        now_ms(),
        Owner::of(actor).as_str(),
    )
    .fetch_optional(&mut *conn)
    .await
    .map_err(db)?
    .ok_or_else(|| StoreError::Conflict(format!("pool {pool:?} already has an endpoint {:?}", endpoint.name)))?;
    let detail = json!({ "url": endpoint.url, "flavor": endpoint.flavor, "weight": endpoint.weight });
    record(conn, actor, "endpoint.add", &endpoint_target(pool, &endpoint.name), detail).await?;
    get(conn, pool).await
}

pub(crate) async fn set_drained(
    conn: &mut PgConnection,
    actor: &Actor,
    pool: &str,
    endpoint: &str,
    drained: bool,
) -> Result<Pool, StoreError> {
    let pool_id = lock_id(conn, pool).await?;
    sqlx::query_scalar!(
        "UPDATE endpoints SET drained = $3 WHERE pool_id = $1 AND name = $2 RETURNING id",
        pool_id,
        endpoint,
        drained
    )
    .fetch_optional(&mut *conn)
    .await
    .map_err(db)?
    .ok_or_else(|| StoreError::not_found("endpoint", endpoint_target(pool, endpoint)))?;
    let action = if drained { "endpoint.drain" } else { "endpoint.undrain" };
    record(conn, actor, action, &endpoint_target(pool, endpoint), json!({})).await?;
    get(conn, pool).await
}

pub(crate) async fn remove_endpoint(
    conn: &mut PgConnection,
    actor: &Actor,
    pool: &str,
    endpoint: &str,
) -> Result<Pool, StoreError> {
    let pool_id = lock_id(conn, pool).await?;
    let owner = sqlx::query_scalar!(
        "SELECT managed_by FROM endpoints WHERE pool_id = $1 AND name = $2 FOR UPDATE",
        pool_id,
        endpoint
    )
    .fetch_optional(&mut *conn)
    .await
    .map_err(db)?
    .ok_or_else(|| StoreError::not_found("endpoint", endpoint_target(pool, endpoint)))?;
    Owner::refuse_delete(&owner, actor, &format!("endpoint {endpoint:?} of pool {pool:?}"))?;
    let url =
        sqlx::query_scalar!("DELETE FROM endpoints WHERE pool_id = $1 AND name = $2 RETURNING url", pool_id, endpoint)
            .fetch_optional(&mut *conn)
            .await
            .map_err(db)?
            .ok_or_else(|| StoreError::not_found("endpoint", endpoint_target(pool, endpoint)))?;
    record(conn, actor, "endpoint.remove", &endpoint_target(pool, endpoint), json!({ "url": url })).await?;
    get(conn, pool).await
}

pub(crate) async fn set_models(
    conn: &mut PgConnection,
    actor: &Actor,
    pool: &str,
    models: &[String],
) -> Result<Pool, StoreError> {
    let before = sqlx::query_scalar!("SELECT models FROM pools WHERE name = $1 FOR UPDATE", pool)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db)?
        .ok_or_else(|| StoreError::not_found("pool", pool))?;
    sqlx::query!("UPDATE pools SET models = $2 WHERE name = $1", pool, codec::json_list(models))
        .execute(&mut *conn)
        .await
        .map_err(db)?;
    record(conn, actor, "pool.set_models", &target(pool), json!({ "models": models, "before": before })).await?;
    get(conn, pool).await
}

pub(crate) async fn set_apis(
    conn: &mut PgConnection,
    actor: &Actor,
    pool: &str,
    apis: &[PoolApi],
) -> Result<Pool, StoreError> {
    let before = sqlx::query_scalar!("SELECT apis FROM pools WHERE name = $1 FOR UPDATE", pool)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db)?
        .ok_or_else(|| StoreError::not_found("pool", pool))?;
    let before = codec::pool_apis(before)?;
    let apis = codec::pool_apis_json(apis);
    sqlx::query!("UPDATE pools SET apis = $2 WHERE name = $1", pool, apis).execute(&mut *conn).await.map_err(db)?;
    record(conn, actor, "pool.set_apis", &target(pool), json!({ "apis": apis, "before": before })).await?;
    get(conn, pool).await
}
