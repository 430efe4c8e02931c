//! Reloading the config file while serving: through the admin API (a tenant the file adds
//! serves at once, an invalid file is refused with 400 naming the field and the old config keeps
//! serving, streams in flight are not disturbed), the TLS certificate re-read from its files on
//! reload and by the file watch (new connections get the new certificate, open ones keep
//! theirs, a broken pair is refused), and `[[plugins]]` bindings changed in the file.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests fail loudly")]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use http::Method;
use serde_json::{Value, json};
use sluice_config::Config;
use sluice_server::{Running, Sluice};
use sluice_sim::{Faults, SimConfig, SimHandle, SimWorker};
use sluice_test_support::{
    ADMIN_TOKEN, MODEL, TENANT, TENANT_KEY, TestCa, TestClient, chat_body, fresh_sqlite, full_body, read_whole,
    request, wait_until_async,
};
use tokio::net::TcpListener;

const BETA_KEY: &str = "sk-beta-0123456789";
const WAIT: Duration = Duration::from_secs(10);

/// A directory of the test's own for its config file and certificates.
fn scratch(test: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "sluice-reload-{test}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn sim() -> SimHandle {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    SimWorker::start(SimConfig::default(), listener).await.unwrap()
}

/// A config with one pool on `sim`, the admin token, the tenant `acme` and, with `beta`, a
/// second tenant; `extra` is appended.
fn config_text(sim: &SimHandle, beta: bool, extra: &str) -> String {
    let mut text = format!(
        "[admin]\ntoken = \"{ADMIN_TOKEN}\"\n\n\
         [[pools]]\nname = \"sim\"\nmodels = [\"{MODEL}\"]\nendpoints = [\"{}\"]\n\n\
         [[tenants]]\nname = \"{TENANT}\"\napi_keys = [\"{TENANT_KEY}\"]\n\n",
        sim.base_url()
    );
    if beta {
        text.push_str(&format!("[[tenants]]\nname = \"beta\"\napi_keys = [\"{BETA_KEY}\"]\n\n"));
    }
    text.push_str(extra);
    text
}

/// Builds with `build` from the file at `path`, reloadable from it, and starts on port 0.
async fn start(path: &Path, build: impl AsyncFnOnce(Config) -> Sluice) -> Running {
    let config = Config::load(Some(path)).unwrap_or_else(|e| panic!("{e}"));
    let sluice = build(config).await.with_config_file(Some(path.to_owned()));
    let data = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    sluice.start_on(data, admin).unwrap()
}

async fn chat_status(client: &TestClient, running: &Running, key: &str) -> u16 {
    let body = chat_body("hello", json!({"max_tokens": 2}));
    let url = format!("{}/v1/chat/completions", running.base_url());
    client.post_json_whole(&url, Some(key), &body).await.status.as_u16()
}

