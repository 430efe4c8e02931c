//! Usage counters: deltas add up (maxima take the larger), queries are half-open and filtered;
//! tokens per tenant are summed over a half-open range of minutes.

use super::mark;
use crate::{Backend, StoreError, TenantTokens, UsageCounts, UsageKey, UsageQuery, UsageRow};

fn counts(seed: i64) -> UsageCounts {
    UsageCounts {
        requests: seed,
        errors: seed / 2,
        prompt_tokens: seed * 100,
        cached_tokens: seed * 10,
        completion_tokens: seed * 50,
        slo_met: seed - 1,
        ttft_count: seed,
        ttft_sum_ms: seed * 300,
        ttft_max_ms: 100 + seed * 7 % 13,
        tpot_count: seed,
        tpot_sum_us: seed * 20_000,
        tpot_max_us: 30_000 - seed * 11 % 17,
        estimated_requests: seed / 3,
        estimated_prompt_tokens: seed * 40,
        estimated_completion_tokens: seed * 5,
    }
}

fn key(tenant: &str, model: &str, minute: i64) -> UsageKey {
    UsageKey { tenant: tenant.into(), model: model.into(), minute }
}

pub async fn usage(store: &dyn Backend) {
    let (a, b) = ("conf-usage-a", "conf-usage-b");
    let (m1, m2) = ("meta-llama/Llama-3.1-8B-Instruct", "qwen");
    // Minutes of their own, far from any other area's rows.
    let t0 = 26_666_667 * 60;
    let t1 = t0 + 60;
    let t2 = t0 + 120;

    let before = mark(store).await;
    store.add_usage(&[]).await.expect("an empty batch is fine");
    store
        .add_usage(&[(key(a, m1, t0), counts(3)), (key(a, m2, t0), counts(5)), (key(b, m1, t1), counts(7))])
        .await
        .expect("add usage");
    // A second batch for a row adds to it; the same row twice in one batch adds twice.
    store
        .add_usage(&[(key(a, m1, t0), counts(4)), (key(b, m1, t2), counts(1)), (key(b, m1, t2), counts(2))])
        .await
        .expect("add usage again");

    // Usage is not configuration: no audit row, no reload of every gateway's snapshot.
    let after = mark(store).await;
    assert_eq!(after.version, before.version, "add_usage must not raise the change version");
    assert_eq!(after.audit_id, before.audit_id, "add_usage must not write audit rows");

    let merged = |x: i64, y: i64| {
        let mut total = counts(x);
        total.merge(&counts(y));
        total
    };
    let row = |key: UsageKey, counts: UsageCounts| UsageRow { key, counts };
    let everything = vec![
        row(key(a, m1, t0), merged(3, 4)),
        row(key(a, m2, t0), counts(5)),
        row(key(b, m1, t1), counts(7)),
        row(key(b, m1, t2), merged(1, 2)),
    ];
    let query = |tenant: Option<&str>, model: Option<&str>, from: i64, to: i64| UsageQuery {
        tenant: tenant.map(Into::into),
        model: model.map(Into::into),
        from,
        to,
    };
    let fetch = |q: UsageQuery| async move { store.usage(&q).await.expect("usage query") };

    assert_eq!(fetch(query(None, None, t0, t2 + 60)).await, everything, "ordered by minute, tenant, model");
    assert_eq!(merged(3, 4).ttft_max_ms, counts(3).ttft_max_ms.max(counts(4).ttft_max_ms));
    // Half-open: `to` is excluded, `from` included, and a minute is matched by its start.
    assert_eq!(fetch(query(None, None, t0, t1)).await, everything[..2]);
    assert_eq!(fetch(query(None, None, t0 + 1, t2)).await, everything[2..3]);
    assert_eq!(fetch(query(None, None, t1, t1)).await, vec![]);
    assert_eq!(fetch(query(None, None, t2 + 60, t2 + 3600)).await, vec![]);
    // Filters narrow by tenant, model or both.
    assert_eq!(fetch(query(Some(b), None, 0, i64::MAX)).await, everything[2..]);
    let m1_rows = vec![everything[0].clone(), everything[2].clone(), everything[3].clone()];
    assert_eq!(fetch(query(None, Some(m1), t0, t2 + 60)).await, m1_rows);
    assert_eq!(fetch(query(Some(a), Some(m2), i64::MIN, i64::MAX)).await, everything[1..2]);
    assert_eq!(fetch(query(Some("conf-usage-nobody"), None, i64::MIN, i64::MAX)).await, vec![]);

    // Large batches land whole.
    let t3 = t0 + 3600;
    let batch: Vec<(UsageKey, UsageCounts)> =
        (0..500).map(|i| (key(&format!("conf-usage-many-{i:03}"), m2, t3), counts(i + 1))).collect();
    store.add_usage(&batch).await.expect("large batch");
    let rows = fetch(query(None, Some(m2), t3, t3 + 60)).await;
    assert_eq!(rows.len(), 500);
    assert!(rows.iter().zip(&batch).all(|(row, (k, c))| &row.key == k && &row.counts == c));

    // A delta that would overflow a counter refuses the whole batch: nothing else in it lands,
    // so the writer can drop or fix it without having counted part of it.
    let t4 = t0 + 7200;
    let nearly_full = UsageCounts { requests: i64::MAX - 1, ..UsageCounts::default() };
    store.add_usage(&[(key(a, m1, t4), nearly_full)]).await.expect("a large counter");
    let overflowing = [(key(a, m2, t4), counts(1)), (key(a, m1, t4), counts(5)), (key(b, m1, t4), counts(2))];
    match store.add_usage(&overflowing).await {
        Err(StoreError::Invalid { .. }) => {}
        other => panic!("an overflowing counter must refuse the batch as Invalid, got {other:?}"),
    }
    assert_eq!(fetch(query(None, None, t4, t4 + 60)).await, vec![row(key(a, m1, t4), nearly_full)]);
}

