//! Pools of serving endpoints.

use serde_json::json;
use sluice_store_model::{Actor, Endpoint, NewEndpoint, NewPool, Owner, Pool, PoolApi, StoreError};
use sqlx::{SqliteConnection, SqlitePool};

use crate::codec::{self, now_ms, ts};
use crate::error::{db, json, unique_as};
use crate::write::{self, Audit};

struct PoolRow {
    id: i64,
    name: String,
    models: String,
    apis: Option<String>,
    created_ms: i64,
}

struct EndpointRow {
    id: i64,
    pool_id: i64,
    pool: String,
    name: String,
    url: String,
    flavor: String,
    weight: i64,
    http2: bool,
    drained: bool,
    created_ms: i64,
}

impl TryFrom<EndpointRow> for Endpoint {
    type Error = StoreError;

    fn try_from(row: EndpointRow) -> Result<Self, StoreError> {
        Ok(Endpoint {
            id: row.id,
            pool: row.pool,
            name: row.name,
            url: row.url,
            flavor: codec::flavor(&row.flavor)?,
            weight: codec::to_u32("endpoint weight", row.weight)?,
            http2: row.http2,
            drained: row.drained,
            created_at: ts(row.created_ms),
        })
    }
}

fn assemble(pools: Vec<PoolRow>, endpoints: Vec<EndpointRow>) -> Result<Vec<Pool>, StoreError> {
    let mut out = Vec::with_capacity(pools.len());
    let mut endpoints = endpoints.into_iter().peekable();
    // Both lists come ordered by pool name (endpoints then in the order they were added), so
    // each pool takes the endpoints at the front.
    for row in pools {
        let models: Vec<String> = serde_json::from_str(&row.models).map_err(|e| json("pool models", e))?;
        let mut pool = Pool {
            id: row.id,
            name: row.name,
            models,
            apis: codec::pool_apis(row.apis.as_deref())?,
            endpoints: Vec::new(),
            created_at: ts(row.created_ms),
        };
        while let Some(endpoint) = endpoints.next_if(|e| e.pool_id == pool.id) {
            pool.endpoints.push(endpoint.try_into()?);
        }
        out.push(pool);
    }
    Ok(out)
}