async fn reload_via_api(running: &Running, token: Option<&str>) -> (u16, Value) {
    let req = request(Method::POST, &format!("{}/admin/api/reload", running.admin_url()), token, full_body(""));
    let reply = read_whole(TestClient::http1().send(req).await).await;
    (reply.status.as_u16(), reply.json())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_through_the_admin_api_serves_the_file_and_refuses_an_invalid_one() {
    let sim = sim().await;
    let dir = scratch("api");
    let path = dir.join("sluice.toml");
    std::fs::write(&path, config_text(&sim, false, "")).unwrap();
    let (store, _store_dir) = fresh_sqlite().await;
    let running =
        start(&path, async |config| Sluice::build_with_store(config, store.clone(), Vec::new(), None).await.unwrap())
            .await;
    let client = TestClient::http1();
    assert_eq!(chat_status(&client, &running, TENANT_KEY).await, 200);
    assert_eq!(chat_status(&client, &running, BETA_KEY).await, 401);

    // A stream in flight across every reload below: 40 tokens 50 ms apart.
    sim.set_faults(Faults { slow_token: Duration::from_millis(50), ..Faults::default() });
    let body = chat_body("a long answer please", json!({"stream": true, "max_tokens": 40}));
    let mut stream =
        client.post_stream(&format!("{}/v1/chat/completions", running.base_url()), Some(TENANT_KEY), &body).await;
    assert!(stream.next().await.and_then(|e| e.content()).is_some(), "the stream started");

    // The file gains a tenant: without the token the reload is refused; with it, the new
    // tenant's key works as soon as the reload has answered.
    std::fs::write(&path, config_text(&sim, true, "")).unwrap();
    let (status, body) = reload_via_api(&running, None).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(chat_status(&client, &running, BETA_KEY).await, 401, "nothing was reloaded without the token");
    let (status, report) = reload_via_api(&running, Some(ADMIN_TOKEN)).await;
    assert_eq!(status, 200, "{report}");
    let applied = report["applied"].as_array().unwrap();
    assert!(applied.contains(&json!("store: tenant \"beta\" created")), "{report}");
    let added = format!("store: key {} of tenant \"beta\" added", sluice_store::model::keys::display_prefix(BETA_KEY));
    assert!(applied.contains(&json!(added)), "{report}");
    assert_eq!(report["restart_required"], json!([]), "{report}");
    sim.set_faults(Faults::default());
    assert_eq!(chat_status(&client, &running, BETA_KEY).await, 200);

    // An invalid file (a duplicate tenant) is refused in the OpenAI error shape, naming the
    // field, and the configuration in force keeps serving.
    let duplicate = "[[tenants]]\nname = \"beta\"\napi_keys = [\"sk-other-0123456789\"]\n";
    std::fs::write(&path, config_text(&sim, true, duplicate)).unwrap();
    let (status, body) = reload_via_api(&running, Some(ADMIN_TOKEN)).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");
    assert_eq!(body["error"]["code"], "invalid_config", "{body}");
    assert_eq!(body["error"]["param"], "tenants[2].name", "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("tenants[2].name: duplicate tenant"), "{body}");
    assert_eq!(chat_status(&client, &running, TENANT_KEY).await, 200);
    assert_eq!(chat_status(&client, &running, BETA_KEY).await, 200);
    assert_eq!(chat_status(&client, &running, "sk-other-0123456789").await, 401);

    // What cannot change at runtime is reported, and the rest is still applied.
    std::fs::write(&path, config_text(&sim, true, "[server]\nadmin_listen = \"127.0.0.1:1\"\n")).unwrap();
    let (status, report) = reload_via_api(&running, Some(ADMIN_TOKEN)).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["restart_required"], json!(["server.admin_listen"]), "{report}");

    let rest = stream.rest().await;
    assert!(!stream.broke, "the stream was cut: {rest:?}");
    assert_eq!(rest.iter().filter(|e| e.content().is_some()).count(), 39, "every remaining token arrived");
    assert!(rest.last().is_some_and(|e| e.is_done()));
    running.shutdown().await;
    sim.shutdown().await;
}

/// Standard base64 with padding, for PEM.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn pem(label: &str, der: &[u8]) -> String {
    let body = base64(der);
    let lines: Vec<&str> = body.as_bytes().chunks(64).map(|l| std::str::from_utf8(l).unwrap()).collect();
    format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n"))
}

fn cert_pem(ca: &TestCa) -> String {
    ca.chain.iter().map(|c| pem("CERTIFICATE", c)).collect()
}

fn key_pem(ca: &TestCa) -> String {
    pem("PRIVATE KEY", ca.key().secret_der())
}

/// Writes a file the way a rotation tool does: the new contents appear at once.
fn replace(path: &Path, contents: &str) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, contents).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Whether a fresh connection trusting only `ca`'s root completes a request.
async fn trusted_by(ca: &TestCa, running: &Running) -> bool {
    let client = TestClient::https(&ca.root, true);
    let req = request(Method::GET, &format!("{}/health", running.base_url()), None, full_body(""));
    client.try_send(req).await.is_ok_and(|r| r.status() == 200)
}

