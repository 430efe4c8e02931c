//! Two `sluice serve` replicas sharing one PostgreSQL database and one Redis, in front of the
//! same simulated workers (issue 23's multi-replica proof): traffic through both; a tenant
//! created and a limit changed through one replica's admin API are enforced by both within a
//! second; one replica killed mid-stream leaves the other's streams whole; and every request's
//! tokens are in the usage table exactly once. Along the way, the JSON logs: a finished request's
//! line carries its id, tenant, model, endpoint and outcome, and no log line holds a key or the
//! admin token.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use http::Method;
use serde_json::{Value, json};
use sluice_e2e::client::{get, post, send};
use sluice_e2e::fleet::{Gateway, config, start_sim};
use sluice_e2e::net::{NotReady, free_addr, wait_ready};
use sluice_e2e::tenancy::ADMIN_TOKEN;
use sluice_e2e::{API_KEY, MODEL, Proc, STARTUP, SseStream, TENANT, TempDir, bins};

/// How long a change made through one replica may take to be enforced by both.
const PROPAGATION: Duration = Duration::from_secs(1);
/// How long the test polls before giving up on a propagation (the assertion is on the time
/// measured, not on this).
const POLL_DEADLINE: Duration = Duration::from_millis(1500);
const WAIT: Duration = Duration::from_secs(20);

/// A database of the test's own on the machine's PostgreSQL.
fn fresh_database() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let name = format!("sluice_e2e_replicas_{}_{}", std::process::id(), nanos % 1_000_000_000);
    psql("test", &format!("CREATE DATABASE {name}"));
    format!("postgres://postgres@127.0.0.1:5432/{name}")
}