/// Every pool with its endpoints, ordered by name.
pub(crate) async fn list_in(conn: &mut SqliteConnection) -> Result<Vec<Pool>, StoreError> {
    let pools = sqlx::query_as!(PoolRow, "SELECT id, name, models, apis, created_ms FROM pools ORDER BY name")
        .fetch_all(&mut *conn)
        .await
        .map_err(db)?;
    let endpoints = sqlx::query_as!(
        EndpointRow,
        r#"SELECT e.id, e.pool_id, p.name AS pool, e.name, e.url, e.flavor, e.weight,
                  e.http2 AS "http2: bool", e.drained AS "drained: bool", e.created_ms
           FROM endpoints e JOIN pools p ON p.id = e.pool_id
           ORDER BY p.name, e.id"#
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(db)?;
    assemble(pools, endpoints)
}

async fn read(conn: &mut SqliteConnection, name: &str) -> Result<Pool, StoreError> {
    let pool = sqlx::query_as!(PoolRow, "SELECT id, name, models, apis, created_ms FROM pools WHERE name = ?", name)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db)?
        .ok_or_else(|| StoreError::not_found("pool", name))?;
    let endpoints = sqlx::query_as!(
        EndpointRow,
        r#"SELECT e.id, e.pool_id, p.name AS pool, e.name, e.url, e.flavor, e.weight,
                  e.http2 AS "http2: bool", e.drained AS "drained: bool", e.created_ms
           FROM endpoints e JOIN pools p ON p.id = e.pool_id
           WHERE e.pool_id = ?
           ORDER BY e.id"#,
        pool.id
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(db)?;
    let mut pools = assemble(vec![pool], endpoints)?;
    pools.pop().ok_or_else(|| StoreError::not_found("pool", name))
}

pub(crate) async fn create(pool: &SqlitePool, actor: &Actor, new: &NewPool) -> Result<Pool, StoreError> {
    let models = serde_json::Value::from(new.models.clone()).to_string();
    // NULL when the pool names no APIs: it speaks the default, whatever that is when read.
    let apis = new.apis.as_deref().map(codec::pool_apis_text);
    let mut tx = write::begin(pool).await?;
    let now = now_ms();
    let owner = Owner::of(actor).as_str();
    sqlx::query!(
        "INSERT INTO pools (name, models, apis, created_ms, managed_by) VALUES (?, ?, ?, ?, ?)",
        new.name,
        models,
        apis,
        now,
        owner
    )
    .execute(&mut *tx)
    .await
    .map_err(|e| unique_as(e, || format!("pool {:?} already exists", new.name)))?;
    let created = read(&mut tx, &new.name).await?;
    let audit = Audit {
        actor,
        action: "pool.create",
        target: format!("pool/{}", new.name),
        detail: json!({ "models": new.models, "apis": created.apis }),
    };
    write::commit(tx, audit).await?;
    Ok(created)
}

pub(crate) async fn list(pool: &SqlitePool) -> Result<Vec<Pool>, StoreError> {
    let mut tx = pool.begin().await.map_err(db)?;
    let pools = list_in(&mut tx).await?;
    tx.commit().await.map_err(db)?;
    Ok(pools)
}

pub(crate) async fn get(pool: &SqlitePool, name: &str) -> Result<Pool, StoreError> {
    let mut tx = pool.begin().await.map_err(db)?;
    let found = read(&mut tx, name).await?;
    tx.commit().await.map_err(db)?;
    Ok(found)
}

pub(crate) async fn delete(pool: &SqlitePool, actor: &Actor, name: &str) -> Result<(), StoreError> {
    let mut tx = write::begin(pool).await?;
    let owner = sqlx::query_scalar!("SELECT managed_by FROM pools WHERE name = ?", name)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?
        .ok_or_else(|| StoreError::not_found("pool", name))?;
    Owner::refuse_delete(&owner, actor, &format!("pool {name:?}"))?;
    let deleted = sqlx::query!("DELETE FROM pools WHERE name = ?", name).execute(&mut *tx).await.map_err(db)?;
    if deleted.rows_affected() == 0 {
        return Err(StoreError::not_found("pool", name));
    }
    write::commit(tx, Audit { actor, action: "pool.delete", target: format!("pool/{name}"), detail: json!({}) }).await
}

async fn pool_id(conn: &mut SqliteConnection, name: &str) -> Result<i64, StoreError> {
    sqlx::query_scalar!("SELECT id FROM pools WHERE name = ?", name)
        .fetch_optional(conn)
        .await
        .map_err(db)?
        .ok_or_else(|| StoreError::not_found("pool", name))
}

pub(crate) async fn add_endpoint(
    pool: &SqlitePool,
    actor: &Actor,
    pool_name: &str,
    endpoint: &NewEndpoint,
) -> Result<Pool, StoreError> {
    let mut tx = write::begin(pool).await?;
    let id = pool_id(&mut tx, pool_name).await?;
    let now = now_ms();
    let flavor = codec::flavor_str(endpoint.flavor);
    let owner = Owner::of(actor).as_str();
    // PostgreSQL keeps weights as INTEGER; both stores refuse what it could not hold.
    let weight = i32::try_from(endpoint.weight).map_err(|_| {
        StoreError::invalid("weight", format!("{} is above the largest weight, {}", endpoint.weight, i32::MAX))
    })?;
    sqlx::query!(
        "INSERT INTO endpoints (pool_id, name, url, flavor, weight, http2, drained, created_ms, managed_by)
         VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?)",
        id,
        endpoint.name,
        endpoint.url,
        flavor,
        weight,
        endpoint.http2,
        now,
        owner,
    )
    .execute(&mut *tx)
    .await
    .map_err(|e| unique_as(e, || format!("endpoint {:?} already exists in pool {pool_name:?}", endpoint.name)))?;
    let updated = read(&mut tx, pool_name).await?;
    let audit = Audit {
        actor,
        action: "endpoint.add",
        target: format!("pool/{pool_name}/endpoint/{}", endpoint.name),
        detail: json!({ "url": endpoint.url, "flavor": flavor, "weight": endpoint.weight, "http2": endpoint.http2 }),
    };
    write::commit(tx, audit).await?;
    Ok(updated)
}

