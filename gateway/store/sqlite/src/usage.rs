//! Per-minute usage counters that every replica adds its deltas into.

use serde_json::json;
use sluice_store_model::{StoreError, TenantTokens, UsageCounts, UsageKey, UsageQuery, UsageRow};
use sqlx::{FromRow, QueryBuilder, Sqlite, SqlitePool};

use crate::error::db;
use crate::write;

/// One statement for the whole batch: the deltas travel as one JSON array that `json_each`
/// unrolls, so a batch of thousands costs one round trip to SQLite's worker thread instead of
/// one per row (which, on a busy machine, made a 1,000-row batch hold the write lock for
/// hundreds of milliseconds). SQLite inserts the rows one after another, so the same key twice
/// in a batch adds up just as it would across batches (in any order: sums and maxima commute);
/// the statement is atomic, so a failed batch leaves nothing behind and can be retried whole.
pub(crate) async fn add(pool: &SqlitePool, deltas: &[(UsageKey, UsageCounts)]) -> Result<(), StoreError> {
    if deltas.is_empty() {
        return Ok(());
    }
    let rows: Vec<serde_json::Value> = deltas
        .iter()
        .map(|(k, c)| {
            json!([
                k.tenant,
                k.model,
                k.minute,
                c.requests,
                c.errors,
                c.prompt_tokens,
                c.cached_tokens,
                c.completion_tokens,
                c.slo_met,
                c.ttft_count,
                c.ttft_sum_ms,
                c.ttft_max_ms,
                c.tpot_count,
                c.tpot_sum_us,
                c.tpot_max_us,
                c.estimated_requests,
                c.estimated_prompt_tokens,
                c.estimated_completion_tokens,
            ])
        })
        .collect();
    let batch = serde_json::Value::from(rows).to_string();
    let mut tx = write::begin(pool).await?;
    // `WHERE true` tells SQLite's parser that ON CONFLICT belongs to the INSERT, not to a join.
    sqlx::query!(
        "INSERT INTO usage_minutely (tenant, model, minute, requests, errors, prompt_tokens, cached_tokens,
             completion_tokens, slo_met, ttft_count, ttft_sum_ms, ttft_max_ms, tpot_count, tpot_sum_us, tpot_max_us,
             estimated_requests, estimated_prompt_tokens, estimated_completion_tokens)
         SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, value ->> 6,
                value ->> 7, value ->> 8, value ->> 9, value ->> 10, value ->> 11, value ->> 12, value ->> 13,
                value ->> 14, value ->> 15, value ->> 16, value ->> 17
         FROM json_each(?) WHERE true
         ON CONFLICT (minute, tenant, model) DO UPDATE SET
             requests = requests + excluded.requests,
             errors = errors + excluded.errors,
             prompt_tokens = prompt_tokens + excluded.prompt_tokens,
             cached_tokens = cached_tokens + excluded.cached_tokens,
             completion_tokens = completion_tokens + excluded.completion_tokens,
             slo_met = slo_met + excluded.slo_met,
             ttft_count = ttft_count + excluded.ttft_count,
             ttft_sum_ms = ttft_sum_ms + excluded.ttft_sum_ms,
             ttft_max_ms = max(ttft_max_ms, excluded.ttft_max_ms),
             tpot_count = tpot_count + excluded.tpot_count,
             tpot_sum_us = tpot_sum_us + excluded.tpot_sum_us,
             tpot_max_us = max(tpot_max_us, excluded.tpot_max_us),
             estimated_requests = estimated_requests + excluded.estimated_requests,
             estimated_prompt_tokens = estimated_prompt_tokens + excluded.estimated_prompt_tokens,
             estimated_completion_tokens = estimated_completion_tokens + excluded.estimated_completion_tokens",
        batch,
    )
    .execute(&mut *tx)
    .await
    .map_err(db)?;
    tx.commit().await.map_err(db)
}

