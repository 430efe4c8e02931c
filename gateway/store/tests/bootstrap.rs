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

const SCOPED: &str = r#"
[[tenants]]
name = "acme"
api_keys = ["sk-acme-0123456789", { key = "sk-acme-batch-0001", limits = { requests_per_minute = 60 } }]
[tenants.model_limits.llama]
tokens_per_minute = 1000
[tenants.model_limits.qwen]
max_concurrency = 2
"#;

#[tokio::test]
async fn key_and_model_limits_are_imported_and_the_file_replaces_them() {
    use sluice_store::model::{ModelLimits, ScopeLimits};

    let (store, _dir) = sqlite().await;
    let config = Config::from_toml(SCOPED, &[], &|_| None).unwrap();
    let first = import(&*store, &config).await.unwrap();
    assert_eq!(first, Imported { tenants: 1, keys: 2, limits: 3, ..Imported::default() });
    assert_eq!(import(&*store, &config).await.unwrap(), Imported::default(), "a restart writes nothing");

    let detail = store.get_tenant("acme").await.unwrap();
    let rpm60 = ScopeLimits { requests_per_minute: Some(60), ..ScopeLimits::default() };
    let mut key_limits: Vec<ScopeLimits> = detail.keys.iter().map(|k| k.limits).collect();
    key_limits.sort_by_key(|l| l.requests_per_minute);
    assert_eq!(key_limits, [ScopeLimits::default(), rpm60]);
    let llama = ModelLimits {
        model: "llama".into(),
        limits: ScopeLimits { tokens_per_minute: Some(1000), ..ScopeLimits::default() },
    };
    assert_eq!(detail.model_limits.len(), 2);
    assert_eq!(detail.model_limits[0], llama);

    // Limits set through the admin API on a key the file lists without `limits` stay; the
    // file's model table is the whole truth: qwen's entry goes, a changed one is rewritten.
    let plain = detail.keys.iter().find(|k| k.limits.is_empty()).unwrap();
    store.set_key_limits(&Actor::admin(), "acme", plain.id, &rpm60).await.unwrap();
    let changed = SCOPED
        .replace("[tenants.model_limits.qwen]\nmax_concurrency = 2\n", "")
        .replace("requests_per_minute = 60", "requests_per_minute = 30");
    let config = Config::from_toml(&changed, &[], &|_| None).unwrap();
    assert_eq!(import(&*store, &config).await.unwrap(), Imported { limits: 2, ..Imported::default() });
    let detail = store.get_tenant("acme").await.unwrap();
    assert_eq!(detail.model_limits, [llama]);
    let mut rpms: Vec<Option<u64>> = detail.keys.iter().map(|k| k.limits.requests_per_minute).collect();
    rpms.sort();
    assert_eq!(rpms, [Some(30), Some(60)]);
}