pub(crate) async fn set_drained(
    pool: &SqlitePool,
    actor: &Actor,
    pool_name: &str,
    endpoint: &str,
    drained: bool,
) -> Result<Pool, StoreError> {
    let mut tx = write::begin(pool).await?;
    let id = pool_id(&mut tx, pool_name).await?;
    let changed =
        sqlx::query!("UPDATE endpoints SET drained = ? WHERE pool_id = ? AND name = ?", drained, id, endpoint)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
    if changed.rows_affected() == 0 {
        return Err(StoreError::not_found("endpoint", endpoint));
    }
    let updated = read(&mut tx, pool_name).await?;
    let audit = Audit {
        actor,
        action: if drained { "endpoint.drain" } else { "endpoint.undrain" },
        target: format!("pool/{pool_name}/endpoint/{endpoint}"),
        detail: json!({ "drained": drained }),
    };
    write::commit(tx, audit).await?;
    Ok(updated)
}

pub(crate) async fn remove_endpoint(
    pool: &SqlitePool,
    actor: &Actor,
    pool_name: &str,
    endpoint: &str,
) -> Result<Pool, StoreError> {
    let mut tx = write::begin(pool).await?;
    let id = pool_id(&mut tx, pool_name).await?;
    let owner = sqlx::query_scalar!("SELECT managed_by FROM endpoints WHERE pool_id = ? AND name = ?", id, endpoint)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?
        .ok_or_else(|| StoreError::not_found("endpoint", endpoint))?;
    Owner::refuse_delete(&owner, actor, &format!("endpoint {endpoint:?} of pool {pool_name:?}"))?;
    let removed = sqlx::query!("DELETE FROM endpoints WHERE pool_id = ? AND name = ?", id, endpoint)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    if removed.rows_affected() == 0 {
        return Err(StoreError::not_found("endpoint", endpoint));
    }
    let updated = read(&mut tx, pool_name).await?;
    let audit = Audit {
        actor,
        action: "endpoint.remove",
        target: format!("pool/{pool_name}/endpoint/{endpoint}"),
        detail: json!({}),
    };
    write::commit(tx, audit).await?;
    Ok(updated)
}

pub(crate) async fn set_models(
    pool: &SqlitePool,
    actor: &Actor,
    pool_name: &str,
    models: &[String],
) -> Result<Pool, StoreError> {
    let text = serde_json::Value::from(models.to_vec()).to_string();
    let mut tx = write::begin(pool).await?;
    let before = read(&mut tx, pool_name).await?.models;
    sqlx::query!("UPDATE pools SET models = ? WHERE name = ?", text, pool_name).execute(&mut *tx).await.map_err(db)?;
    let updated = read(&mut tx, pool_name).await?;
    let audit = Audit {
        actor,
        action: "pool.set_models",
        target: format!("pool/{pool_name}"),
        detail: json!({ "models": models, "before": before }),
    };
    write::commit(tx, audit).await?;
    Ok(updated)
}

pub(crate) async fn set_apis(
    pool: &SqlitePool,
    actor: &Actor,
    pool_name: &str,
    apis: &[PoolApi],
) -> Result<Pool, StoreError> {
    let text = codec::pool_apis_text(apis);
    let mut tx = write::begin(pool).await?;
    let before = read(&mut tx, pool_name).await?.apis;
    sqlx::query!("UPDATE pools SET apis = ? WHERE name = ?", text, pool_name).execute(&mut *tx).await.map_err(db)?;
    let updated = read(&mut tx, pool_name).await?;
    let audit = Audit {
        actor,
        action: "pool.set_apis",
        target: format!("pool/{pool_name}"),
        detail: json!({ "apis": updated.apis, "before": before }),
    };
    write::commit(tx, audit).await?;
    Ok(updated)
}