fn psql(database: &str, sql: &str) -> String {
    let out = std::process::Command::new("psql")
        .args(["-h", "127.0.0.1", "-U", "postgres", "-d", database, "-At", "-c", sql])
        .output()
        .expect("psql runs");
    assert!(out.status.success(), "{sql}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Requests, prompt tokens and completion tokens the usage table holds for `tenant`.
fn stored_usage(database_url: &str, tenant: &str) -> (u64, u64, u64) {
    let database = database_url.rsplit('/').next().unwrap();
    let row = psql(
        database,
        &format!(
            "SELECT COALESCE(SUM(requests), 0), COALESCE(SUM(prompt_tokens), 0), COALESCE(SUM(completion_tokens), 0) \
             FROM usage_minutely WHERE tenant = '{tenant}'"
        ),
    );
    let n: Vec<u64> = row.split('|').map(|v| v.parse().unwrap()).collect();
    (n[0], n[1], n[2])
}

/// `sluice serve` with JSON logs (the per-request access lines included) and its own config
/// file in `dir`.
async fn start_replica(dir: &TempDir, name: &str, make_config: impl Fn(SocketAddr, SocketAddr) -> String) -> Gateway {
    for attempt in 1..=2 {
        let (listen, admin) = (free_addr(), free_addr());
        let config = dir.write(&format!("{name}.toml"), &make_config(listen, admin));
        let mut cmd = bins::sluice();
        cmd.env_remove("RUST_LOG").args([
            "--log-json",
            "--log-level",
            "info,sluice::access=debug",
            "serve",
            "--config",
        ]);
        cmd.arg(&config);
        let mut proc = Proc::spawn(&format!("{name}-{attempt}"), cmd, dir.path());
        match wait_ready(&mut proc, &format!("http://{admin}/healthz"), STARTUP).await {
            Ok(()) => return Gateway { proc, listen, admin, config },
            Err(NotReady::Exited(_)) if attempt == 1 && proc.bind_failed() => continue,
            Err(e) => panic!("replica {name} did not become ready: {e:?}\n{}", proc.diagnostics()),
        }
    }
    unreachable!("the loop returns or panics")
}

/// Tokens one answer used, as its `usage` says.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Tokens {
    requests: u64,
    prompt: u64,
    completion: u64,
}

impl Tokens {
    fn add(&mut self, usage: &Value) {
        self.requests += 1;
        self.prompt += usage["prompt_tokens"].as_u64().unwrap();
        self.completion += usage["completion_tokens"].as_u64().unwrap();
    }
}

fn chat_body(max_tokens: u32, stream: bool) -> Value {
    let mut body =
        json!({"model": MODEL, "messages": [{"role": "user", "content": "count for me"}], "max_tokens": max_tokens});
    if stream {
        body["stream"] = json!(true);
        body["stream_options"] = json!({"include_usage": true});
    }
    body
}

async fn chat(gw: &Gateway, key: &str, max_tokens: u32) -> sluice_e2e::Reply {
    post(&format!("{}/v1/chat/completions", gw.api()), Some(key), &chat_body(max_tokens, false)).await
}

async fn open_stream(gw: &Gateway, max_tokens: u32) -> SseStream {
    let url = format!("{}/v1/chat/completions", gw.api());
    let stream = SseStream::open(&url, Some(API_KEY), &chat_body(max_tokens, true)).await;
    assert_eq!(stream.status, 200);
    stream
}

/// Reads a stream to its end: every content token, then the usage chunk, then `[DONE]`.
async fn finish_stream(stream: &mut SseStream, tokens: &mut Tokens) {
    let events = stream.rest().await;
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"), "{events:?}");
    let usage = events
        .iter()
        .filter(|e| *e != "[DONE]")
        .map(|e| serde_json::from_str::<Value>(e).unwrap())
        .find(|e| e["usage"].is_object())
        .unwrap_or_else(|| panic!("no usage chunk in {events:?}"));
    tokens.add(&usage["usage"]);
}

async fn admin(gw: &Gateway, method: Method, path: &str, body: &Value) -> Value {
    let url = format!("{}{path}", gw.admin_url());
    let response = send(method.clone(), &url, Some(ADMIN_TOKEN), Some(body)).await.unwrap();
    let status = response.status();
    let bytes = http_body_util::BodyExt::collect(response.into_body()).await.unwrap().to_bytes();
    assert!(status.is_success(), "{method} {path}: {status} {}", String::from_utf8_lossy(&bytes));
    serde_json::from_slice(&bytes).unwrap_or(Value::Null)
}

/// Polls `check` on `gw` from `since` until it holds; returns how long after `since` it first
/// held. Panics after [`POLL_DEADLINE`].
async fn propagated<F, Fut>(what: &str, since: Instant, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    loop {
        if check().await {
            return since.elapsed();
        }
        assert!(since.elapsed() < POLL_DEADLINE, "{what}: not enforced within {POLL_DEADLINE:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_tenants_limits_and_usage_and_survive_each_other() {
    let dir = TempDir::new("replicas");
    // Slow tokens, so that a stream is still running when a replica is killed.
    let sims = [
        start_sim(&dir, "sim-1", None, &["--slow-token-ms", "20"]).await,
        start_sim(&dir, "sim-2", None, &["--slow-token-ms", "20"]).await,
    ];
    let endpoints: Vec<String> = sims.iter().map(|s| s.url()).collect();
    let database = fresh_database();
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let prefix = format!("sluice-e2e:replicas:{}:{nanos}:", std::process::id());
    let shared = format!(
        "[admin]\ntoken = \"{ADMIN_TOKEN}\"\n\n\
         [database]\nurl = \"{database}\"\nusage_flush_interval = \"200ms\"\n\n\
         [redis]\nurl = \"redis://127.0.0.1:6379\"\nkey_prefix = \"{prefix}\"\nreplicas = 2\n"
    );
    let make = |listen, admin| config(listen, admin, &endpoints, "", &shared);
    let (dir_a, dir_b) = (TempDir::new("replica-a"), TempDir::new("replica-b"));
    let mut a = start_replica(&dir_a, "replica-a", make).await;
    let b = start_replica(&dir_b, "replica-b", make).await;

    // Traffic through both: answers whole and streamed, alternating.
    let mut served = Tokens::default();
    for i in 0..12 {
        let gw = if i % 2 == 0 { &a } else { &b };
        if i % 3 == 0 {
            let mut stream = open_stream(gw, 5).await;
            finish_stream(&mut stream, &mut served).await;
        } else {
            let reply = chat(gw, API_KEY, 4).await;
            assert_eq!(reply.status, 200, "{}", reply.text());
            served.add(&reply.json()["usage"]);
        }
    }

    // Each request's tokens are in the usage table once: both replicas' writers add to the
    // same rows, and the sums match what the clients were told, exactly.
    let counted = wait_for_usage(&database, served).await;
    assert_eq!(counted, served, "the usage table after traffic through both replicas");

    // The finished request's JSON log line, found by the id the client was given.
    let reply = chat(&a, API_KEY, 2).await;
    assert_eq!(reply.status, 200);
    served.add(&reply.json()["usage"]);
    let request_id = reply.headers["x-request-id"].to_str().unwrap().to_owned();
    check_request_log(&a, &request_id).await;

    // A tenant and its key created through A serve on both within a second.
    admin(&a, Method::POST, "/admin/api/tenants", &json!({"name": "beta"})).await;
    let created = admin(&a, Method::POST, "/admin/api/tenants/beta/keys", &json!({})).await;
    let since = Instant::now();
    let beta_key = created["key"].as_str().unwrap().to_owned();
    let mut tenant_times = Vec::new();
    for gw in [&a, &b] {
        let models = format!("{}/v1/models", gw.api());
        tenant_times.push(
            propagated("the new tenant's key", since, || async { get(&models, Some(&beta_key)).await.status == 200 })
                .await,
        );
    }

    // A limit set through A is enforced by both within a second: the requests' limit headers
    // say so, then the shared one-a-minute allowance refuses on both replicas.
    admin(&a, Method::PUT, "/admin/api/tenants/beta/limits", &json!({"requests_per_minute": 1})).await;
    let since = Instant::now();
    let mut limit_times = Vec::new();
    for gw in [&a, &b] {
        limit_times.push(
            propagated("the new limit", since, || async {
                let reply = chat(gw, &beta_key, 1).await;
                reply.headers.get("x-ratelimit-limit-requests").is_some_and(|v| v == "1")
            })
            .await,
        );
    }
    for gw in [&a, &b] {
        let reply = chat(gw, &beta_key, 1).await;
        assert_eq!(reply.status, 429, "{}", reply.text());
        assert_eq!(reply.json()["error"]["type"], "rate_limit_exceeded", "{}", reply.text());
    }
    eprintln!(
        "propagation through the store: new tenant A {:?}, B {:?}; new limit A {:?}, B {:?}",
        tenant_times[0], tenant_times[1], limit_times[0], limit_times[1]
    );
    for took in tenant_times.iter().chain(&limit_times) {
        assert!(*took < PROPAGATION, "a change took {took:?} to be enforced");
    }

    // Streams on both replicas; A is killed while they run. B's clients see nothing of it.
    let counted = wait_for_usage(&database, served).await;
    assert_eq!(counted, served, "A has nothing left to write when it is killed");
    let mut on_a = Vec::new();
    let mut on_b = Vec::new();
    for _ in 0..3 {
        on_a.push(open_stream(&a, 120).await);
        on_b.push(open_stream(&b, 120).await);
    }
    for stream in on_a.iter_mut().chain(on_b.iter_mut()) {
        let first = stream.next_data().await.expect("the stream started");
        assert_ne!(first, "[DONE]");
    }
    a.proc.signal("KILL");
    assert!(a.proc.wait_exit(WAIT).await.is_some(), "replica A did not die");
    drop(on_a);
    let during = chat(&b, API_KEY, 4).await;
    assert_eq!(during.status, 200, "B answers while A is gone: {}", during.text());
    served.add(&during.json()["usage"]);
    for stream in &mut on_b {
        finish_stream(stream, &mut served).await;
    }

    // B's streams and the rest are in the table once; A's killed streams never ended, so
    // nobody counted them.
    let counted = wait_for_usage(&database, served).await;
    assert_eq!(counted, served, "the usage table at the end");
    check_no_secrets(&[&a, &b], &beta_key);

    // Passed: the database goes (a failing run leaves it to look at).
    drop((a, b));
    let name = database.rsplit('/').next().unwrap();
    psql("test", &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
}

/// Polls the usage table until it holds at least `expected`'s requests for the fleet's
/// tenant, then returns what it holds a few flush intervals later (so that a request counted
/// twice would show).
async fn wait_for_usage(database: &str, expected: Tokens) -> Tokens {
    let read = || {
        let (requests, prompt, completion) = stored_usage(database, TENANT);
        Tokens { requests, prompt, completion }
    };
    let deadline = Instant::now() + WAIT;
    while read().requests < expected.requests && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    read()
}

/// The JSON log line of a finished request: id, tenant, model, endpoint and outcome.
async fn check_request_log(gw: &Gateway, request_id: &str) {
    let find = || {
        gw.proc.stderr().lines().find(|l| l.contains(request_id) && l.contains("request finished")).map(str::to_owned)
    };
    let deadline = Instant::now() + WAIT;
    let line = loop {
        if let Some(line) = find() {
            break line;
        }
        assert!(Instant::now() < deadline, "no log line for request {request_id}\n{}", gw.proc.diagnostics());
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let record: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    let fields = &record["fields"];
    assert_eq!(record["target"], "sluice::access", "{line}");
    assert_eq!(fields["request_id"], request_id, "{line}");
    assert_eq!(fields["tenant"], TENANT, "{line}");
    assert_eq!(fields["model"], MODEL, "{line}");
    assert!(fields["endpoint"].as_str().is_some_and(|e| e.starts_with("127.0.0.1:")), "{line}");
    assert_eq!(fields["outcome"], "ok", "{line}");
}

/// No log line of either replica holds an API key or the admin token.
fn check_no_secrets(gateways: &[&Gateway], created_key: &str) {
    for gw in gateways {
        let log = gw.proc.stderr();
        assert!(log.lines().count() > 10, "{}", gw.proc.diagnostics());
        for secret in [API_KEY, created_key, ADMIN_TOKEN] {
            assert!(
                !log.contains(secret),
                "a log line holds a secret: {}",
                log.lines().find(|l| l.contains(secret)).unwrap()
            );
        }
    }
}
