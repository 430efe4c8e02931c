//! add_usage batches are all or nothing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "test code")]

mod common;

use sluice_store_model::{Backend, StoreError, UsageCounts, UsageKey, UsageQuery};

fn key(i: usize, minute: i64) -> UsageKey {
    UsageKey { tenant: format!("t{:02}", i % 20), model: format!("m{}", i / 20), minute }
}

fn counts(i: usize) -> UsageCounts {
    let i = i64::try_from(i).unwrap();
    UsageCounts {
        requests: 1,
        prompt_tokens: i,
        ttft_count: 1,
        ttft_sum_ms: 10 * i,
        ttft_max_ms: i,
        ..UsageCounts::default()
    }
}

#[tokio::test]
async fn a_thousand_row_batch_lands_whole_or_not_at_all() {
    let fresh = common::fresh().await;
    let store = &fresh.store;
    let minute = 28_000_000 * 60;
    let all = UsageQuery { tenant: None, model: None, from: minute, to: minute + 60 };

    // A counter at its maximum, that the last delta of the next batch overflows: SQLite turns
    // the sum into a REAL, which the STRICT table refuses, failing the statement.
    let full = UsageKey { tenant: "full".into(), model: "m".into(), minute };
    store.add_usage(&[(full.clone(), UsageCounts { requests: i64::MAX, ..UsageCounts::default() })]).await.unwrap();

    let mut batch: Vec<(UsageKey, UsageCounts)> = (0..999).map(|i| (key(i, minute), counts(i))).collect();
    batch.push((full.clone(), UsageCounts { requests: 1, ..UsageCounts::default() }));
    match store.add_usage(&batch).await {
        Err(StoreError::Invalid { .. }) => {}
        other => panic!("the overflowing batch must fail as Invalid, got {other:?}"),
    }
    let rows = store.usage(&all).await.unwrap();
    assert_eq!(rows.len(), 1, "none of the 999 rows before the failure stayed: {}", rows.len());
    assert_eq!(rows[0].counts.requests, i64::MAX);

    // The same thousand rows without the bad one land together, and again add up.
    batch.pop();
    batch.push((key(999, minute), counts(999)));
    for round in 1..=2 {
        store.add_usage(&batch).await.unwrap();
        let rows = store.usage(&all).await.unwrap();
        assert_eq!(rows.len(), 1001);
        let requests: i64 = rows.iter().filter(|r| r.key.tenant != "full").map(|r| r.counts.requests).sum();
        assert_eq!(requests, 1000 * round);
        let maxima_kept = rows.iter().filter(|r| r.key.tenant != "full").all(|r| {
            let i = batch.iter().position(|(k, _)| k == &r.key).unwrap();
            r.counts.ttft_max_ms == counts(i).ttft_max_ms && r.counts.ttft_sum_ms == counts(i).ttft_sum_ms * round
        });
        assert!(maxima_kept, "maxima stay the maximum, sums add");
    }
}
