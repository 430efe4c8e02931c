//! Sluice's embedded store: one SQLite file under the data directory, the default when no
//! database URL is configured, so `sluice demo` and a first `sluice serve` need nothing
//! installed. Several gateway processes on one host may share the file: WAL lets readers run
//! beside the one writer, writers queue on a busy timeout, and replicas notice each other's
//! changes by polling the change version.

mod audit;
mod backend;
mod codec;
mod error;
mod keys;
mod model_limits;
mod ownership;
mod plugins;
mod pools;
mod snapshot;
mod tenants;
mod usage;
mod write;

use std::path::Path;
use std::time::Duration;

use sluice_store_model::StoreError;
use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

/// The schema, embedded in the binary; `migrations/sqlite/` is the twin of `migrations/postgres/`.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../../migrations/sqlite");

/// How long a statement waits for another connection or process holding the write lock
/// before it fails with `Unavailable`. Mutations are short, so a few seconds covers a queue of
/// them; usage batches of thousands of rows take milliseconds.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// One writer at a time is all SQLite allows, so a handful of connections is enough for
/// readers (snapshots, admin lists) to run beside it.
const MAX_CONNECTIONS: u32 = 4;

/// The file name under the data directory.
pub const FILE_NAME: &str = "sluice.db";

#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating it and its parent directories if needed) the database file at `path`.
    /// Call [`sluice_store_model::Backend::migrate`] before use.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| StoreError::Unavailable(format!("cannot create {}: {e}", parent.display())))?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // With WAL, NORMAL loses at most the last commits on power loss, never consistency;
            // the fsync per commit that FULL adds would dominate every admin write.
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        // Switching a new file to WAL takes an exclusive lock, and SQLite reports a conflict
        // there at once rather than through the busy timeout; two replicas starting together on
        // one file would see it. So "busy" is retried here, for as long as the busy timeout.
        let give_up = tokio::time::Instant::now() + BUSY_TIMEOUT;
        let mut pause = Duration::from_millis(5);
        let pool = loop {
            match SqlitePoolOptions::new().max_connections(MAX_CONNECTIONS).connect_with(options.clone()).await {
                Ok(pool) => break pool,
                Err(e) if error::is_busy(&e) && tokio::time::Instant::now() + pause < give_up => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(200));
                }
                // Whatever SQLite says about a file it cannot open, the store is not there to use.
                Err(e) => return Err(StoreError::Unavailable(format!("cannot open {}: {e}", path.display()))),
            }
        };
        Ok(SqliteStore { pool })
    }

    /// Wraps a pool the caller configured; it should enable foreign keys and a busy timeout as
    /// [`SqliteStore::open`] does, or deletes will not cascade and writers will not wait.
    pub fn from_pool(pool: SqlitePool) -> Self {
        SqliteStore { pool }
    }

    /// The pool underneath, for tests and tools that look at the file directly; changes made
    /// through it bypass the audit log and the change version.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Closes every connection, so that the file can be moved or reopened.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}
