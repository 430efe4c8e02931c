//! Usage counters: deltas add up (maxima take the larger), queries are half-open and filtered.

use super::mark;
use crate::{Backend, StoreError, UsageCounts, UsageKey, UsageQuery, UsageRow};

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
