//! Per-minute usage rows that every replica adds its deltas into.

use std::collections::BTreeMap;

use sluice_store_model::{StoreError, TenantTokens, UsageCounts, UsageKey, UsageQuery, UsageRow};
use sqlx::PgConnection;

use crate::error::db;

/// One column per counter, as UNNEST wants them.
#[derive(Default)]
struct Columns {
    tenant: Vec<String>,
    model: Vec<String>,
    minute: Vec<i64>,
    counters: [Vec<i64>; 15],
}

impl Columns {
    fn push(&mut self, key: &UsageKey, c: &UsageCounts) {
        self.tenant.push(key.tenant.clone());
        self.model.push(key.model.clone());
        self.minute.push(key.minute);
        let values = [
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
        ];
        for (column, value) in self.counters.iter_mut().zip(values) {
            column.push(value);
        }
    }
}

/// One statement whatever the batch size (eighteen array parameters), so the batch is applied
/// all or nothing. Deltas for the same row are merged first: ON CONFLICT DO UPDATE may not
/// touch a row twice in one statement.
pub(crate) async fn add(conn: &mut PgConnection, deltas: &[(UsageKey, UsageCounts)]) -> Result<(), StoreError> {
    if deltas.is_empty() {
        return Ok(());
    }
    let mut merged: BTreeMap<&UsageKey, UsageCounts> = BTreeMap::new();
    for (key, counts) in deltas {
        merged.entry(key).or_default().merge(counts);
    }
    let mut cols = Columns::default();
    for (key, counts) in &merged {
        cols.push(key, counts);
    }
    let [
        requests,
        errors,
        prompt,
        cached,
        completion,
        slo_met,
        ttft_count,
        ttft_sum,
        ttft_max,
        tpot_count,
        tpot_sum,
        tpot_max,
        estimated,
        estimated_prompt,
        estimated_completion,
    ] = &cols.counters;
    sqlx::query!(
        r#"
        INSERT INTO usage_minutely AS u (
            tenant, model, minute, requests, errors, prompt_tokens, cached_tokens, completion_tokens, slo_met,
            ttft_count, ttft_sum_ms, ttft_max_ms, tpot_count, tpot_sum_us, tpot_max_us,
            estimated_requests, estimated_prompt_tokens, estimated_completion_tokens
        )
        SELECT * FROM UNNEST(
            $1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[], $7::bigint[],
            $8::bigint[], $9::bigint[], $10::bigint[], $11::bigint[], $12::bigint[], $13::bigint[], $14::bigint[],
            $15::bigint[], $16::bigint[], $17::bigint[], $18::bigint[]
        )
        ON CONFLICT (minute, tenant, model) DO UPDATE SET
            requests = u.requests + EXCLUDED.requests,
            errors = u.errors + EXCLUDED.errors,
            prompt_tokens = u.prompt_tokens + EXCLUDED.prompt_tokens,
            cached_tokens = u.cached_tokens + EXCLUDED.cached_tokens,
            completion_tokens = u.completion_tokens + EXCLUDED.completion_tokens,
            slo_met = u.slo_met + EXCLUDED.slo_met,
            ttft_count = u.ttft_count + EXCLUDED.ttft_count,
            ttft_sum_ms = u.ttft_sum_ms + EXCLUDED.ttft_sum_ms,
            ttft_max_ms = GREATEST(u.ttft_max_ms, EXCLUDED.ttft_max_ms),
            tpot_count = u.tpot_count + EXCLUDED.tpot_count,
            tpot_sum_us = u.tpot_sum_us + EXCLUDED.tpot_sum_us,
            tpot_max_us = GREATEST(u.tpot_max_us, EXCLUDED.tpot_max_us),
            estimated_requests = u.estimated_requests + EXCLUDED.estimated_requests,
            estimated_prompt_tokens = u.estimated_prompt_tokens + EXCLUDED.estimated_prompt_tokens,
            estimated_completion_tokens = u.estimated_completion_tokens + EXCLUDED.estimated_completion_tokens
        "#,
        &cols.tenant,
        &cols.model,
        &cols.minute,
        requests,
        errors,
        prompt,
        cached,
        completion,
        slo_met,
        ttft_count,
        ttft_sum,
        ttft_max,
        tpot_count,
        tpot_sum,
        tpot_max,
        estimated,
        estimated_prompt,
        estimated_completion,
    )
    .execute(conn)
    .await
    .map_err(db)?;
    Ok(())
}

/// Rows in `[from, to)`, by minute, tenant, model.
pub(crate) async fn query(conn: &mut PgConnection, q: &UsageQuery) -> Result<Vec<UsageRow>, StoreError> {
    let rows = sqlx::query!(
        r#"
        SELECT tenant, model, minute, requests, errors, prompt_tokens, cached_tokens, completion_tokens, slo_met,
               ttft_count, ttft_sum_ms, ttft_max_ms, tpot_count, tpot_sum_us, tpot_max_us,
               estimated_requests, estimated_prompt_tokens, estimated_completion_tokens
        FROM usage_minutely
        WHERE minute >= $1 AND minute < $2
          AND ($3::text IS NULL OR tenant = $3)
          AND ($4::text IS NULL OR model = $4)
        ORDER BY minute, tenant COLLATE "C", model COLLATE "C"
        "#,
        q.from,
        q.to,
        q.tenant,
        q.model,
    )
    .fetch_all(conn)
    .await
    .map_err(db)?;
    Ok(rows
        .into_iter()
        .map(|r| UsageRow {
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
        })
        .collect())
}

/// Each tenant's prompt + completion tokens over `[from, to)`. `SUM` of a bigint is a
/// `numeric`, so the total cannot overflow on the way; it is clamped into what a bigint (and
/// so every store) holds.
pub(crate) async fn tokens_by_tenant(
    conn: &mut PgConnection,
    from: i64,
    to: i64,
) -> Result<Vec<TenantTokens>, StoreError> {
    let rows = sqlx::query!(
        r#"
        SELECT tenant,
               LEAST(GREATEST(SUM(prompt_tokens) + SUM(completion_tokens), 0), 9223372036854775807)::BIGINT
                   AS "tokens!"
        FROM usage_minutely
        WHERE minute >= $1 AND minute < $2
        GROUP BY tenant
        ORDER BY tenant COLLATE "C"
        "#,
        from,
        to,
    )
    .fetch_all(conn)
    .await
    .map_err(db)?;
    Ok(rows
        .into_iter()
        .map(|r| TenantTokens { tenant: r.tenant, tokens: u64::try_from(r.tokens).unwrap_or(0) })
        .collect())
}
