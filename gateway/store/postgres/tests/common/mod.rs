//! A fresh database per test, created through the server named by `SLUICE_PG_DATABASE_URL`
//! (set in `.cargo/config.toml` to the local `postgres://postgres@127.0.0.1:5432/test`) and
//! dropped when the test ends, passed or not.
//!
//! Not `#[sqlx::test]`: its PostgreSQL support reads `DATABASE_URL` at run time, the very
//! variable `sqlx.toml` keeps Sluice away from.

#![allow(dead_code, reason = "each test binary uses a part of this")]
#![allow(clippy::print_stderr, reason = "a database left behind is worth a line in the test output")]

use std::time::Duration;

use sluice_store_model::Backend;
use sluice_store_postgres::PostgresStore;
use sqlx::Connection;
use sqlx::postgres::PgConnection;

const DEFAULT_SERVER: &str = "postgres://postgres@127.0.0.1:5432/test";

pub struct TestDb {
    pub name: String,
    pub url: String,
    server: String,
}

fn server_url() -> String {
    std::env::var("SLUICE_PG_DATABASE_URL").ok().filter(|u| !u.is_empty()).unwrap_or_else(|| DEFAULT_SERVER.into())
}

/// `url` with its database name replaced (keeping any `?query`).
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let root = &base[..base.rfind('/').expect("a URL with a path")];
    match query {
        Some(q) => format!("{root}/{database}?{q}"),
        None => format!("{root}/{database}"),
    }
}

impl TestDb {
    pub async fn new() -> TestDb {
        let server = server_url();
        let name = format!("sluice_test_{:016x}", rand::random::<u64>());
        let mut conn = PgConnection::connect(&server).await.expect("the test server (SLUICE_PG_DATABASE_URL) is up");
        // The name is ours ([a-z0-9_]); identifiers cannot be bound as parameters.
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .expect("create db");
        conn.close().await.ok();
        let url = with_database(&server, &name);
        TestDb { name, url, server }
    }

    /// A store on this database, migrated.
    pub async fn store(&self) -> PostgresStore {
        let store = PostgresStore::connect(&self.url).await.expect("connect");
        store.migrate().await.expect("migrate");
        store
    }

    /// A plain connection, for looking at rows the API does not show.
    pub async fn conn(&self) -> PgConnection {
        PgConnection::connect(&self.url).await.expect("connect")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (server, name) = (self.server.clone(), self.name.clone());
        // Drop runs inside the test's runtime, which cannot be blocked on: use a thread of our own.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            runtime.block_on(async {
                let mut conn = PgConnection::connect(&server).await?;
                let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut conn).await?;
                Ok::<_, sqlx::Error>(())
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop test database {}: {dropped:?}", self.name);
        }
    }
}

/// Polls `check` until it holds or `limit` passes.
pub async fn eventually<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
