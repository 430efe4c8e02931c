//! The config file's tenants and pools, imported into a real (SQLite) store.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests fail loudly")]

use std::sync::Arc;

use sluice_config::Config;
use sluice_store::Backend;
use sluice_store::bootstrap::{Imported, import};
use sluice_store::model::{Actor, AuditQuery, NewTenant};
use sluice_store_sqlite::SqliteStore;

const CONFIG: &str = r#"
[[pools]]
name = "gpu"
models = ["llama"]
endpoints = [{ url = "http://10.0.0.1:8000", name = "w1" }]

[[tenants]]
name = "acme"
api_keys = ["sk-acme-0123456789"]
priority = "high"
[tenants.limits]
max_concurrency = 4
"#;

async fn sqlite() -> (Arc<dyn Backend>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("sluice.db")).await.unwrap();
    store.migrate().await.unwrap();
    (Arc::new(store), dir)
}

#[tokio::test]
async fn import_is_idempotent_and_the_file_wins_only_for_what_it_states() {
    let (store, _dir) = sqlite().await;
    let config = Config::from_toml(CONFIG, &[], &|_| None).unwrap();
    let first = import(&*store, &config).await.unwrap();
    assert_eq!(first, Imported { tenants: 1, keys: 1, limits: 1, pools: 1, endpoints: 1 });
    let audit = store.audit_log(&AuditQuery { limit: 1000, before: None }).await.unwrap().len();

    // A restart changes nothing and writes no audit rows.
    assert_eq!(import(&*store, &config).await.unwrap(), Imported::default());
    assert_eq!(store.audit_log(&AuditQuery { limit: 1000, before: None }).await.unwrap().len(), audit);

    // Admin-made state is left alone; a moved endpoint is replaced.
    store
        .create_tenant(
            &Actor::admin(),
            &NewTenant { name: "beta".into(), priority: Default::default(), status: Default::default() },
        )
        .await
        .unwrap();
    let moved = Config::from_toml(&CONFIG.replace("10.0.0.1", "10.0.0.2"), &[], &|_| None).unwrap();
    assert_eq!(import(&*store, &moved).await.unwrap(), Imported { endpoints: 1, ..Imported::default() });
    let pool = store.get_pool("gpu").await.unwrap();
    assert_eq!(pool.endpoints.len(), 1);
    assert_eq!(pool.endpoints[0].url, "http://10.0.0.2:8000");
    let snapshot = store.snapshot().await.unwrap();
    assert_eq!(snapshot.tenants.len(), 2);
    let acme = snapshot.tenants.iter().find(|t| t.tenant.name == "acme").unwrap();
    assert_eq!(acme.limits.max_concurrency, Some(4));
    assert_eq!(acme.keys.len(), 1);
    assert!(!acme.keys[0].prefix.contains("0123456789"), "the display prefix gives little of a short key away");
}
