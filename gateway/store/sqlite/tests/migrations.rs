//! The embedded migrations: up from empty, idempotent, refusing a newer schema, and the twin of
//! the PostgreSQL schema in tables, columns and indexes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "test code")]

mod common;

use std::collections::BTreeMap;

use sluice_store_model::{Backend, PoolApi, StoreError};
use sluice_store_sqlite::SqliteStore;

#[tokio::test]
async fn migrations_run_up_from_empty_and_again() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("sluice.db");
    let store = SqliteStore::open(&path).await.expect("open");
    store.migrate().await.expect("first migrate");
    let version = store.change_version().await.expect("version");
    store.migrate().await.expect("second migrate");
    assert_eq!(store.change_version().await.expect("version"), version, "migrating again changes nothing");
    let applied = sqlx::query!(r#"SELECT version, success AS "success: bool" FROM _sqlx_migrations"#)
        .fetch_all(store.pool())
        .await
        .unwrap();
    let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../migrations/sqlite")).unwrap().count();
    assert_eq!(applied.len(), files, "every migration applied");
    assert!(applied.iter().all(|m| m.success));
    let snapshot = store.snapshot().await.expect("snapshot of an empty store");
    assert!(snapshot.tenants.is_empty() && snapshot.pools.is_empty() && snapshot.plugins.is_empty());
}

#[tokio::test]
async fn a_schema_newer_than_the_binary_is_a_migration_error() {
    let fresh = common::fresh().await;
    sqlx::query!(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
         VALUES (29991231000000, 'from a newer sluice', 1, x'00', 0)"
    )
    .execute(fresh.store.pool())
    .await
    .unwrap();
    match fresh.store.migrate().await {
        Err(StoreError::Migration(message)) => assert!(message.contains("29991231000000"), "{message}"),
        other => panic!("expected a migration error, got {other:?}"),
    }
}

#[tokio::test]
async fn pools_stored_before_their_apis_were_kept_speak_the_default() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(&dir.path().join("sluice.db")).await.expect("open");
    // The schema as the release before `pools.apis` left it, with a pool in it.
    let source = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../migrations/sqlite"));
    let migrator = sqlx::migrate::Migrator::new(source).await.unwrap();
    migrator.run_to(20261206000002, store.pool()).await.unwrap();
    sqlx::query("INSERT INTO pools (name, models, created_ms) VALUES ('old', '[\"m\"]', 0)")
        .execute(store.pool())
        .await
        .unwrap();
    store.migrate().await.expect("the rest of the migrations");
    let old = store.get_pool("old").await.unwrap();
    assert_eq!((old.models.as_slice(), old.apis.as_slice()), (&["m".to_owned()][..], &PoolApi::DEFAULT[..]));

    // An empty list is NULL's twin; a name the binary does not know is not guessed at.
    sqlx::query("UPDATE pools SET apis = '[]' WHERE name = 'old'").execute(store.pool()).await.unwrap();
    assert_eq!(store.get_pool("old").await.unwrap().apis, PoolApi::DEFAULT);
    sqlx::query("UPDATE pools SET apis = '[\"grpc\"]' WHERE name = 'old'").execute(store.pool()).await.unwrap();
    assert!(matches!(store.get_pool("old").await, Err(StoreError::Database(_))));
    // The column holds JSON or nothing.
    assert!(sqlx::query("UPDATE pools SET apis = 'chat' WHERE name = 'old'").execute(store.pool()).await.is_err());
}

/// Table name → column names in order, from `CREATE TABLE` statements written one column per
/// line (as both migrations are), skipping table constraints, and from later migrations'
/// `ALTER TABLE t ADD COLUMN c …` statements (one per line), which append.
fn tables_in(sql: &str) -> BTreeMap<String, Vec<String>> {
    let mut tables: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut current: Option<(String, Vec<String>)> = None;
    for line in sql.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("ALTER TABLE ") {
            let mut words = rest.split_whitespace();
            let table = words.next().unwrap();
            if let (Some("ADD"), Some("COLUMN"), Some(column)) = (words.next(), words.next(), words.next()) {
                tables.get_mut(table).unwrap().push(column.to_owned());
            }
        } else if let Some(rest) = line.strip_prefix("CREATE TABLE ") {
            let name = rest.split_whitespace().next().unwrap();
            current = Some((name.to_owned(), Vec::new()));
        } else if line.starts_with(')') {
            if let Some((name, columns)) = current.take() {
                tables.insert(name, columns);
            }
        } else if let Some((_, columns)) = current.as_mut() {
            let first = line.split_whitespace().next().unwrap_or_default();
            if !first.is_empty() && !["PRIMARY", "UNIQUE", "CHECK", "CONSTRAINT", "--"].contains(&first) {
                columns.push(first.to_owned());
            }
        }
    }
    tables
}

fn indexes_in(sql: &str) -> Vec<String> {
    let mut names: Vec<String> = sql
        .lines()
        .filter_map(|l| l.trim().strip_prefix("CREATE INDEX "))
        .map(|rest| rest.split_whitespace().next().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn the_schema_is_the_twin_of_postgres() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../migrations/postgres");
    // Every PostgreSQL migration in order (sqlx applies them by their version prefix).
    let mut files: Vec<_> = std::fs::read_dir(root).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let postgres: String = files.iter().map(|f| std::fs::read_to_string(f).unwrap() + "\n").collect();
    let expected = tables_in(&postgres);
    assert!(expected.len() >= 10, "parsed {expected:?}");

    let fresh = common::fresh().await;
    let pool = fresh.store.pool();
    // Unchecked on purpose: sqlx cannot describe table-valued pragma functions at compile time.
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT m.name, p.name
         FROM sqlite_schema m, pragma_table_info(m.name) p
         WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' AND m.name <> '_sqlx_migrations'
         ORDER BY m.name, p.cid",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let mut actual: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (table, column) in rows {
        actual.entry(table).or_default().push(column);
    }
    assert_eq!(actual, expected);

    let mut indexes = sqlx::query_scalar!(
        r#"SELECT name AS "name!: String" FROM sqlite_schema WHERE type = 'index' AND name NOT LIKE 'sqlite_%'"#
    )
    .fetch_all(pool)
    .await
    .unwrap();
    indexes.sort();
    assert_eq!(indexes, indexes_in(&postgres));
}
