//! Two stores on one database behave like two gateway replicas: a change made through one
//! wakes the other's `wait_for_change` through NOTIFY, also after its listener lost its connection.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr,
    reason = "test code; figures go to stderr"
)]

mod common;

use std::time::{Duration, Instant};

use sluice_store_model::{Actor, Backend, NewTenant, Priority, TenantPatch, TenantStatus};
use sluice_store_postgres::PostgresStore;
use sqlx::PgPool;

/// Backends on this database whose last statement was LISTEN: the stores' change listeners.
async fn listener_pids(monitor: &PgPool) -> Vec<i32> {
    sqlx::query_scalar::<_, i32>(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN%' ORDER BY pid",
    )
    .fetch_all(monitor)
    .await
    .unwrap()
}

/// A second replica whose listener is up and has read the version.
async fn replica_listening(db: &common::TestDb, monitor: &PgPool) -> PostgresStore {
    let replica = PostgresStore::connect(&db.url).await.unwrap();
    let before = listener_pids(monitor).await.len();
    let seen = replica.change_version().await.unwrap();
    // The first wait starts the listener.
    replica.wait_for_change(seen, Duration::from_millis(1)).await.unwrap();
    let up =
        common::eventually(Duration::from_secs(10), || async { listener_pids(monitor).await.len() > before }).await;
    assert!(up, "the replica's listener never showed up in pg_stat_activity");
    replica
}

async fn touch(store: &PostgresStore, name: &str, status: TenantStatus) {
    let patch = TenantPatch { status: Some(status), priority: None };
    store.update_tenant(&Actor::admin(), name, &patch).await.unwrap();
}

/// Times how long `waiter` takes to hear of a change that `writer` makes once `waiter` waits.
async fn wake_latency(writer: &PostgresStore, waiter: &PostgresStore, tenant: &str, status: TenantStatus) -> Duration {
    let seen = waiter.change_version().await.unwrap();
    let waiting = {
        let waiter = waiter.clone();
        tokio::spawn(async move {
            let version = waiter.wait_for_change(seen, Duration::from_secs(30)).await.unwrap();
            (version, Instant::now())
        })
    };
    // Give the waiter a moment to be parked on the listener; if it is not yet, it still sees the
    // version above `seen` straight away, so this does not make the test depend on timing.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let started = Instant::now();
    touch(writer, tenant, status).await;
    let (version, woke) = waiting.await.unwrap();
    assert!(version > seen);
    assert_eq!(version, writer.change_version().await.unwrap());
    woke.saturating_duration_since(started)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_wakes_another_replica_promptly() {
    let db = common::TestDb::new().await;
    let monitor = PgPool::connect(&db.url).await.unwrap();
    let writer = db.store().await;
    let new = NewTenant { name: "acme".into(), priority: Priority::Normal, status: TenantStatus::Active };
    writer.create_tenant(&Actor::admin(), &new).await.unwrap();
    let reader = replica_listening(&db, &monitor).await;

    let mut latencies = Vec::new();
    for i in 0..20 {
        let status = if i % 2 == 0 { TenantStatus::Suspended } else { TenantStatus::Active };
        latencies.push(wake_latency(&writer, &reader, "acme", status).await);
    }
    latencies.sort();
    eprintln!(
        "replica wake-up after a commit (update + NOTIFY): median {:?}, max {:?} over {} changes",
        latencies[latencies.len() / 2],
        latencies[latencies.len() - 1],
        latencies.len()
    );
    assert!(latencies[latencies.len() - 1] < Duration::from_millis(500), "{latencies:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listener_recovers_after_its_connection_is_killed() {
    let db = common::TestDb::new().await;
    let monitor = PgPool::connect(&db.url).await.unwrap();
    let writer = db.store().await;
    let new = NewTenant { name: "acme".into(), priority: Priority::Normal, status: TenantStatus::Active };
    writer.create_tenant(&Actor::admin(), &new).await.unwrap();
    let reader = replica_listening(&db, &monitor).await;
    let old = listener_pids(&monitor).await;
    assert_eq!(old.len(), 1, "only the reader listens (the writer never waited): {old:?}");

    // Kill the listener's backend, then change something before it can possibly have
    // reconnected: that NOTIFY is lost, and the reader must find the change all the same.
    let seen = reader.change_version().await.unwrap();
    let killed: Vec<bool> = sqlx::query_scalar("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid = $1")
        .bind(old[0])
        .fetch_all(&monitor)
        .await
        .unwrap();
    assert_eq!(killed, [true]);
    touch(&writer, "acme", TenantStatus::Suspended).await;
    let started = Instant::now();
    let version = reader.wait_for_change(seen, Duration::from_secs(30)).await.unwrap();
    let recovered = started.elapsed();
    eprintln!("change made while the listener was down seen after {recovered:?}");
    assert!(version > seen);
    assert!(recovered < Duration::from_secs(3), "the lost notification was only caught at max_wait");

    // A new listener connection is up, and later changes arrive through it promptly.
    let reconnected = common::eventually(Duration::from_secs(10), || async {
        let now = listener_pids(&monitor).await;
        now.len() == 1 && now != old
    })
    .await;
    assert!(reconnected, "no new LISTEN connection");
    for status in [TenantStatus::Active, TenantStatus::Suspended, TenantStatus::Active] {
        let latency = wake_latency(&writer, &reader, "acme", status).await;
        assert!(latency < Duration::from_millis(500), "after reconnecting, a change took {latency:?}");
    }
}

#[tokio::test]
async fn without_changes_the_wait_ends_at_max_wait_with_the_version() {
    let db = common::TestDb::new().await;
    let monitor = PgPool::connect(&db.url).await.unwrap();
    let _writer = db.store().await;
    let reader = replica_listening(&db, &monitor).await;
    let seen = reader.change_version().await.unwrap();
    let started = Instant::now();
    assert_eq!(reader.wait_for_change(seen, Duration::from_millis(300)).await.unwrap(), seen);
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(290) && waited < Duration::from_secs(3), "{waited:?}");

    // "Forever" is a valid max_wait, and a stale `seen` still returns at once.
    let started = Instant::now();
    assert_eq!(reader.wait_for_change(seen - 1, Duration::MAX).await.unwrap(), seen);
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn closing_a_store_ends_its_listener() {
    let db = common::TestDb::new().await;
    let monitor = PgPool::connect(&db.url).await.unwrap();
    db.store().await.close().await;
    let reader = replica_listening(&db, &monitor).await;
    reader.close().await;
    let gone = common::eventually(Duration::from_secs(10), || async { listener_pids(&monitor).await.is_empty() }).await;
    assert!(gone, "the listener outlived its store");
    // A closed store answers Unavailable instead of waiting on a listener that is gone.
    let error = reader.wait_for_change(1, Duration::from_millis(50)).await.unwrap_err();
    assert!(error.is_transient(), "{error:?}");
}
