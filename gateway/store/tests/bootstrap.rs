//! The config file's tenants and pools, reconciled into a real (SQLite) store: what the file
//! states is written, what it owned and dropped is removed, what the admin API made stays, and
//! a store written before ownership was recorded is adopted from its audit log.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests fail loudly")]

use std::sync::Arc;

use sluice_config::Config;
use sluice_store::Backend;
use sluice_store::StoreError;
use sluice_store::bootstrap::{Change, Notice, Reconciled, reconcile as import};
use sluice_store::model::keys::display_prefix;
use sluice_store::model::{Actor, AuditQuery, EngineFlavor, NewEndpoint, NewKey, NewTenant, PoolApi};
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

/// Each change as a short mark (`+` created, `~` changed, `-` removed, `@` adopted), so the
/// tests read as what happened in order.
fn kinds(reconciled: &Reconciled) -> Vec<&'static str> {
    reconciled
        .changes
        .iter()
        .map(|change| match change {
            Change::TenantCreated { .. } => "tenant+",
            Change::TenantAdopted { .. } => "tenant@",
            Change::TenantUpdated { .. } => "tenant~",
            Change::TenantRemoved { .. } => "tenant-",
            Change::KeyCreated { .. } => "key+",
            Change::KeyAdopted { .. } => "key@",
            Change::KeyLimitsSet { .. } => "key~",
            Change::KeyRevoked { .. } => "key-",
            Change::PoolCreated { .. } => "pool+",
            Change::PoolAdopted { .. } => "pool@",
            Change::PoolModelsChanged { .. } => "pool~",
            Change::PoolApisChanged { .. } => "apis~",
            Change::PoolRemoved { .. } => "pool-",
            Change::EndpointAdded { .. } => "endpoint+",
            Change::EndpointReplaced { .. } => "endpoint~",
            Change::EndpointAdopted { .. } => "endpoint@",
            Change::EndpointRemoved { .. } => "endpoint-",
        })
        .collect()
}

async fn sqlite() -> (Arc<dyn Backend>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("sluice.db")).await.unwrap();
    store.migrate().await.unwrap();
    (Arc::new(store), dir)
}

