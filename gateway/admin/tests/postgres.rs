//! The same flows as `api.rs`, against PostgreSQL (127.0.0.1:5432): each test in a fresh database.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "test code")]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use common::{TOKEN, scenarios};
use sluice_store_model::Backend;
use sluice_store_postgres::PostgresStore;

const SERVER: &str = "postgres://postgres@127.0.0.1:5432";

/// A new, empty database on the test server, dropped when the test is done.
struct FreshDatabase {
    name: String,
}

async fn server() -> sqlx::PgConnection {
    use sqlx::Connection;
    sqlx::PgConnection::connect(&format!("{SERVER}/test")).await.expect("PostgreSQL at 127.0.0.1:5432, database `test`")
}

impl FreshDatabase {
    async fn create() -> FreshDatabase {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!("sluice_admin_{}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut server().await).await.unwrap();
        FreshDatabase { name }
    }

    fn url(&self) -> String {
        format!("{SERVER}/{}", self.name)
    }

    async fn drop_now(self) {
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut server().await).await.unwrap();
    }
}

async fn run<F: AsyncFnOnce(&common::Admin)>(flow: F) {
    let db = FreshDatabase::create().await;
    {
        let store = PostgresStore::connect(&db.url()).await.unwrap();
        store.migrate().await.unwrap();
        let admin = common::serve(Arc::new(store.clone()), Some(TOKEN), None).await;
        flow(&admin).await;
        drop(admin);
        store.close().await;
    }
    db.drop_now().await;
}

#[tokio::test]
async fn tenants_keys_limits_slos() {
    run(scenarios::tenants_keys_limits_slos).await;
}

#[tokio::test]
async fn pools_and_endpoints() {
    run(scenarios::pools_and_endpoints).await;
}

#[tokio::test]
async fn usage_reports() {
    run(scenarios::usage_reports).await;
}

#[tokio::test]
async fn plugins_and_bindings() {
    run(scenarios::plugins_and_bindings).await;
}

#[tokio::test]
async fn key_and_model_limits() {
    run(scenarios::key_and_model_limits).await;
}