/// Prompt + completion tokens per tenant over `[from, to)`: what a monthly budget counts.
pub async fn tokens_by_tenant(store: &dyn Backend) {
    // Minutes of their own, far from the `usage` area's, so that the two can share a store.
    let t0 = 27_000_000 * 60;
    let (from, to) = (t0, t0 + 3 * 60);
    let tokens = |prompt: i64, cached: i64, completion: i64| UsageCounts {
        requests: 1,
        prompt_tokens: prompt,
        cached_tokens: cached,
        completion_tokens: completion,
        ..UsageCounts::default()
    };
    // `-` sorts before `.` in byte order but not in most locales' collations.
    let (a, a2, b, idle, outside) =
        ("conf-tokens-a.1", "conf-tokens-a-2", "conf-tokens-b", "conf-tokens-idle", "conf-tokens-outside");
    store
        .add_usage(&[
            (key(a, "m1", t0), tokens(100, 40, 7)),
            (key(a, "m2", t0 + 60), tokens(20, 0, 3)),
            (key(a2, "m1", t0 + 120), tokens(5, 5, 0)),
            // Well past 2^32, to catch a narrowing on the way out.
            (key(b, "m1", t0 + 60), tokens(3_000_000_000_000, 0, 1)),
            // Requests that used no tokens still name their tenant.
            (key(idle, "m1", t0), UsageCounts { requests: 2, errors: 2, ..UsageCounts::default() }),
            // Just outside on either side: the minute before `from`, and `to` itself.
            (key(outside, "m1", t0 - 60), tokens(1_000, 0, 1_000)),
            (key(outside, "m1", to), tokens(1_000, 0, 1_000)),
            (key(a, "m1", to), tokens(1_000, 0, 1_000)),
        ])
        .await
        .expect("add usage");
    // A later batch adds to the same rows.
    store.add_usage(&[(key(a, "m1", t0), tokens(1, 1, 1))]).await.expect("add usage again");

    let fetch = |from: i64, to: i64| async move { store.tokens_by_tenant(from, to).await.expect("tokens_by_tenant") };
    let row = |tenant: &str, tokens: u64| TenantTokens { tenant: tenant.into(), tokens };
    // Cached tokens are part of the prompt's count and are not added again.
    assert_eq!(
        fetch(from, to).await,
        vec![row(a2, 5), row(a, 101 + 8 + 20 + 3), row(b, 3_000_000_000_001), row(idle, 0)],
        "summed per tenant over [from, to), in byte order of the names"
    );
    // The minute is matched by its start, as `usage` does.
    assert_eq!(fetch(from + 1, to).await, vec![row(a2, 5), row(a, 23), row(b, 3_000_000_000_001)]);
    assert_eq!(fetch(to, to).await, vec![]);
    assert_eq!(fetch(to, from).await, vec![], "an inverted range is empty");
    assert_eq!(fetch(to - 60, to + 60).await, vec![row(a2, 5), row(a, 2_000), row(outside, 2_000)]);

    // Totals no counter could hold saturate instead of failing every tenant's figures, and a
    // negative one (a hand-corrected row, say) is no usage at all.
    let t1 = t0 + 3600;
    let (huge, negative) = ("conf-tokens-huge", "conf-tokens-negative");
    store
        .add_usage(&[
            (key(huge, "m1", t1), tokens(i64::MAX - 1, 0, 0)),
            (key(huge, "m1", t1 + 60), tokens(i64::MAX - 1, 0, 0)),
            (key(huge, "m2", t1 + 60), tokens(0, 0, i64::MAX)),
            (key(negative, "m1", t1), tokens(-50, 0, 20)),
        ])
        .await
        .expect("add usage with large counters");
    let max = u64::try_from(i64::MAX).expect("i64::MAX fits in u64");
    assert_eq!(fetch(t1, t1 + 120).await, vec![row(huge, max), row(negative, 0)]);
}