#[tokio::test]
async fn import_is_idempotent_and_the_file_wins_for_what_it_states() {
    let (store, _dir) = sqlite().await;
    let config = Config::from_toml(CONFIG, &[], &|_| None).unwrap();
    let first = import(&*store, &config).await.unwrap();
    assert_eq!(kinds(&first), ["tenant+", "tenant~", "key+", "pool+", "endpoint+"]);
    let audit = store.audit_log(&AuditQuery { limit: 1000, before: None }).await.unwrap().len();

    // A restart changes nothing and writes no audit rows.
    assert_eq!(import(&*store, &config).await.unwrap(), Reconciled::default());
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
    assert_eq!(kinds(&import(&*store, &moved).await.unwrap()), ["endpoint~"]);
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

#[tokio::test]
async fn a_pools_apis_are_the_files() {
    let (store, _dir) = sqlite().await;
    let with_apis = CONFIG.replace("models = [\"llama\"]", "models = [\"llama\"]\napis = [\"messages\", \"chat\"]");
    let config = Config::from_toml(&with_apis, &[], &|_| None).unwrap();
    assert_eq!(kinds(&import(&*store, &config).await.unwrap()), ["tenant+", "tenant~", "key+", "pool+", "endpoint+"]);
    assert_eq!(store.get_pool("gpu").await.unwrap().apis, [PoolApi::Chat, PoolApi::Messages]);
    assert_eq!(import(&*store, &config).await.unwrap(), Reconciled::default(), "a restart writes nothing");

    // The admin API may change them; the file's list comes back with the next reload.
    store.set_pool_apis(&Actor::admin(), "gpu", &[PoolApi::Responses]).await.unwrap();
    assert_eq!(kinds(&import(&*store, &config).await.unwrap()), ["apis~"]);
    assert_eq!(store.get_pool("gpu").await.unwrap().apis, [PoolApi::Chat, PoolApi::Messages]);

    // A file that names none states the default.
    let config = Config::from_toml(CONFIG, &[], &|_| None).unwrap();
    let reconciled = import(&*store, &config).await.unwrap();
    assert_eq!(kinds(&reconciled), ["apis~"]);
    assert_eq!(reconciled.changes[0].to_string(), r#"pool "gpu" now speaks ["chat", "completions", "embeddings"]"#);
    assert_eq!(store.get_pool("gpu").await.unwrap().apis, PoolApi::DEFAULT);
}

#[tokio::test]
async fn an_endpoints_engine_is_the_files() {
    let (store, _dir) = sqlite().await;
    let config = Config::from_toml(CONFIG, &[], &|_| None).unwrap();
    import(&*store, &config).await.unwrap();
    assert_eq!(store.get_pool("gpu").await.unwrap().endpoints[0].flavor, EngineFlavor::Vllm, "the default");

    // Another engine behind the same URL is read another way: the endpoint is replaced.
    let sglang = CONFIG.replace(r#"name = "w1" }"#, r#"name = "w1", engine = "sglang" }"#);
    let config = Config::from_toml(&sglang, &[], &|_| None).unwrap();
    assert_eq!(kinds(&import(&*store, &config).await.unwrap()), ["endpoint~"]);
    assert_eq!(store.get_pool("gpu").await.unwrap().endpoints[0].flavor, EngineFlavor::Sglang);
    assert_eq!(import(&*store, &config).await.unwrap(), Reconciled::default(), "a restart writes nothing");

    let error =
        Config::from_toml(&CONFIG.replace(r#"name = "w1" }"#, r#"name = "w1", engine = "tgi" }"#), &[], &|_| None)
            .unwrap_err()
            .to_string();
    assert!(error.starts_with(r#"pools[0].endpoints[0].engine: "tgi" is not one of"#), "{error}");
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
    assert_eq!(kinds(&first), ["tenant+", "tenant~", "tenant~", "key+", "key+", "key~"]);
    assert_eq!(import(&*store, &config).await.unwrap(), Reconciled::default(), "a restart writes nothing");

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
    assert_eq!(kinds(&import(&*store, &config).await.unwrap()), ["tenant~", "key~"]);
    let detail = store.get_tenant("acme").await.unwrap();
    assert_eq!(detail.model_limits, [llama]);
    let mut rpms: Vec<Option<u64>> = detail.keys.iter().map(|k| k.limits.requests_per_minute).collect();
    rpms.sort();
    assert_eq!(rpms, [Some(30), Some(60)]);
}

const OWNED: &str = r#"
[[pools]]
name = "gpu"
models = ["llama"]
endpoints = [{ url = "http://10.0.0.1:8000", name = "w1" }, { url = "http://10.0.0.2:8000", name = "w2" }]

[[tenants]]
name = "acme"
api_keys = ["sk-acme-0123456789", "sk-acme-9876543210"]

[[tenants]]
name = "beta"
api_keys = ["sk-beta-0123456789"]
"#;

/// A file that names only a tenant of its own (a file that names nothing removes nothing).
const ANOTHER: &str = "[[tenants]]\nname = \"delta\"\napi_keys = [\"sk-delta-0123456789\"]\n";

fn config(text: &str) -> Config {
    Config::from_toml(text, &[], &|_| None).unwrap()
}

#[tokio::test]
async fn the_file_removes_what_it_dropped_and_nothing_the_admin_api_made() {
    let (store, _dir) = sqlite().await;
    import(&*store, &config(OWNED)).await.unwrap();
    // Made through the admin API: a tenant, a key of the file's tenant, an endpoint of its pool.
    let admin = Actor::admin();
    store.create_tenant(&admin, &NewTenant { name: "gamma".into(), ..tenant() }).await.unwrap();
    let key = NewKey {
        name: None,
        prefix: "sk-admin".into(),
        digest: sluice_store::model::keys::KeyDigest::of("sk-admin-0123456789"),
    };
    let admin_key = store.create_key(&admin, "acme", &key).await.unwrap();
    let endpoint = NewEndpoint {
        name: "w9".into(),
        url: "http://10.0.0.9:8000".into(),
        flavor: Default::default(),
        weight: 1,
        http2: false,
    };
    store.add_endpoint(&admin, "gpu", &endpoint).await.unwrap();

    let smaller = OWNED
        .replace(", { url = \"http://10.0.0.2:8000\", name = \"w2\" }", "")
        .replace(", \"sk-acme-9876543210\"", "")
        .replace("models = [\"llama\"]", "models = [\"llama\", \"qwen\"]")
        .replace("[[tenants]]\nname = \"beta\"\napi_keys = [\"sk-beta-0123456789\"]\n", "");
    let done = import(&*store, &config(&smaller)).await.unwrap();
    assert_eq!(kinds(&done), ["pool~", "endpoint-", "key-", "tenant-"]);
    let lines: Vec<String> = done.changes.iter().map(ToString::to_string).collect();
    let revoked = format!(
        "key {} of tenant \"acme\" revoked: no longer in the config file",
        display_prefix("sk-acme-9876543210")
    );
    assert!(lines.contains(&revoked), "{lines:?}");
    assert!(done.notices.is_empty());

    let acme = store.get_tenant("acme").await.unwrap();
    let live: Vec<i64> = acme.keys.iter().filter(|k| k.revoked_at.is_none()).map(|k| k.id).collect();
    assert_eq!(live.len(), 2, "the file's remaining key and the admin API's");
    assert!(live.contains(&admin_key.id));
    assert!(matches!(store.get_tenant("beta").await, Err(StoreError::NotFound { .. })));
    assert!(store.get_tenant("gamma").await.is_ok());
    let pool = store.get_pool("gpu").await.unwrap();
    assert_eq!(pool.models, ["llama", "qwen"]);
    let names: Vec<&str> = pool.endpoints.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["w1", "w9"]);
    assert_eq!(import(&*store, &config(&smaller)).await.unwrap(), Reconciled::default(), "nothing left to do");

    // A file that declares only another tenant: everything the earlier file made goes, the
    // admin API's stays.
    let done = import(&*store, &config(ANOTHER)).await.unwrap();
    assert!(kinds(&done).ends_with(&["pool-", "tenant-"]), "{:?}", kinds(&done));
    let snapshot = store.snapshot().await.unwrap();
    let tenants: Vec<&str> = snapshot.tenants.iter().map(|t| t.tenant.name.as_str()).collect();
    assert!(tenants.contains(&"gamma") && tenants.contains(&"delta") && tenants.len() == 2, "{tenants:?}");
    assert!(snapshot.pools.is_empty(), "the pool went with the file, and the admin API's endpoint in it");
}

#[tokio::test]
async fn a_file_that_declares_nothing_removes_nothing() {
    // A replica started without its file must not revoke every key the file gave out.
    let (store, _dir) = sqlite().await;
    import(&*store, &config(OWNED)).await.unwrap();
    let done = import(&*store, &config("")).await.unwrap();
    assert!(done.changes.is_empty(), "{:?}", kinds(&done));
    let acme = store.get_tenant("acme").await.unwrap();
    assert!(acme.keys.iter().all(|k| k.revoked_at.is_none()));
    assert!(store.get_tenant("beta").await.is_ok());
}

#[tokio::test]
async fn a_revoked_key_stays_revoked_and_what_the_file_names_is_adopted() {
    let (store, _dir) = sqlite().await;
    let admin = Actor::admin();
    // The admin API made `acme` before the file named it.
    store.create_tenant(&admin, &NewTenant { name: "acme".into(), ..tenant() }).await.unwrap();
    let done = import(&*store, &config(OWNED)).await.unwrap();
    assert_eq!(kinds(&done), ["tenant@", "key+", "key+", "tenant+", "key+", "pool+", "endpoint+", "endpoint+"]);

    // Revoked out of band (admin API, `sluice revoke-key`): the file listing it does not bring it back.
    let acme = store.get_tenant("acme").await.unwrap();
    let prefix = display_prefix("sk-acme-0123456789");
    let key = acme.keys.iter().find(|k| k.prefix == prefix).unwrap();
    store.revoke_key(&Actor::cli(), "acme", key.id).await.unwrap();
    let again = import(&*store, &config(OWNED)).await.unwrap();
    assert!(again.changes.is_empty(), "{:?}", again.changes);
    assert_eq!(again.notices, [Notice::KeyRevoked { tenant: "acme".into(), prefix }]);
    let snapshot = store.snapshot().await.unwrap();
    let acme = snapshot.tenants.iter().find(|t| t.tenant.name == "acme").unwrap();
    assert!(acme.keys.iter().all(|k| k.id != key.id), "the revoked key does not serve");

    // Now the file owns `acme`: dropping it from the file deletes it.
    let done = import(&*store, &config(ANOTHER)).await.unwrap();
    assert!(done.changes.contains(&Change::TenantRemoved { tenant: "acme".into() }), "{:?}", done.changes);
}

#[tokio::test]
async fn replicas_reconciling_one_file_at_once_agree() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluice.db");
    let first = SqliteStore::open(&path).await.unwrap();
    first.migrate().await.unwrap();
    let second = SqliteStore::open(&path).await.unwrap();
    import(&first, &config(OWNED)).await.unwrap();
    let smaller = config(&OWNED.replace(", \"sk-acme-9876543210\"", "").replace("name = \"w2\"", "name = \"w3\""));
    let (a, b) = tokio::join!(import(&first, &smaller), import(&second, &smaller));
    let (a, b) = (a.unwrap(), b.unwrap());
    let mut all: Vec<&str> = kinds(&a).into_iter().chain(kinds(&b)).collect();
    all.sort_unstable();
    // Both may report the revocation (revoking a revoked key answers as if it had revoked it);
    // everything else is done, and reported, by one of them.
    all.dedup_by(|x, y| *x == "key-" && *y == "key-");
    assert_eq!(all, ["endpoint+", "endpoint-", "key-"], "each change made once: {a:?} {b:?}");
    assert_eq!(import(&first, &smaller).await.unwrap(), Reconciled::default());
}

/// A store the import wrote before ownership was recorded: the migration hands the file what
/// the audit log says it created, and nothing else.
#[tokio::test]
async fn the_migration_adopts_what_the_audit_log_says_the_file_made() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluice.db");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations/sqlite");
    let older = dir.path().join("older");
    std::fs::create_dir(&older).unwrap();
    for entry in std::fs::read_dir(&root).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name().to_string_lossy().as_ref() < "20261206000002" {
            std::fs::copy(entry.path(), older.join(entry.file_name())).unwrap();
        }
    }
    let store = SqliteStore::open(&path).await.unwrap();
    sqlx::migrate::Migrator::new(older.as_path()).await.unwrap().run(store.pool()).await.unwrap();
    // What the import and the admin API wrote then: rows and their audit entries.
    sqlx::raw_sql(
        "INSERT INTO tenants (name, created_ms, updated_ms) VALUES ('acme', 1, 1), ('gamma', 1, 1), ('again', 1, 1);
         INSERT INTO api_keys (tenant_id, name, prefix, sha256, created_ms)
             VALUES (1, 'bootstrap', 'sk-acme-012', randomblob(32), 1), (1, NULL, 'sk-admin', randomblob(32), 1);
         INSERT INTO pools (name, models, created_ms) VALUES ('gpu', '[\"llama\"]', 1);
         INSERT INTO endpoints (pool_id, name, url, created_ms) VALUES (1, 'w1', 'http://10.0.0.1:8000', 1),
             (1, 'w9', 'http://10.0.0.9:8000', 1);
         INSERT INTO audit_log (at_ms, actor, action, target) VALUES
             (1, 'bootstrap', 'tenant.create', 'acme'), (1, 'admin', 'tenant.create', 'gamma'),
             (1, 'bootstrap', 'tenant.create', 'again'), (1, 'admin', 'tenant.delete', 'again'),
             (2, 'admin', 'tenant.create', 'again'),
             (1, 'bootstrap', 'key.create', 'acme/key/1'), (1, 'admin', 'key.create', 'acme/key/2'),
             (1, 'bootstrap', 'pool.create', 'pool/gpu'), (1, 'bootstrap', 'endpoint.add', 'pool/gpu/endpoint/w1'),
             (1, 'admin', 'endpoint.add', 'pool/gpu/endpoint/w9');",
    )
    .execute(store.pool())
    .await
    .unwrap();
    store.migrate().await.unwrap();
    let owned = store.config_owned().await.unwrap();
    assert_eq!(owned.tenants, ["acme"], "a name the admin API re-created last is the admin API's");
    assert_eq!(owned.keys.iter().map(|k| k.id).collect::<Vec<_>>(), [1]);
    assert_eq!(owned.pools, ["gpu"]);
    assert_eq!(owned.endpoints, [("gpu".to_owned(), "w1".to_owned())]);
}

fn tenant() -> NewTenant {
    NewTenant { name: String::new(), priority: Default::default(), status: Default::default() }
}
