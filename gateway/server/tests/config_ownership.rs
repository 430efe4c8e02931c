//! The config file owns what it declares (issue 22, finding 4): a key, tenant or endpoint
//! removed from the file stops serving after a reload and after a restart, a changed model list
//! takes effect, what the admin API made survives both, each change is reported, and the admin
//! API cannot delete what the file owns.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests fail loudly")]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use http::Method;
use serde_json::{Value, json};
use sluice_config::Config;
use sluice_server::{Running, Sluice};
use sluice_sim::{SimConfig, SimHandle, SimWorker};
use sluice_store::Backend;
use sluice_store::model::AuditQuery;
use sluice_test_support::{
    ADMIN_TOKEN, MODEL, TestClient, fresh_postgres, fresh_sqlite, full_body, read_whole, request, wait_until_async,
};
use tokio::net::TcpListener;

const KEEP: &str = "sk-acme-keep-0123456789";
const DROP: &str = "sk-acme-drop-0123456789";
const BETA: &str = "sk-beta-0123456789";
const SECOND_MODEL: &str = "model-two";
const ADMIN_MODEL: &str = "admin-model";

fn scratch() -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "sluice-ownership-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn sim() -> SimHandle {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let models = [MODEL, SECOND_MODEL, ADMIN_MODEL].map(str::to_owned).to_vec();
    SimWorker::start(SimConfig { models, ..SimConfig::default() }, listener).await.unwrap()
}

/// The first file: pool `sim` serving MODEL on workers `a` and `b`; tenant `acme` with two
/// keys, tenant `beta` with one.
fn before(a: &SimHandle, b: &SimHandle) -> String {
    format!(
        "[admin]\ntoken = \"{ADMIN_TOKEN}\"\n\n\
         [[pools]]\nname = \"sim\"\nmodels = [\"{MODEL}\"]\n\
         endpoints = [{{ url = \"{}\", name = \"sim-a\" }}, {{ url = \"{}\", name = \"sim-b\" }}]\n\n\
         [[tenants]]\nname = \"acme\"\napi_keys = [\"{KEEP}\", \"{DROP}\"]\n\n\
         [[tenants]]\nname = \"beta\"\napi_keys = [\"{BETA}\"]\n",
        a.base_url(),
        b.base_url()
    )
}

/// The second: worker `b`, tenant `beta` and the key DROP gone; the pool serves a second model.
fn after(a: &SimHandle) -> String {
    format!(
        "[admin]\ntoken = \"{ADMIN_TOKEN}\"\n\n\
         [[pools]]\nname = \"sim\"\nmodels = [\"{MODEL}\", \"{SECOND_MODEL}\"]\n\
         endpoints = [{{ url = \"{}\", name = \"sim-a\" }}]\n\n\
         [[tenants]]\nname = \"acme\"\napi_keys = [\"{KEEP}\"]\n",
        a.base_url()
    )
}

async fn start(path: &Path, store: &Arc<dyn Backend>) -> Running {
    let config = Config::load(Some(path)).unwrap_or_else(|e| panic!("{e}"));
    let sluice = Sluice::build_with_store(config, Arc::clone(store), Vec::new(), None)
        .await
        .unwrap()
        .with_config_file(Some(path.to_owned()));
    let data = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    sluice.start_on(data, admin).unwrap()
}

