//! Two gateway processes on one host sharing the file: each `SqliteStore` has its own pool,
//! exactly as two processes would, so locking and visibility go through SQLite itself.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "test code")]

mod common;

use std::time::{Duration, Instant};

use sluice_store_model::keys::generate;
use sluice_store_model::{
    Actor, Backend, NewKey, NewTenant, Priority, StoreError, TenantStatus, UsageCounts, UsageKey, UsageQuery,
};
use sluice_store_sqlite::SqliteStore;

fn tenant(name: &str) -> NewTenant {
    NewTenant { name: name.into(), priority: Priority::Normal, status: TenantStatus::Active }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_through_one_replica_reaches_the_other() {
    let fresh = common::fresh().await;
    let (one, two) = (&fresh.store, &common::open(&fresh.path).await);

    let seen = two.snapshot().await.expect("snapshot").version;
    let started = Instant::now();
    let watch = tokio::spawn({
        let two = two.clone();
        async move { two.wait_for_change(seen, Duration::from_secs(30)).await }
    });
    // Let the watcher poll at least once before the change.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let changed_at = Instant::now();
    one.create_tenant(&Actor::admin(), &tenant("acme")).await.expect("create through one");
    let woke = watch.await.expect("join").expect("wait");
    let noticed = changed_at.elapsed();
    assert!(woke > seen, "woke with {woke}, seen {seen}");
    assert!(noticed < Duration::from_secs(1), "noticed after {noticed:?}");
    assert!(started.elapsed() < Duration::from_secs(30));

    let snapshot = two.snapshot().await.expect("snapshot through two");
    assert_eq!(snapshot.version, woke);
    assert!(snapshot.tenants.iter().any(|t| t.tenant.name == "acme"));
}

/// Both replicas write at once: tenants, keys and usage. With `BEGIN IMMEDIATE` and the busy
/// timeout they queue; none fails, and nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_on_both_replicas_all_succeed() {
    let fresh = common::fresh().await;
    let replicas = [fresh.store.clone(), common::open(&fresh.path).await];
    let minute = 1_800_000_000 / 60 * 60;
    let mut tasks = Vec::new();
    for (r, store) in replicas.iter().enumerate() {
        for worker in 0..4 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..15 {
                    let name = format!("r{r}-w{worker}-t{i}");
                    store.create_tenant(&Actor::admin(), &tenant(&name)).await?;
                    let key = generate();
                    let new = NewKey { name: None, prefix: key.prefix, digest: key.digest };
                    store.create_key(&Actor::admin(), &name, &new).await?;
                    let usage = UsageKey { tenant: "shared".into(), model: "m".into(), minute };
                    store.add_usage(&[(usage, UsageCounts { requests: 1, ..UsageCounts::default() })]).await?;
                }
                Ok::<_, StoreError>(())
            }));
        }
    }
    for task in tasks {
        task.await.expect("join").expect("every write succeeds");
    }
    for store in &replicas {
        let snapshot = store.snapshot().await.expect("snapshot");
        assert_eq!(snapshot.tenants.len(), 2 * 4 * 15);
        assert!(snapshot.tenants.iter().all(|t| t.keys.len() == 1));
        let rows = store
            .usage(&UsageQuery { tenant: Some("shared".into()), model: None, from: minute, to: minute + 60 })
            .await
            .expect("usage");
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].counts.requests, 2 * 4 * 15, "every delta from both replicas is counted once");
    }
}

/// Two processes starting on a file that does not exist yet both migrate it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_migrating_a_new_file_at_once_both_succeed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("sluice.db");
    let (a, b) = tokio::join!(SqliteStore::open(&path), SqliteStore::open(&path));
    let (a, b) = (a.expect("open a"), b.expect("open b"));
    let (ra, rb) = tokio::join!(a.migrate(), b.migrate());
    ra.expect("migrate a");
    rb.expect("migrate b");
    a.create_tenant(&Actor::admin(), &tenant("acme")).await.expect("create");
    assert_eq!(b.list_tenants().await.expect("list").len(), 1);
}

/// A writer that holds the lock past the other's busy timeout makes it fail with
/// `Unavailable` (worth retrying), not a database error; once released, writes go through.
#[tokio::test]
async fn a_lock_held_past_the_busy_timeout_is_unavailable() {
    use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};

    let fresh = common::fresh().await;
    let options =
        SqliteConnectOptions::new().filename(&fresh.path).foreign_keys(true).busy_timeout(Duration::from_millis(100));
    let impatient =
        SqliteStore::from_pool(SqlitePoolOptions::new().max_connections(2).connect_with(options).await.unwrap());

    let holder = fresh.store.pool().begin_with("BEGIN IMMEDIATE").await.expect("take the write lock");
    match impatient.create_tenant(&Actor::admin(), &tenant("acme")).await {
        Err(StoreError::Unavailable(message)) => assert!(message.contains("locked"), "{message}"),
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert!(StoreError::Unavailable(String::new()).is_transient());
    holder.rollback().await.expect("release");
    impatient.create_tenant(&Actor::admin(), &tenant("acme")).await.expect("create after release");
}