#[derive(FromRow)]
struct Row {
    tenant: String,
    model: String,
    minute: i64,
    requests: i64,
    errors: i64,
    prompt_tokens: i64,
    cached_tokens: i64,
    completion_tokens: i64,
    slo_met: i64,
    ttft_count: i64,
    ttft_sum_ms: i64,
    ttft_max_ms: i64,
    tpot_count: i64,
    tpot_sum_us: i64,
    tpot_max_us: i64,
    estimated_requests: i64,
    estimated_prompt_tokens: i64,
    estimated_completion_tokens: i64,
}

impl From<Row> for UsageRow {
    fn from(r: Row) -> Self {
        UsageRow {
            key: UsageKey { tenant: r.tenant, model: r.model, minute: r.minute },
            counts: UsageCounts {
                requests: r.requests,
                errors: r.errors,
                prompt_tokens: r.prompt_tokens,
                cached_tokens: r.cached_tokens,
                completion_tokens: r.completion_tokens,
                slo_met: r.slo_met,
                ttft_count: r.ttft_count,
                ttft_sum_ms: r.ttft_sum_ms,
                ttft_max_ms: r.ttft_max_ms,
                tpot_count: r.tpot_count,
                tpot_sum_us: r.tpot_sum_us,
                tpot_max_us: r.tpot_max_us,
                estimated_requests: r.estimated_requests,
                estimated_prompt_tokens: r.estimated_prompt_tokens,
                estimated_completion_tokens: r.estimated_completion_tokens,
            },
        }
    }
}

/// The optional filters make this the one dynamic statement: each is added only when given,
/// so SQLite can use the (tenant, minute) index when a tenant is named.
pub(crate) async fn query(pool: &SqlitePool, q: &UsageQuery) -> Result<Vec<UsageRow>, StoreError> {
    let mut sql = QueryBuilder::<Sqlite>::new(
        "SELECT tenant, model, minute, requests, errors, prompt_tokens, cached_tokens, completion_tokens, slo_met,
                ttft_count, ttft_sum_ms, ttft_max_ms, tpot_count, tpot_sum_us, tpot_max_us,
                estimated_requests, estimated_prompt_tokens, estimated_completion_tokens
         FROM usage_minutely WHERE minute >= ",
    );
    sql.push_bind(q.from).push(" AND minute < ").push_bind(q.to);
    if let Some(tenant) = &q.tenant {
        sql.push(" AND tenant = ").push_bind(tenant.clone());
    }
    if let Some(model) = &q.model {
        sql.push(" AND model = ").push_bind(model.clone());
    }
    sql.push(" ORDER BY minute, tenant, model");
    let rows: Vec<Row> = sql.build_query_as().fetch_all(pool).await.map_err(db)?;
    Ok(rows.into_iter().map(UsageRow::from).collect())
}

/// Each tenant's prompt + completion tokens over `[from, to)`. Summed with `TOTAL` (a REAL)
/// rather than `SUM`, which fails the whole query on integer overflow: one runaway row would
/// otherwise hide every tenant's figures. A REAL is exact up to 2^53 tokens, far beyond any
/// month's; past `i64::MAX` the cast saturates, as PostgreSQL's clamp does.
pub(crate) async fn tokens_by_tenant(pool: &SqlitePool, from: i64, to: i64) -> Result<Vec<TenantTokens>, StoreError> {
    let rows = sqlx::query!(
        r#"SELECT tenant,
                  CAST(MAX(MIN(TOTAL(prompt_tokens) + TOTAL(completion_tokens), 9223372036854775807.0), 0.0)
                       AS INTEGER) AS "tokens!: i64"
           FROM usage_minutely
           WHERE minute >= ? AND minute < ?
           GROUP BY tenant
           ORDER BY tenant"#,
        from,
        to,
    )
    .fetch_all(pool)
    .await
    .map_err(db)?;
    Ok(rows
        .into_iter()
        .map(|r| TenantTokens { tenant: r.tenant, tokens: u64::try_from(r.tokens).unwrap_or(0) })
        .collect())
}