async fn chat(running: &Running, key: &str, model: &str) -> u16 {
    let body = json!({"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2});
    let url = format!("{}/v1/chat/completions", running.base_url());
    TestClient::http1().post_json_whole(&url, Some(key), &body).await.status.as_u16()
}

async fn admin(running: &Running, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let bytes = body.map(|b| serde_json::to_vec(&b).unwrap()).unwrap_or_default();
    let mut req = request(method, &format!("{}{path}", running.admin_url()), Some(ADMIN_TOKEN), full_body(bytes));
    req.headers_mut().insert("content-type", "application/json".parse().unwrap());
    let reply = read_whole(TestClient::http1().send(req).await).await;
    let value = if reply.body.is_empty() { Value::Null } else { reply.json() };
    (reply.status.as_u16(), value)
}

/// What the admin API adds next to the file: tenant `gamma` with a key, a key of the file's
/// tenant `acme`, and pool `extra` (ADMIN_MODEL) on worker `c`. Returns the two keys.
async fn admin_additions(running: &Running, c: &SimHandle) -> (String, String) {
    assert_eq!(admin(running, Method::POST, "/admin/api/tenants", Some(json!({"name": "gamma"}))).await.0, 201);
    let (status, gamma) = admin(running, Method::POST, "/admin/api/tenants/gamma/keys", Some(json!({}))).await;
    assert_eq!(status, 201, "{gamma}");
    let (status, acme) = admin(running, Method::POST, "/admin/api/tenants/acme/keys", Some(json!({}))).await;
    assert_eq!(status, 201, "{acme}");
    let pool = json!({"name": "extra", "models": [ADMIN_MODEL]});
    assert_eq!(admin(running, Method::POST, "/admin/api/pools", Some(pool)).await.0, 201);
    let endpoint = json!({"name": "c", "url": c.base_url()});
    let (status, body) = admin(running, Method::POST, "/admin/api/pools/extra/endpoints", Some(endpoint)).await;
    assert_eq!(status, 201, "{body}");
    let (gamma, acme) = (gamma["key"].as_str().unwrap().to_owned(), acme["key"].as_str().unwrap().to_owned());
    let served = wait_until_async(Duration::from_secs(5), || async {
        chat(running, &gamma, ADMIN_MODEL).await == 200 && chat(running, &acme, MODEL).await == 200
    })
    .await;
    assert!(served, "the admin API's tenant, key and pool serve");
    (gamma, acme)
}

/// After the second file applies: what it dropped is refused or idle, what it kept and what
/// the admin API made serve, and the new model list holds.
async fn assert_second_file_in_force(running: &Running, b: &SimHandle, gamma: &str, acme_admin: &str) {
    assert_eq!(chat(running, DROP, MODEL).await, 401, "a key removed from the file is refused");
    assert_eq!(chat(running, BETA, MODEL).await, 401, "a tenant removed from the file is gone");
    assert_eq!(chat(running, KEEP, MODEL).await, 200);
    assert_eq!(chat(running, KEEP, SECOND_MODEL).await, 200, "the pool's new model list applies");
    assert_eq!(chat(running, gamma, ADMIN_MODEL).await, 200, "the admin API's tenant and pool survive");
    assert_eq!(chat(running, acme_admin, MODEL).await, 200, "an admin key of a file tenant survives");
    let sent = b.stats().requests_received;
    for _ in 0..8 {
        assert_eq!(chat(running, KEEP, MODEL).await, 200);
    }
    assert_eq!(b.stats().requests_received, sent, "an endpoint removed from the file gets no traffic");
}

async fn first_file_serves(running: &Running, b: &SimHandle) {
    for key in [KEEP, DROP, BETA] {
        assert_eq!(chat(running, key, MODEL).await, 200, "{key}");
    }
    assert_eq!(chat(running, KEEP, SECOND_MODEL).await, 404, "the pool does not serve the second model yet");
    // Both workers take turns: `b` gets traffic while the file names it.
    let sent = b.stats().requests_received;
    for _ in 0..4 {
        assert_eq!(chat(running, KEEP, MODEL).await, 200);
    }
    assert!(b.stats().requests_received > sent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_removes_what_the_file_dropped_and_keeps_what_the_admin_api_made() {
    let (a, b, c) = (sim().await, sim().await, sim().await);
    let dir = scratch();
    let path = dir.join("sluice.toml");
    std::fs::write(&path, before(&a, &b)).unwrap();
    let (store, _store_dir) = fresh_sqlite().await;
    let running = start(&path, &store).await;
    first_file_serves(&running, &b).await;
    let (gamma, acme_admin) = admin_additions(&running, &c).await;

    // The admin API may not delete what the file owns: the next reload would bring it back.
    let (status, body) = admin(&running, Method::DELETE, "/admin/api/tenants/acme", None).await;
    assert_eq!(status, 409, "{body}");
    assert!(body.to_string().contains("config file"), "{body}");
    let (status, body) = admin(&running, Method::DELETE, "/admin/api/pools/sim/endpoints/sim-b", None).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(admin(&running, Method::DELETE, "/admin/api/pools/sim", None).await.0, 409);

    std::fs::write(&path, after(&a)).unwrap();
    let report = running.reload().await.unwrap();
    let drop_prefix = sluice_store::model::keys::display_prefix(DROP);
    let expected = [
        format!("store: pool \"sim\" now serves [\"{MODEL}\", \"{SECOND_MODEL}\"]"),
        "store: endpoint \"sim-b\" removed from pool \"sim\": no longer in the config file".to_owned(),
        format!("store: key {drop_prefix} of tenant \"acme\" revoked: no longer in the config file"),
        "store: tenant \"beta\" deleted with its keys, limits and SLOs: no longer in the config file".to_owned(),
    ];
    let store_lines: Vec<&String> = report.applied.iter().filter(|l| l.starts_with("store:")).collect();
    assert_eq!(store_lines, expected.iter().collect::<Vec<_>>(), "one line per change: {:?}", report.applied);
    // The reload applies the store's snapshot before it answers: no waiting here.
    assert_second_file_in_force(&running, &b, &gamma, &acme_admin).await;

    // The same file again changes nothing.
    let report = running.reload().await.unwrap();
    assert!(!report.applied.iter().any(|l| l.starts_with("store:")), "{:?}", report.applied);

    running.shutdown().await;
    for sim in [a, b, c] {
        sim.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_removes_what_the_file_dropped_and_keeps_what_the_admin_api_made() {
    let (a, b, c) = (sim().await, sim().await, sim().await);
    let dir = scratch();
    let path = dir.join("sluice.toml");
    std::fs::write(&path, before(&a, &b)).unwrap();
    // PostgreSQL here (SQLite above), so both stores' ownership columns are exercised.
    let pg = fresh_postgres().await;
    let store = pg.connect().await;
    let running = start(&path, &store).await;
    first_file_serves(&running, &b).await;
    let (gamma, acme_admin) = admin_additions(&running, &c).await;
    running.shutdown().await;

    std::fs::write(&path, after(&a)).unwrap();
    let running = start(&path, &store).await;
    assert_second_file_in_force(&running, &b, &gamma, &acme_admin).await;

    // Each removal is in the audit log as the config file's.
    let audit = store.audit_log(&AuditQuery { limit: 100, before: None }).await.unwrap();
    let by_file: Vec<(&str, &str)> = audit
        .iter()
        .filter(|e| e.actor == "bootstrap" && !e.action.starts_with("plugin."))
        .filter(|e| !e.action.ends_with(".create") && e.action != "endpoint.add")
        .map(|e| (e.action.as_str(), e.target.as_str()))
        .collect();
    assert_eq!(by_file.len(), 4, "{by_file:?}");
    for (action, target) in
        [("pool.set_models", "pool/sim"), ("endpoint.remove", "pool/sim/endpoint/sim-b"), ("tenant.delete", "beta")]
    {
        assert!(by_file.contains(&(action, target)), "{action} {target}: {by_file:?}");
    }
    assert!(by_file.iter().any(|(action, target)| *action == "key.revoke" && target.starts_with("acme/key/")));

    running.shutdown().await;
    for sim in [a, b, c] {
        sim.shutdown().await;
    }
}
