//! `add_usage` applies a batch all or nothing, and replicas adding into the same rows at once
//! neither lose counts nor deadlock.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr,
    reason = "test code; figures go to stderr"
)]

mod common;

use std::time::Instant;

use sluice_store_model::{Backend, StoreError, UsageCounts, UsageKey, UsageQuery};

fn key(i: usize, minute: i64) -> UsageKey {
    UsageKey { tenant: format!("tenant-{:02}", i % 10), model: format!("model-{:03}", i / 10), minute }
}

fn one(requests: i64, ttft_max_ms: i64) -> UsageCounts {
    UsageCounts { requests, prompt_tokens: requests * 10, ttft_max_ms, ..UsageCounts::default() }
}

async fn rows_in(store: &impl Backend, minute: i64) -> Vec<sluice_store_model::UsageRow> {
    store.usage(&UsageQuery { tenant: None, model: None, from: minute, to: minute + 60 }).await.unwrap()
}

#[tokio::test]
async fn a_thousand_rows_land_together_or_not_at_all() {
    let db = common::TestDb::new().await;
    let store = db.store().await;
    let minute = 1_800_000_000 / 60 * 60;

    let batch: Vec<(UsageKey, UsageCounts)> = (0..1000).map(|i| (key(i, minute), one(1, i as i64))).collect();
    let started = Instant::now();
    store.add_usage(&batch).await.unwrap();
    eprintln!("add_usage of 1,000 new rows: {:?}", started.elapsed());
    let started = Instant::now();
    store.add_usage(&batch).await.unwrap();
    eprintln!("add_usage of 1,000 rows into existing ones: {:?}", started.elapsed());
    let rows = rows_in(&store, minute).await;
    assert_eq!(rows.len(), 1000);
    assert!(rows.iter().all(|r| r.counts.requests == 2 && r.counts.prompt_tokens == 20));

    // One row of the next batch overflows its counter: the database refuses the statement, and
    // none of the other 999 deltas may stick, or a retry would count them twice.
    let next = minute + 60;
    let nearly_full = UsageCounts { requests: i64::MAX - 5, ..UsageCounts::default() };
    store.add_usage(&[(key(500, next), nearly_full)]).await.unwrap();
    let poisoned: Vec<(UsageKey, UsageCounts)> = (0..1000).map(|i| (key(i, next), one(10, 1))).collect();
    let error = store.add_usage(&poisoned).await.unwrap_err();
    assert!(matches!(error, StoreError::Invalid { .. }), "{error:?}");
    let rows = rows_in(&store, next).await;
    assert_eq!(rows.len(), 1, "only the row that was there before: {}", rows.len());
    assert_eq!(rows[0].counts.requests, i64::MAX - 5);

    // Retried without the bad delta, the batch counts exactly once.
    let retry: Vec<_> = poisoned.into_iter().filter(|(k, _)| *k != key(500, next)).collect();
    store.add_usage(&retry).await.unwrap();
    let rows = rows_in(&store, next).await;
    assert_eq!(rows.len(), 1000);
    assert_eq!(rows.iter().filter(|r| r.counts.requests == 10).count(), 999);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_adding_into_the_same_rows_at_once() {
    let db = common::TestDb::new().await;
    let minute = 1_800_000_000 / 60 * 60;
    let mut replicas = Vec::new();
    for _ in 0..4 {
        replicas.push(db.store().await);
    }
    // Each replica flushes the same 200 rows ten times, in its own order: the store sorts a
    // batch before writing, so row locks are always taken in one order and nobody deadlocks.
    let tasks: Vec<_> = replicas
        .iter()
        .cloned()
        .enumerate()
        .map(|(n, replica)| {
            tokio::spawn(async move {
                for round in 0..10usize {
                    let mut batch: Vec<_> =
                        (0..200).map(|i| (key(i, minute), one(1, (n * 10 + round) as i64))).collect();
                    batch.rotate_left((n * 53 + round * 7) % 200);
                    if n % 2 == 1 {
                        batch.reverse();
                    }
                    replica.add_usage(&batch).await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let rows = rows_in(&replicas[0], minute).await;
    assert_eq!(rows.len(), 200);
    for row in rows {
        assert_eq!(row.counts.requests, 40, "{row:?}");
        assert_eq!(row.counts.ttft_max_ms, 39, "the largest maximum any replica reported");
    }
}
