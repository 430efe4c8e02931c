//! `sluice tenant|key|limits|slo|pool|endpoint|plugin|binding|usage|audit` end to end: the built
//! binary against the admin router served in-process on port 0 over a real SQLite store.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "test code")]

use std::process::Output;
use std::sync::Arc;

use serde_json::Value;
use sluice_admin::{AdminState, PluginInspector};
use sluice_plugin_host::artifacts::ArtifactCache;
use sluice_plugin_host::{EngineSettings, PluginEngine};
use sluice_store_model::Backend;

const TOKEN: &str = "cli-test-token-0123456789abcdef-0123";

struct Inspector(PluginEngine);

impl PluginInspector for Inspector {
    fn inspect(&self, wasm: &[u8]) -> Result<Value, String> {
        sluice_plugin_host::inspect::inspect(&self.0, &ArtifactCache::default(), "upload", wasm)
            .map(|m| m.to_json())
            .map_err(|e| e.to_string())
    }
}

struct Admin {
    url: String,
    _dir: tempfile::TempDir,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Admin {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn start() -> Admin {
    let dir = tempfile::tempdir().unwrap();
    let store = sluice_store_sqlite::SqliteStore::open(&dir.path().join("sluice.db")).await.unwrap();
    store.migrate().await.unwrap();
    let engine = PluginEngine::new(EngineSettings { max_instances: 4, ..EngineSettings::default() }).unwrap();
    let state = AdminState {
        store: Arc::new(store),
        auth: Arc::new(sluice_admin::AdminAuth::new(Some(TOKEN), sluice_admin::AuthSettings::default())),
        plugins: Arc::new(Inspector(engine)),
        changed: Arc::new(tokio::sync::Notify::new()),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let router = sluice_admin::router(state);
    let server = tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    Admin { url, _dir: dir, server }
}

/// Runs `sluice` with the admin URL and token in the environment (as a script would).
async fn sluice(admin: &Admin, args: &[&str]) -> Output {
    run(
        args.iter().map(|s| s.to_string()).collect(),
        vec![("SLUICE_ADMIN_URL", admin.url.clone()), ("SLUICE_ADMIN_TOKEN", TOKEN.into())],
    )
    .await
}

async fn run(args: Vec<String>, env: Vec<(&'static str, String)>) -> Output {
    tokio::task::spawn_blocking(move || {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"));
        command.args(&args).env_remove("SLUICE_ADMIN_URL").env_remove("SLUICE_ADMIN_TOKEN").env("SLUICE_LOG", "warn");
        for (k, v) in env {
            command.env(k, v);
        }
        command.output().unwrap()
    })
    .await
    .unwrap()
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "failed: {}\n{}",
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn json(output: &Output) -> Value {
    serde_json::from_str(&stdout(output)).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_keys_limits_and_slos() {
    let admin = start().await;
    let created = stdout(&sluice(&admin, &["tenant", "create", "acme"]).await);
    assert!(created.starts_with("NAME") && created.contains("acme") && created.contains("active"), "{created}");
    let list = json(&sluice(&admin, &["tenant", "list", "--json"]).await);
    assert_eq!(list[0]["name"], "acme");

    // The secret alone on stdout, for KEY=$(sluice key create acme).
    let made = sluice(&admin, &["key", "create", "acme", "--name", "ci"]).await;
    let secret = stdout(&made);
    let secret = secret.strip_suffix('\n').unwrap();
    assert!(secret.starts_with("sk-") && secret.len() == 43 && !secret.contains(char::is_whitespace), "{secret:?}");
    assert!(stderr(&made).contains("created key") && stderr(&made).contains("acme"), "{}", stderr(&made));
    let keys = stdout(&sluice(&admin, &["key", "list", "acme"]).await);
    assert!(keys.contains(&secret[..11]) && !keys.contains(secret), "{keys}");
    let id = json(&sluice(&admin, &["key", "list", "acme", "--json"]).await)[0]["id"].to_string();

    let limits = stdout(
        &sluice(
            &admin,
            &["limits", "set", "acme", "--rpm", "60", "--tpm", "1000", "--monthly-token-budget", "5000000"],
        )
        .await,
    );
    assert!(limits.contains("requests per minute:") && limits.contains("60"), "{limits}");
    let limits = json(&sluice(&admin, &["limits", "get", "acme", "--json"]).await);
    assert_eq!((limits["requests_per_minute"].as_u64(), limits["tokens_per_minute"].as_u64()), (Some(60), Some(1000)));
    assert!(limits["max_concurrency"].is_null());

    // One key's and one model's limits.
    let key = stdout(&sluice(&admin, &["limits", "set", "acme", "--key", &id, "--rpm", "5"]).await);
    assert!(key.contains("requests per minute:") && key.contains('5') && !key.contains("allowed"), "{key}");
    let key = json(&sluice(&admin, &["limits", "get", "acme", "--key", &id, "--json"]).await);
    assert_eq!(key["limits"]["requests_per_minute"], 5);
    let model = ["limits", "set", "acme", "--model", "meta-llama/Llama-3.1-8B", "--tpm", "700", "--json"];
    let model = json(&sluice(&admin, &model).await);
    assert_eq!(
        (model["model"].as_str(), model["limits"]["tokens_per_minute"].as_u64()),
        (Some("meta-llama/Llama-3.1-8B"), Some(700))
    );
    let shown = stdout(&sluice(&admin, &["limits", "get", "acme", "--model", "meta-llama/Llama-3.1-8B"]).await);
    assert!(shown.contains("700"), "{shown}");
    let both = sluice(&admin, &["limits", "set", "acme", "--key", &id, "--model", "x", "--rpm", "1"]).await;
    assert!(!both.status.success(), "a key and a model at once is refused");
    let narrowed = sluice(&admin, &["limits", "set", "acme", "--key", &id, "--allowed-models", "x"]).await;
    assert!(!narrowed.status.success(), "allowed models are the tenant's alone");
    let detail = stdout(&sluice(&admin, &["tenant", "get", "acme"]).await);
    assert!(detail.contains("Limits per model") && detail.contains("meta-llama/Llama-3.1-8B"), "{detail}");
    stdout(&sluice(&admin, &["limits", "clear", "acme", "--key", &id]).await);
    assert!(json(&sluice(&admin, &["limits", "get", "acme", "--key", &id, "--json"]).await)["limits"]["requests_per_minute"].is_null());
    assert!(
        stdout(&sluice(&admin, &["limits", "clear", "acme", "--model", "meta-llama/Llama-3.1-8B"]).await)
            .contains("removed")
    );
    let gone = sluice(&admin, &["limits", "get", "acme", "--model", "meta-llama/Llama-3.1-8B"]).await;
    assert!(!gone.status.success() && stderr(&gone).contains("not found"), "{}", stderr(&gone));

    stdout(
        &sluice(&admin, &["slo", "set", "acme", "--model", "llama", "--ttft-p95-ms", "500", "--target", "0.95"]).await,
    );
    stdout(&sluice(&admin, &["slo", "set", "acme", "--model", "*", "--tpot-p95-ms", "40", "--target", "0.9"]).await);
    stdout(
        &sluice(&admin, &["slo", "set", "acme", "--model", "llama", "--ttft-p95-ms", "400", "--target", "0.99"]).await,
    );
    let slos = json(&sluice(&admin, &["slo", "list", "acme", "--json"]).await);
    assert_eq!(slos.as_array().unwrap().len(), 2, "{slos}");
    assert!(slos.as_array().unwrap().iter().any(|s| s["model"] == "llama" && s["ttft_p95_ms"] == 400));
    stdout(&sluice(&admin, &["slo", "remove", "acme", "--model", "llama"]).await);
    assert_eq!(json(&sluice(&admin, &["slo", "list", "acme", "--json"]).await).as_array().unwrap().len(), 1);

    assert!(stdout(&sluice(&admin, &["tenant", "suspend", "acme"]).await).contains("suspended"));
    assert!(stdout(&sluice(&admin, &["tenant", "resume", "acme"]).await).contains("active"));
    assert!(stdout(&sluice(&admin, &["tenant", "update", "acme", "--priority", "high"]).await).contains("high"));
    let detail = stdout(&sluice(&admin, &["tenant", "get", "acme"]).await);
    for part in ["Limits", "SLOs", "Keys", "ci", "5000000"] {
        assert!(detail.contains(part), "{part} in {detail}");
    }
    let revoked = json(&sluice(&admin, &["key", "revoke", "acme", &id, "--json"]).await);
    assert!(revoked["revoked_at"].is_string());

    let audit = json(&sluice(&admin, &["audit", "--json", "--limit", "100"]).await);
    assert!(audit.as_array().unwrap().len() >= 9);
    assert!(audit.as_array().unwrap().iter().all(|e| e["actor"] == "admin"));
    assert!(!audit.to_string().contains(secret));
    assert!(stdout(&sluice(&admin, &["audit"]).await).contains("tenant.create"));
    let usage = stdout(&sluice(&admin, &["usage", "--tenant", "acme", "--from", "2026-01-01"]).await);
    assert!(usage.contains("TOTAL"), "{usage}");
    assert_eq!(json(&sluice(&admin, &["usage", "--json"]).await)["rows"], serde_json::json!([]));

    assert!(stdout(&sluice(&admin, &["tenant", "delete", "acme"]).await).contains("deleted tenant acme"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pools_endpoints_plugins_and_bindings() {
    let admin = start().await;
    stdout(&sluice(&admin, &["tenant", "create", "acme"]).await);
    let pool = stdout(&sluice(&admin, &["pool", "create", "gpu-a", "--model", "llama,qwen"]).await);
    assert!(pool.contains("llama,qwen"), "{pool}");
    let added = stdout(
        &sluice(
            &admin,
            &["endpoint", "add", "gpu-a", "w1", "http://127.0.0.1:8000", "--flavor", "sglang", "--weight", "2"],
        )
        .await,
    );
    assert!(added.contains("w1") && added.contains("sglang"), "{added}");
    let drained = json(&sluice(&admin, &["endpoint", "drain", "gpu-a", "w1", "--json"]).await);
    assert_eq!(drained["endpoints"][0]["drained"], true);
    let undrained = json(&sluice(&admin, &["endpoint", "--json", "undrain", "gpu-a", "w1"]).await);
    assert_eq!(undrained["endpoints"][0]["drained"], false);
    assert!(stdout(&sluice(&admin, &["pool", "list"]).await).contains("gpu-a"));
    assert_eq!(json(&sluice(&admin, &["pool", "get", "gpu-a", "--json"]).await)["endpoints"][0]["weight"], 2);
    assert_eq!(
        json(&sluice(&admin, &["endpoint", "remove", "gpu-a", "w1", "--json"]).await)["endpoints"],
        serde_json::json!([])
    );
    assert!(stdout(&sluice(&admin, &["pool", "delete", "gpu-a"]).await).contains("deleted pool gpu-a"));

    // A pool's APIs: the default unless named, changed with `pool update`, shown in listings.
    let vllm = stdout(&sluice(&admin, &["pool", "create", "vllm", "--model", "qwen", "--apis", "messages,chat"]).await);
    assert!(vllm.contains("APIS") && vllm.contains("chat,messages"), "{vllm}");
    let plain = json(&sluice(&admin, &["pool", "create", "plain", "--model", "m", "--json"]).await);
    assert_eq!(plain["apis"], serde_json::json!(["chat", "completions", "embeddings"]));
    let updated =
        json(&sluice(&admin, &["pool", "update", "vllm", "--apis", "chat,responses,messages", "--json"]).await);
    assert_eq!(updated["apis"], serde_json::json!(["chat", "responses", "messages"]));
    let listed = stdout(&sluice(&admin, &["pool", "list"]).await);
    assert!(listed.contains("chat,responses,messages") && listed.contains("chat,completions,embeddings"), "{listed}");
    let unknown = sluice(&admin, &["pool", "update", "vllm", "--apis", "chat,anthropic"]).await;
    assert_eq!(unknown.status.code(), Some(2), "refused before anything is sent");
    assert!(stderr(&unknown).contains("anthropic"), "{}", stderr(&unknown));
    let missing = sluice(&admin, &["pool", "update", "nope", "--apis", "chat"]).await;
    assert_eq!(missing.status.code(), Some(1));
    for name in ["vllm", "plain"] {
        stdout(&sluice(&admin, &["pool", "delete", name]).await);
    }

    let dir = tempfile::tempdir().unwrap();
    let v1 = dir.path().join("guard.wasm");
    let v2 = dir.path().join("guard-2.wasm");
    std::fs::write(&v1, sluice_plugin_host::testing::TEST_GUEST).unwrap();
    std::fs::write(&v2, sluice_plugin_host::testing::variant(sluice_plugin_host::testing::TEST_GUEST, "2")).unwrap();
    let uploaded = stdout(&sluice(&admin, &["plugin", "upload", "guard", v1.to_str().unwrap()]).await);
    assert!(uploaded.contains("on-request"), "{uploaded}");
    assert_eq!(
        json(&sluice(&admin, &["plugin", "upload", "guard", v2.to_str().unwrap(), "--json"]).await)["version"],
        2
    );
    assert_eq!(json(&sluice(&admin, &["plugin", "versions", "guard", "--json"]).await).as_array().unwrap().len(), 2);
    let versions = stdout(&sluice(&admin, &["plugin", "versions", "guard"]).await);
    assert!(versions.contains("REQUESTED") && versions.contains("GRANTED"), "{versions}");
    // Nothing is granted unless named: the refusal names the import.
    let ungranted = sluice(&admin, &["plugin", "activate", "guard", "2"]).await;
    assert_eq!(ungranted.status.code(), Some(1));
    assert!(stderr(&ungranted).contains("sluice:policy/log@0.2.0 needs capability `log`"), "{}", stderr(&ungranted));
    // --grant repeats and takes comma-separated names (alias --grants).
    let grants = ["--grant", "log", "--grant", "clock,counters", "--grants", "cache,config,metrics"];
    let activated =
        json(&sluice(&admin, &[&["plugin", "activate", "guard", "2", "--json"][..], &grants[..]].concat()).await);
    assert_eq!(activated["active_version"], 2);
    assert_eq!(activated["granted"], serde_json::json!(["log", "clock", "counters", "cache", "config", "metrics"]));
    assert!(stdout(&sluice(&admin, &["plugin", "list"]).await).contains("log,clock"), "granted shown in the list");
    // Version 1 never ran with grants, so there is nothing to roll back with until it has.
    let never = sluice(&admin, &["plugin", "rollback", "guard"]).await;
    assert!(stderr(&never).contains("activate it with grants instead"), "{}", stderr(&never));
    sluice(&admin, &[&["plugin", "activate", "guard", "1"][..], &grants[..]].concat()).await;
    sluice(&admin, &[&["plugin", "activate", "guard", "2"][..], &grants[..]].concat()).await;
    assert_eq!(json(&sluice(&admin, &["plugin", "rollback", "guard", "--json"]).await)["active_version"], 1);
    assert!(stdout(&sluice(&admin, &["plugin", "list"]).await).contains("guard"));
    let refused = sluice(&admin, &["plugin", "rollback", "guard"]).await;
    assert_eq!(refused.status.code(), Some(1));
    assert!(stderr(&refused).starts_with("error: plugin \"guard\" has no version below"), "{}", stderr(&refused));

    let bound = json(
        &sluice(
            &admin,
            &[
                "binding",
                "add",
                "guard",
                "--tenant",
                "acme",
                "--order",
                "-5",
                "--failure-policy",
                "closed",
                "--config",
                r#"{"limit": 3}"#,
                "--timeout-ms",
                "50",
                "--max-memory-bytes",
                "33554432",
                "--json",
            ],
        )
        .await,
    );
    assert_eq!(bound["scope"], serde_json::json!({"kind": "tenant", "name": "acme"}));
    assert_eq!((bound["order"].as_i64(), bound["failure_policy"].as_str()), (Some(-5), Some("closed")));
    assert_eq!((bound["timeout_ms"].as_u64(), bound["max_memory_bytes"].as_u64()), (Some(50), Some(32 << 20)));
    let too_slow = sluice(&admin, &["binding", "add", "guard", "--timeout-ms", "5000"]).await;
    assert_eq!(too_slow.status.code(), Some(1));
    assert!(stderr(&too_slow).contains("timeout_ms"), "{}", stderr(&too_slow));
    stdout(&sluice(&admin, &["binding", "add", "guard"]).await);
    let list = stdout(&sluice(&admin, &["binding", "list"]).await);
    assert!(list.contains("tenant") && list.contains("global"), "{list}");
    assert!(list.contains("TIMEOUT_MS") && list.contains("33554432"), "{list}");
    let id = bound["id"].to_string();
    assert!(stdout(&sluice(&admin, &["binding", "remove", &id]).await).contains("removed binding"));
    assert_eq!(json(&sluice(&admin, &["binding", "list", "--json"]).await).as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_print_the_message_and_exit_1() {
    let admin = start().await;
    let missing = sluice(&admin, &["tenant", "get", "nope"]).await;
    assert_eq!(missing.status.code(), Some(1));
    assert_eq!(stderr(&missing).trim_end(), "error: tenant \"nope\" not found");
    assert!(missing.stdout.is_empty());

    let invalid = sluice(&admin, &["tenant", "create", "Not Valid"]).await;
    assert_eq!(invalid.status.code(), Some(1));
    assert!(stderr(&invalid).starts_with("error: name: "), "{}", stderr(&invalid));

    // Flags instead of the environment; a wrong token is the API's 401 message.
    let url = admin.url.clone();
    let wrong = run(
        vec!["tenant".into(), "--admin-url".into(), url.clone(), "--token".into(), "nope".into(), "list".into()],
        vec![],
    )
    .await;
    assert_eq!(wrong.status.code(), Some(1));
    assert_eq!(stderr(&wrong).trim_end(), "error: wrong admin token");
    let right = run(
        vec![
            "tenant".into(),
            "list".into(),
            "--json".into(),
            "--admin-url".into(),
            url,
            "--token".into(),
            TOKEN.into(),
        ],
        vec![],
    )
    .await;
    assert_eq!(json(&right), serde_json::json!([]));

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let nowhere = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let unreachable = run(vec!["tenant".into(), "list".into()], vec![("SLUICE_ADMIN_URL", nowhere)]).await;
    assert_eq!(unreachable.status.code(), Some(1));
    assert!(
        stderr(&unreachable).starts_with("error: cannot reach the admin API at http://127.0.0.1:"),
        "{}",
        stderr(&unreachable)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_and_cache_purge_ask_the_gateway() {
    // A bare admin API has no gateway behind it: both say so, and a purge naming nothing is
    // refused before anything is sent.
    let admin = start().await;
    let unattached = sluice(&admin, &["reload"]).await;
    assert_eq!(unattached.status.code(), Some(1));
    assert!(stderr(&unattached).contains("reload"), "{}", stderr(&unattached));
    let unattached = sluice(&admin, &["cache", "purge", "--tenant", "acme"]).await;
    assert_eq!(unattached.status.code(), Some(1));
    assert!(stderr(&unattached).contains("response cache"), "{}", stderr(&unattached));
    let nothing = sluice(&admin, &["cache", "purge"]).await;
    assert_eq!(nothing.status.code(), Some(1));
    assert!(stderr(&nothing).contains("--all"), "{}", stderr(&nothing));

    // A real gateway (embedded store, no config file): the purge reaches its cache; a reload
    // has no file to read.
    let dir = tempfile::tempdir().unwrap();
    let store = sluice_store_sqlite::SqliteStore::open(&dir.path().join("sluice.db")).await.unwrap();
    store.migrate().await.unwrap();
    let config = sluice_config::Config::from_toml(&format!("[admin]\ntoken = \"{TOKEN}\"\n"), &[], &|_| None).unwrap();
    let sluice_server =
        sluice_server::Sluice::build_with_store(config, Arc::new(store), Vec::new(), None).await.unwrap();
    let data = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let running = sluice_server.start_on(data, admin_listener).unwrap();
    let env = || vec![("SLUICE_ADMIN_URL", running.admin_url()), ("SLUICE_ADMIN_TOKEN", TOKEN.to_owned())];
    let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let purged = run(args(&["cache", "purge", "--tenant", "acme", "--model", "m"]), env()).await;
    assert_eq!(stdout(&purged), "purged 0 entries (memory backend)\n");
    let report = json(&run(args(&["cache", "purge", "--all", "--json"]), env()).await);
    assert_eq!(report, serde_json::json!({"purged": 0, "backend": "memory"}));
    let reload = run(args(&["reload"]), env()).await;
    assert_eq!(reload.status.code(), Some(1));
    assert!(stderr(&reload).contains("config file"), "{}", stderr(&reload));
    running.shutdown().await;
}
