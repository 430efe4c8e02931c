//! Migrations from an empty database: idempotent, and safe when replicas start together.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr,
    reason = "test code; figures go to stderr"
)]

mod common;

use std::time::Instant;

use sluice_store_model::{Backend, PoolApi, StoreError};
use sluice_store_postgres::PostgresStore;

async fn applied(db: &common::TestDb) -> Vec<(i64, bool)> {
    let mut conn = db.conn().await;
    sqlx::query_as::<_, (i64, bool)>("SELECT version, success FROM _sqlx_migrations ORDER BY version")
        .fetch_all(&mut conn)
        .await
        .unwrap()
}

#[tokio::test]
async fn migrate_twice_from_empty() {
    let db = common::TestDb::new().await;
    let store = PostgresStore::connect(&db.url).await.unwrap();
    let started = Instant::now();
    store.migrate().await.unwrap();
    eprintln!("migrate on an empty database: {:?}", started.elapsed());
    let once = applied(&db).await;
    assert!(!once.is_empty() && once.iter().all(|(_, ok)| *ok), "{once:?}");

    let started = Instant::now();
    store.migrate().await.unwrap();
    eprintln!("migrate with nothing to do: {:?}", started.elapsed());
    assert_eq!(applied(&db).await, once);
    assert_eq!(store.change_version().await.unwrap(), 1, "the counter starts at 1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_migrating_at_once_apply_each_migration_once() {
    let db = common::TestDb::new().await;
    let replicas: Vec<PostgresStore> = {
        let mut v = Vec::new();
        for _ in 0..4 {
            v.push(PostgresStore::connect(&db.url).await.unwrap());
        }
        v
    };
    // Separate tasks on the multi-threaded runtime, so the migrations really overlap.
    let tasks: Vec<_> = replicas.iter().cloned().map(|r| tokio::spawn(async move { r.migrate().await })).collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let applied = applied(&db).await;
    let versions: Vec<i64> = applied.iter().map(|(v, _)| *v).collect();
    let mut unique = versions.clone();
    unique.dedup();
    assert_eq!(versions, unique);
    assert!(applied.iter().all(|(_, ok)| *ok));
    // Every replica sees one schema: the single change_version row, not one per migrator.
    for replica in &replicas {
        assert_eq!(replica.change_version().await.unwrap(), 1);
    }
}

#[tokio::test]
async fn pools_stored_before_their_apis_were_kept_speak_the_default() {
    let db = common::TestDb::new().await;
    let store = PostgresStore::connect(&db.url).await.unwrap();
    // The schema as the release before `pools.apis` left it, with a pool in it.
    let source = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../migrations/postgres"));
    let migrator = sqlx::migrate::Migrator::new(source).await.unwrap();
    migrator.run_to(20261206000002, store.pool()).await.unwrap();
    let mut conn = db.conn().await;
    sqlx::query("INSERT INTO pools (name, models, created_ms) VALUES ('old', '[\"m\"]', 0)")
        .execute(&mut conn)
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let old = store.get_pool("old").await.unwrap();
    assert_eq!((old.models.as_slice(), old.apis.as_slice()), (&["m".to_owned()][..], &PoolApi::DEFAULT[..]));

    // An empty list is NULL's twin; a name the binary does not know is not guessed at.
    sqlx::query("UPDATE pools SET apis = '[]' WHERE name = 'old'").execute(&mut conn).await.unwrap();
    assert_eq!(store.get_pool("old").await.unwrap().apis, PoolApi::DEFAULT);
    sqlx::query("UPDATE pools SET apis = '[\"grpc\"]' WHERE name = 'old'").execute(&mut conn).await.unwrap();
    assert!(matches!(store.get_pool("old").await, Err(StoreError::Database(_))));
}

#[tokio::test]
async fn an_unreachable_server_is_unavailable() {
    // Port 1 on loopback: nothing listens, so the connection is refused at once.
    let started = Instant::now();
    let error = PostgresStore::connect("postgres://postgres@127.0.0.1:1/nothing").await.unwrap_err();
    assert!(matches!(error, StoreError::Unavailable(_)), "{error:?}");
    assert!(error.is_transient());
    assert!(started.elapsed().as_secs() < 10, "gave up after {:?}", started.elapsed());

    let error = PostgresStore::connect("not a url").await.unwrap_err();
    assert!(matches!(error, StoreError::Invalid { field: "database_url", .. }), "{error:?}");
}
