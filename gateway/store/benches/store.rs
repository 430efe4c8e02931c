//! `cargo bench -p sluice-store --bench store`: the store's figures for BENCHMARKS.md, printed as a
//! table — loading a snapshot of 10,000 tenants and 50,000 keys, propagation of a change to a
//! second replica (PostgreSQL NOTIFY, SQLite polling), and the usage writer's throughput (per
//! record on the request path, rows per second into each database).
//!
//! PostgreSQL: `SLUICE_TEST_POSTGRES` or `postgres://postgres@127.0.0.1:5432/test`; a scratch
//! database is created and dropped.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout, reason = "a benchmark program")]

use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_metrics::{Api, Outcome, RecordSink, RequestRecord};
use sluice_store::Backend;
use sluice_store::model::{Actor, NewTenant, UsageCounts, UsageKey};
use sluice_store::slo::Slos;
use sluice_store::usage::UsageWriter;
use sluice_store_postgres::PostgresStore;
use sluice_store_sqlite::SqliteStore;

const TENANTS: i64 = 10_000;
const KEYS_PER_TENANT: i64 = 5;

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(run());
}

async fn run() {
    println!("| figure | SQLite | PostgreSQL |");
    println!("|---|---|---|");

    let dir = tempfile::tempdir().unwrap();
    let sqlite = SqliteStore::open(&dir.path().join("bench.db")).await.unwrap();
    sqlite.migrate().await.unwrap();
    let sqlite_b = SqliteStore::open(&dir.path().join("bench.db")).await.unwrap();

    let admin =
        std::env::var("SLUICE_TEST_POSTGRES").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let name = format!("sluice_bench_{}", std::process::id());
    let admin_store = PostgresStore::connect(&admin).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(admin_store.pool()).await.unwrap();
    let url = format!("{}/{name}", admin.rsplit_once('/').unwrap().0);
    let pg = PostgresStore::connect(&url).await.unwrap();
    pg.migrate().await.unwrap();
    let pg_b = PostgresStore::connect(&url).await.unwrap();

    // 10,000 tenants with 5 keys each, inserted in bulk (the admin API would take minutes).
    sqlx::raw_sql(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10000) \
         INSERT INTO tenants (name, status, priority, created_ms, updated_ms) \
         SELECT 'tenant-' || i, 'active', 'normal', 0, 0 FROM n; \
         INSERT INTO api_keys (tenant_id, name, prefix, sha256, created_ms) \
         SELECT t.id, NULL, 'sk-…', randomblob(32), 0 FROM tenants t, (SELECT 1 UNION ALL SELECT 2 UNION ALL \
         SELECT 3 UNION ALL SELECT 4 UNION ALL SELECT 5);",
    )
    .execute(sqlite.pool())
    .await
    .unwrap();
    sqlx::raw_sql(
        "INSERT INTO tenants (name, status, priority, created_ms, updated_ms) \
         SELECT 'tenant-' || i, 'active', 'normal', 0, 0 FROM generate_series(1, 10000) i; \
         INSERT INTO api_keys (tenant_id, name, prefix, sha256, created_ms) \
         SELECT t.id, NULL, 'sk-…', sha256((t.id * 10 + k)::text::bytea), 0 FROM tenants t, generate_series(1, 5) k;",
    )
    .execute(pg.pool())
    .await
    .unwrap();

    let snapshot_sqlite = time_snapshot(&sqlite).await;
    let snapshot_pg = time_snapshot(&pg).await;
    println!(
        "| snapshot() of {TENANTS} tenants / {} keys, median of 5 | {:.0} ms | {:.0} ms |",
        TENANTS * KEYS_PER_TENANT,
        snapshot_sqlite,
        snapshot_pg
    );

    let (p50, p99) = propagation(&sqlite, &sqlite_b).await;
    let (pg50, pg99) = propagation(&pg, &pg_b).await;
    println!(
        "| change → other replica's wait_for_change, p50 / p99 (100 changes) | {p50:.1} / {p99:.1} ms | {pg50:.1} / {pg99:.1} ms |"
    );

    let per_record = record_cost();
    println!("| usage writer: one record on the request path | {per_record:.0} ns | (same) |");
    let rows_sqlite = flush_rate(&sqlite).await;
    let rows_pg = flush_rate(&pg).await;
    println!("| usage writer: rows written per second (batches of 1,000) | {rows_sqlite:.0} | {rows_pg:.0} |");

    pg.close().await;
    pg_b.close().await;
    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP DATABASE {name} WITH (FORCE)")))
        .execute(admin_store.pool())
        .await;
}

