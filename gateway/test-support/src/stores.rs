//! A fresh, migrated store for each test: a new PostgreSQL database on the local server, or a
//! new SQLite file in a temporary directory.

use std::sync::Arc;

use sluice_store::Backend;
use sluice_store_postgres::PostgresStore;
use sluice_store_sqlite::SqliteStore;

/// Where tests find PostgreSQL: `SLUICE_TEST_POSTGRES` or the local server's `test` database.
fn admin_url() -> String {
    std::env::var("SLUICE_TEST_POSTGRES").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A database created for one test (dropped by the next run's clean-up, not on drop: a test
/// that fails leaves its data to look at).
pub struct FreshPostgres {
    pub url: String,
    pub name: String,
}

impl FreshPostgres {
    /// The same database through another host and port (a [`crate::Link`], say).
    pub fn url_via(&self, addr: std::net::SocketAddr) -> String {
        format!("postgres://postgres@{addr}/{}", self.name)
    }

    pub async fn connect(&self) -> Arc<dyn Backend> {
        let store = PostgresStore::connect(&self.url).await.expect("connect to the test database");
        store.migrate().await.expect("migrate the test database");
        Arc::new(store)
    }
}

pub async fn fresh_postgres() -> FreshPostgres {
    let admin = admin_url();
    let store = PostgresStore::connect(&admin).await.expect("PostgreSQL must be running for the store tests");
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let name = format!("sluice_it_{}_{}", std::process::id(), nanos % 1_000_000_000_000);
    // A database name cannot be a bind parameter; this one is generated here, never input.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(store.pool())
        .await
        .expect("create the test database");
    store.close().await;
    let base = admin.rsplit_once('/').map_or(admin.as_str(), |(base, _)| base).to_owned();
    FreshPostgres { url: format!("{base}/{name}"), name }
}

/// A migrated SQLite store in a new temporary directory (kept alive with the store).
pub async fn fresh_sqlite() -> (Arc<dyn Backend>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(&dir.path().join("sluice.db")).await.expect("open sqlite");
    store.migrate().await.expect("migrate sqlite");
    (Arc::new(store), dir)
}