/// A TLS gateway (no store) serving `ca`'s certificate from files in `dir`.
async fn tls_gateway(dir: &Path, sim: &SimHandle, ca: &TestCa, watch: Duration) -> Running {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    replace(&cert, &cert_pem(ca));
    replace(&key, &key_pem(ca));
    let tls = format!("[server.tls]\ncert = \"{}\"\nkey = \"{}\"\n", cert.display(), key.display());
    let path = dir.join("sluice.toml");
    std::fs::write(&path, config_text(sim, false, &tls)).unwrap();
    start(&path, async |config| Sluice::build(config).unwrap().with_tls_watch_interval(watch)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_serves_new_certificate_files_to_new_connections_and_open_ones_keep_going() {
    let sim = sim().await;
    let dir = scratch("tls");
    let (old, new) = (TestCa::new(), TestCa::new());
    // No file watch: only the reload re-reads the files.
    let running = tls_gateway(&dir, &sim, &old, Duration::ZERO).await;
    assert!(running.base_url().starts_with("https://"));
    let old_client = TestClient::https(&old.root, true);
    sim.set_faults(Faults { slow_token: Duration::from_millis(50), ..Faults::default() });
    let body = chat_body("a long answer please", json!({"stream": true, "max_tokens": 30}));
    let url = format!("{}/v1/chat/completions", running.base_url());
    let mut stream = old_client.post_stream(&url, Some(TENANT_KEY), &body).await;
    assert!(stream.next().await.and_then(|e| e.content()).is_some());
    assert!(trusted_by(&old, &running).await);
    assert!(!trusted_by(&new, &running).await);

    replace(&dir.join("cert.pem"), &cert_pem(&new));
    replace(&dir.join("key.pem"), &key_pem(&new));
    assert!(trusted_by(&old, &running).await, "nothing changes before the reload (no file watch)");
    let report = running.reload().await.unwrap();
    assert!(report.applied.iter().any(|a| a.starts_with("server.tls: certificate re-read")), "{report:?}");

    assert!(trusted_by(&new, &running).await, "a new connection gets the new certificate");
    assert!(!trusted_by(&old, &running).await, "no new connection gets the old one");
    // The connection opened before the rotation carries on: its stream, then another request
    // on the same (pooled, HTTP/2) connection.
    let rest = stream.rest().await;
    assert!(!stream.broke && rest.last().is_some_and(|e| e.is_done()), "{rest:?}");
    sim.set_faults(Faults::default());
    assert_eq!(chat_status(&old_client, &running, TENANT_KEY).await, 200);

    // A reload with the same files changes nothing.
    let report = running.reload().await.unwrap();
    assert!(report.applied.is_empty(), "{report:?}");
    running.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_file_watch_picks_up_a_new_certificate_and_a_broken_pair_keeps_the_old_one() {
    let sim = sim().await;
    let dir = scratch("tls-watch");
    let (old, new) = (TestCa::new(), TestCa::new());
    let running = tls_gateway(&dir, &sim, &old, Duration::from_millis(50)).await;
    assert!(trusted_by(&old, &running).await);

    // Half a rotation: the new certificate with the old key. A reload refuses it naming the
    // field, and the watch leaves the old certificate in service.
    replace(&dir.join("cert.pem"), &cert_pem(&new));
    let error = running.reload().await.unwrap_err();
    let api = error.to_api();
    assert_eq!(api.status, 400, "{error}");
    assert_eq!(api.param.as_deref(), Some("server.tls"), "{error}");
    assert!(api.message.contains("do not form a valid pair"), "{}", api.message);
    assert!(trusted_by(&old, &running).await, "the old certificate is still served");

    // The key arrives: the watch serves the new pair without a reload.
    replace(&dir.join("key.pem"), &key_pem(&new));
    assert!(wait_until_async(WAIT, || trusted_by(&new, &running)).await, "the watch did not pick up the new pair");
    assert!(!trusted_by(&old, &running).await);
    running.shutdown().await;
    sim.shutdown().await;
}

/// The test guest written to a file, as an operator's plugin.
fn guest_file(dir: &Path) -> PathBuf {
    let path = dir.join("guest.wasm");
    std::fs::write(&path, sluice_plugin_host::testing::TEST_GUEST).unwrap();
    path
}

fn guest_toml(path: &Path, mode: &str) -> String {
    format!(
        "[[plugins]]\nname = \"guest\"\nsource = \"{}\"\n\
         capabilities = [\"log\", \"clock\", \"counters\", \"cache\", \"config\", \"metrics\", \"embeddings\", \"http\"]\n\
         [plugins.config]\nmode = \"{mode}\"\ntag = \"reload\"\n",
        path.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_bindings_added_and_changed_in_the_file_apply_on_reload() {
    let sim = sim().await;
    let dir = scratch("plugins");
    let guest = guest_file(&dir);
    let path = dir.join("sluice.toml");
    std::fs::write(&path, config_text(&sim, false, "")).unwrap();
    let running = start(&path, async |config| Sluice::build(config).unwrap()).await;
    let client = TestClient::http1();
    assert_eq!(chat_status(&client, &running, TENANT_KEY).await, 200);

    std::fs::write(&path, config_text(&sim, false, &guest_toml(&guest, "deny"))).unwrap();
    let report = running.reload().await.unwrap();
    assert_eq!(report.applied, ["plugin guest (global) bound"], "{report:?}");
    assert_eq!(chat_status(&client, &running, TENANT_KEY).await, 403);

    std::fs::write(&path, config_text(&sim, false, &guest_toml(&guest, "respond"))).unwrap();
    let report = running.reload().await.unwrap();
    assert_eq!(report.applied, ["plugin guest (global) reloaded"], "{report:?}");
    let url = format!("{}/v1/chat/completions", running.base_url());
    let reply = client.post_json_whole(&url, Some(TENANT_KEY), &chat_body("hi", json!({}))).await;
    assert_eq!(reply.json(), json!({"answered_by": "test-guest"}));

    // An invalid component is refused naming the entry; the binding in service stays.
    std::fs::write(&guest, b"not a component").unwrap();
    let error = running.reload().await.unwrap_err();
    assert_eq!(error.to_api().param.as_deref(), Some("plugins[0]"), "{error}");
    let reply = client.post_json_whole(&url, Some(TENANT_KEY), &chat_body("hi", json!({}))).await;
    assert_eq!(reply.json(), json!({"answered_by": "test-guest"}));

    // Dropped from the file, it stays bound until a restart, and the reload says so.
    std::fs::write(&path, config_text(&sim, false, "")).unwrap();
    let report = running.reload().await.unwrap();
    assert!(report.applied.is_empty(), "{report:?}");
    assert_eq!(
        report.restart_required,
        ["plugins: guest (global) is no longer in the file but stays bound until a restart"]
    );
    running.shutdown().await;
    sim.shutdown().await;
}