async fn time_snapshot(store: &dyn Backend) -> f64 {
    let mut times = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        let snapshot = store.snapshot().await.unwrap();
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(snapshot.tenants.len() as i64, TENANTS);
    }
    times.sort_by(f64::total_cmp);
    times[2]
}

/// From the start of a committing change on `a` to `b`'s waiter waking up; the waiter is already
/// waiting, as a replica's watcher is, and changes are spaced irregularly so that polling's phase
/// varies.
async fn propagation(a: &dyn Backend, b: &dyn Backend) -> (f64, f64) {
    let mut seen = b.change_version().await.unwrap();
    let mut delays = Vec::new();
    for i in 0..100 {
        tokio::time::sleep(Duration::from_millis(20 + (i * 37) % 150)).await;
        let started = Instant::now();
        let tenant = NewTenant { name: format!("prop-{i}"), priority: Default::default(), status: Default::default() };
        let change = async { a.create_tenant(&Actor::admin(), &tenant).await.unwrap() };
        let wait = async {
            loop {
                let version = b.wait_for_change(seen, Duration::from_secs(5)).await.unwrap();
                if version != seen {
                    return (version, Instant::now());
                }
            }
        };
        let (_, (version, woke)) = tokio::join!(change, wait);
        seen = version;
        delays.push((woke - started).as_secs_f64() * 1000.0);
    }
    delays.sort_by(f64::total_cmp);
    (delays[49], delays[98])
}

fn record_cost() -> f64 {
    let writer = UsageWriter::new(Arc::new(Slos::default()), 1_000_000);
    let tenants: Vec<Arc<str>> = (0..100).map(|i| Arc::from(format!("tenant-{i}"))).collect();
    let model: Arc<str> = Arc::from("llama-3-8b");
    let n = 1_000_000;
    let started = Instant::now();
    for i in 0..n {
        let record = RequestRecord {
            tenant: Arc::clone(&tenants[i % tenants.len()]),
            model: Arc::clone(&model),
            api: Some(Api::ChatCompletions),
            stream: true,
            pool: None,
            endpoint: None,
            status: 200,
            outcome: Outcome::Ok,
            attempts: 1,
            ttft: Some(Duration::from_millis(120)),
            tpot: Some(Duration::from_micros(9500)),
            e2e: Duration::from_millis(900),
            overhead: Duration::from_micros(80),
            prompt_tokens: 512,
            cached_tokens: 256,
            completion_tokens: 128,
            estimated: Default::default(),
            cache: None,
        };
        writer.record(&record);
    }
    started.elapsed().as_nanos() as f64 / n as f64
}

async fn flush_rate(store: &dyn Backend) -> f64 {
    let batches: i32 = 10;
    let started = Instant::now();
    for b in 0..batches {
        let deltas: Vec<(UsageKey, UsageCounts)> = (0..1000)
            .map(|i| {
                let key = UsageKey {
                    tenant: format!("tenant-{i}"),
                    model: "llama-3-8b".into(),
                    minute: 60 * (1000 + i64::from(b)),
                };
                (key, UsageCounts { requests: 3, prompt_tokens: 900, completion_tokens: 300, ..Default::default() })
            })
            .collect();
        store.add_usage(&deltas).await.unwrap();
    }
    f64::from(batches * 1000) / started.elapsed().as_secs_f64()
}
