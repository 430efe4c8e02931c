//! A fresh, migrated store on a file of its own for each test.

#![allow(dead_code, reason = "each test file uses a different part")]
#![allow(clippy::expect_used, reason = "test code")]

use std::path::{Path, PathBuf};

use sluice_store_model::Backend;
use sluice_store_sqlite::SqliteStore;
use tempfile::TempDir;

pub struct Fresh {
    pub store: SqliteStore,
    pub path: PathBuf,
    // Dropped last: removes the directory with the file in it.
    pub dir: TempDir,
}

pub async fn fresh() -> Fresh {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("data").join(sluice_store_sqlite::FILE_NAME);
    let store = open(&path).await;
    Fresh { store, path, dir }
}

pub async fn open(path: &Path) -> SqliteStore {
    let store = SqliteStore::open(path).await.expect("open");
    store.migrate().await.expect("migrate");
    store
}
