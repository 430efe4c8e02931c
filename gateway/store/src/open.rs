//! Which database, and opening it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sluice_config::DatabaseConfig;
use sluice_store_model::{Backend, StoreError};
use sluice_store_postgres::PostgresStore;
use sluice_store_sqlite::SqliteStore;

/// The embedded store's file name inside the data directory.
pub const DEFAULT_DB_FILE: &str = "sluice.db";

/// Where the state lives, for logs (never includes a password).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    Postgres { host: String },
    Sqlite { path: PathBuf },
}

impl std::fmt::Display for StoreLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreLocation::Postgres { host } => write!(f, "PostgreSQL at {host}"),
            StoreLocation::Sqlite { path } => write!(f, "SQLite file {}", path.display()),
        }
    }
}

/// Opens the configured store and, unless told not to, applies pending migrations.
pub async fn open(config: &DatabaseConfig, data_dir: &Path) -> Result<(Arc<dyn Backend>, StoreLocation), StoreError> {
    let (store, location): (Arc<dyn Backend>, StoreLocation) = match &config.url {
        Some(url) => {
            let store = PostgresStore::connect(url.expose()).await?;
            (Arc::new(store), StoreLocation::Postgres { host: host_of(url.expose()) })
        }
        None => {
            let path = data_dir.join(DEFAULT_DB_FILE);
            let store = SqliteStore::open(&path).await?;
            (Arc::new(store), StoreLocation::Sqlite { path })
        }
    };
    if config.migrate {
        store.migrate().await?;
    }
    Ok((store, location))
}

/// `postgres://user:pw@db.internal:5432/sluice` → `db.internal:5432/sluice`.
fn host_of(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    rest.split('?').next().unwrap_or(rest).to_owned()
}

#[cfg(test)]
mod tests {
    #[test]
    fn host_hides_credentials() {
        assert_eq!(super::host_of("postgres://u:secret@db:5432/sluice?sslmode=require"), "db:5432/sluice");
        assert_eq!(super::host_of("postgres://db/sluice"), "db/sluice");
    }
}
