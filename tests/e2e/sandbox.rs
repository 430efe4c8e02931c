//! The plugin sandbox against hostile tenants (issue 18), through the real `sluice` binary: a
//! tenant's plugin loops, grows its memory, overflows its stack, traps in every hook, returns
//! oversized output, pokes at other tenants' and plugins' state, imports a capability it was not
//! granted, hammers host calls and reaches for hosts off its allow-list. Each test asserts the
//! failure kind in `sluice_plugin_errors_total`, the binding's failure policy, the breaker where
//! it matters, zero failures for the well-behaved tenant `acme` sending requests alongside, and
//! that the gateway's resident memory stays bounded.
//!
//! The hostile plugins are the host's test guests (`plugins/test-guest`, `plugins/test-net-guest`),
//! written to a file and bound like an operator's plugin.

use std::path::PathBuf;
use std::time::Duration;

use http::StatusCode;
use serde_json::{Value, json};
use sluice_e2e::client::{get, post};
use sluice_e2e::fleet::{Gateway, config, start_gateway, start_sim};
use sluice_e2e::metrics::sum;
use sluice_e2e::tenancy::{
    ADMIN_TOKEN, GoodTenant, RecordingWorker, chat, key, post_bytes, rss_kib, tenants_toml, wait_until,
};
use sluice_e2e::{Proc, STARTUP, SseStream, TENANT, TempDir, bins};

/// Every capability the test guest may import.
const ALL_CAPABILITIES: &str = r#"["log", "clock", "counters", "cache", "config", "metrics", "embeddings", "http"]"#;

/// The same, as the admin API's activation grants.
const ALL_GRANTS: [&str; 8] = ["log", "clock", "counters", "cache", "config", "metrics", "embeddings", "http"];

/// How much the gateway's resident memory may grow during an attack: generous, the point is
/// that it is bounded (a plugin's 256 MiB allocation or a 4 MiB body per request is not kept).
const RSS_GROWTH_LIMIT_KIB: u64 = 1 << 20;

/// How long a condition may take on a loaded CI machine.
const PATIENCE: Duration = Duration::from_secs(15);

/// Compiled plugin artifacts, shared by this process's gateways so each guest compiles once.
fn artifact_cache() -> PathBuf {
    std::env::temp_dir().join(format!("sluice-e2e-sandbox-artifacts-{}", std::process::id()))
}

/// The test guest (or `bytes`) written into the test's directory.
fn guest_file(dir: &TempDir, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// A `[[plugins]]` entry for the component at `source`, bound to `tenant`, with `extra` keys
/// (failure, timeout, …), then its `[plugins.breaker]` and `[plugins.config]` tables.
fn binding(name: &str, source: &std::path::Path, tenant: &str, extra: &str, breaker: &str, config: &str) -> String {
    format!(
        "[[plugins]]\nname = \"{name}\"\nsource = \"{}\"\ncapabilities = {ALL_CAPABILITIES}\n\
         scope = {{ tenant = \"{tenant}\" }}\n{extra}\n[plugins.breaker]\n{breaker}\n[plugins.config]\n{config}\n\n",
        source.display()
    )
}

/// A gateway in front of `endpoints` with tenant acme, `tenants` and `plugins`, an admin token
/// and the shared artifact cache.
async fn gateway(dir: &TempDir, endpoints: &[String], server_extra: &str, tenants: &[&str], plugins: &str) -> Gateway {
    let extra = format!(
        "{}[admin]\ntoken = \"{ADMIN_TOKEN}\"\n\n[plugin_host]\ncache_dir = \"{}\"\n\n{plugins}",
        tenants_toml(tenants),
        artifact_cache().display()
    );
    start_gateway(dir, |listen, admin| config(listen, admin, endpoints, server_extra, &extra)).await
}

async fn chat_as(gw: &Gateway, tenant: &str) -> sluice_e2e::Reply {
    post(&format!("{}/v1/chat/completions", gw.api()), Some(&key(tenant)), &chat()).await
}

/// Asserts a 503 `plugin_failed` naming `plugin` and `kind`.
fn assert_plugin_failed(reply: &sluice_e2e::Reply, plugin: &str, kind: &str) {
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{}", reply.text());
    let error = &reply.json()["error"];
    assert_eq!(error["code"], "plugin_failed", "{error}");
    let message = error["message"].as_str().unwrap_or_default();
    assert!(message.contains(&format!("'{plugin}'")) && message.contains(&format!("({kind})")), "{message}");
}

async fn metric(gw: &Gateway, name: &str, labels: &[(&str, &str)]) -> f64 {
    sum(&gw.metrics().await, name, labels).unwrap_or(0.0)
}

async fn errors(gw: &Gateway, plugin: &str, kind: &str) -> f64 {
    metric(gw, "sluice_plugin_errors_total", &[("plugin", plugin), ("kind", kind)]).await
}

/// The well-behaved tenant's verdict and the gateway's memory, at the end of every attack.
async fn assert_contained(gw: &mut Gateway, good: GoodTenant, rss_before: u64) {
    let report = good.stop().await;
    assert!(report.failures.is_empty(), "acme saw failures during the attack: {:?}", report.failures);
    assert!(report.ok > 0, "acme got nothing through");
    let reply = get(&format!("{}/healthz", gw.admin_url()), None).await;
    assert_eq!(reply.status, StatusCode::OK, "the gateway is unhealthy after the attack");
    assert!(gw.proc.exited().is_none(), "the gateway died\n{}", gw.proc.diagnostics());
    let rss_after = rss_kib(gw.proc.pid());
    assert!(
        rss_after < rss_before + RSS_GROWTH_LIMIT_KIB,
        "the gateway's RSS grew from {rss_before} KiB to {rss_after} KiB"
    );
}

/// Starts acme's load and waits until it is flowing.
async fn acme_alongside(gw: &Gateway) -> GoodTenant {
    let good = GoodTenant::start(&gw.api(), TENANT, 2);
    wait_until("acme's first requests", PATIENCE, || async { good.ok() >= 3 }).await;
    good
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_looping_plugin_times_out_then_its_breaker_opens_and_probes() {
    let dir = TempDir::new("sandbox-loop");
    let sim = start_sim(&dir, "sim", None, &[]).await;
    let guest = guest_file(&dir, "guest.wasm", sluice_plugin_host::testing::TEST_GUEST);
    let plugins = binding(
        "spin",
        &guest,
        "evil",
        "failure = \"closed\"\ntimeout = \"20ms\"",
        "failures = 3\nwindow = \"10s\"\ncooldown = \"2s\"\nprobes = 2",
        "mode = \"loop\"",
    ) + &binding(
        "spin-open",
        &guest,
        "mallory",
        "failure = \"open\"\ntimeout = \"20ms\"",
        "failures = 0",
        "mode = \"loop\"",
    );
    let mut gw = gateway(&dir, &[sim.url()], "", &["evil", "mallory"], &plugins).await;
    let rss_before = rss_kib(gw.proc.pid());
    let good = acme_alongside(&gw).await;

    let breaker = [("plugin", "spin"), ("binding", "config:tenant:evil")];
    let transitions = |state: &'static str| [("plugin", "spin"), ("binding", "config:tenant:evil"), ("state", state)];
    // Closed: each call runs to its deadline and the request is refused; the third opens it.
    for _ in 0..3 {
        assert_plugin_failed(&chat_as(&gw, "evil").await, "spin", "timeout");
    }
    assert_eq!(errors(&gw, "spin", "timeout").await, 3.0);
    assert_eq!(metric(&gw, "sluice_plugin_breaker_state", &breaker).await, 2.0, "3 failures open the breaker");

    // Open: refused at once, the plugin not run.
    for _ in 0..3 {
        assert_plugin_failed(&chat_as(&gw, "evil").await, "spin", "circuit_open");
    }
    let text = gw.metrics().await;
    assert_eq!(sum(&text, "sluice_plugin_short_circuits_total", &[("plugin", "spin")]), Some(3.0), "{text}");
    assert_eq!(sum(&text, "sluice_plugin_errors_total", &[("plugin", "spin"), ("kind", "timeout")]), Some(3.0));
    assert_eq!(sum(&text, "sluice_plugin_errors_total", &[("plugin", "spin"), ("kind", "circuit_open")]), None);

    // After the cooldown one probe runs; it loops again, so the breaker opens again.
    wait_until("the breaker lets a probe through (half-open)", PATIENCE, || async {
        let reply = chat_as(&gw, "evil").await;
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{}", reply.text());
        metric(&gw, "sluice_plugin_breaker_transitions_total", &transitions("half_open")).await >= 1.0
    })
    .await;
    wait_until("the failed probe opens the breaker again", PATIENCE, || async {
        metric(&gw, "sluice_plugin_breaker_transitions_total", &transitions("open")).await >= 2.0
            && metric(&gw, "sluice_plugin_breaker_state", &breaker).await == 2.0
    })
    .await;
    assert_eq!(errors(&gw, "spin", "timeout").await, 4.0, "exactly one probe ran");

    // Fail-open: mallory's looping plugin is cut off and skipped; its requests are served.
    for _ in 0..3 {
        let reply = chat_as(&gw, "mallory").await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    }
    assert_eq!(errors(&gw, "spin-open", "timeout").await, 3.0);
    let open_breaker = [("plugin", "spin-open"), ("binding", "config:tenant:mallory")];
    assert_eq!(metric(&gw, "sluice_plugin_breaker_state", &open_breaker).await, 0.0, "failures = 0: no breaker");

    assert_contained(&mut gw, good, rss_before).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_growth_stack_overflow_traps_in_every_hook_and_hammering_are_contained() {
    let dir = TempDir::new("sandbox-resources");
    let sim = start_sim(&dir, "sim", None, &[]).await;
    let guest = guest_file(&dir, "guest.wasm", sluice_plugin_host::testing::TEST_GUEST);
    let closed = "failure = \"closed\"\ntimeout = \"1s\"";
    let plugins = [
        binding("grow", &guest, "t-grow", closed, "", "mode = \"grow\""),
        binding("stack", &guest, "t-stack", closed, "", "mode = \"stack\""),
        binding("trap", &guest, "t-trap", closed, "", "mode = \"trap\""),
        binding("trap-route", &guest, "t-route", "failure = \"open\"", "", "mode = \"trap\""),
        binding("trap-headers", &guest, "t-headers", closed, "", "trap = \"headers\"\ntag = \"seen\""),
        binding("trap-chunk", &guest, "t-chunk", closed, "", "chunk = \"trap\""),
        binding("trap-done", &guest, "t-done", closed, "", "trap = \"done\""),
        binding("hammer", &guest, "t-hammer", "failure = \"closed\"\ntimeout = \"50ms\"", "", "mode = \"hammer\""),
    ]
    .concat();
    let tenants = ["t-grow", "t-stack", "t-trap", "t-route", "t-headers", "t-chunk", "t-done", "t-hammer"];
    let mut gw = gateway(&dir, &[sim.url()], "", &tenants, &plugins).await;
    let rss_before = rss_kib(gw.proc.pid());
    let good = acme_alongside(&gw).await;

    // Two requests each: below the default breaker threshold (5), so every call runs.
    for _ in 0..2 {
        assert_plugin_failed(&chat_as(&gw, "t-grow").await, "grow", "limit");
        assert_plugin_failed(&chat_as(&gw, "t-stack").await, "stack", "trap");
        assert_plugin_failed(&chat_as(&gw, "t-trap").await, "trap", "trap");
    }
    assert_eq!(errors(&gw, "grow", "limit").await, 2.0);
    assert_eq!(errors(&gw, "stack", "trap").await, 2.0);
    assert_eq!(errors(&gw, "trap", "trap").await, 2.0);

    // Fail-open, trapping in on-request and in route: served, both traps counted.
    for _ in 0..2 {
        let reply = chat_as(&gw, "t-route").await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    }
    assert_eq!(metric(&gw, "sluice_plugin_calls_total", &[("plugin", "trap-route"), ("hook", "route")]).await, 2.0);
    assert_eq!(errors(&gw, "trap-route", "trap").await, 4.0, "on-request and route trapped on each request");

    // On-response-headers: the worker has answered; even fail-closed leaves the headers unchanged.
    for _ in 0..2 {
        let reply = chat_as(&gw, "t-headers").await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        assert!(!reply.headers.contains_key("x-plugin-tag"), "the trapping hook's header was applied");
    }
    assert_eq!(errors(&gw, "trap-headers", "trap").await, 2.0);

    // On-response-chunk, fail-closed: a whole body becomes a 503, a stream ends with an error event.
    assert_plugin_failed(&chat_as(&gw, "t-chunk").await, "trap-chunk", "trap");
    let stream_body = json!({"model": sluice_e2e::MODEL, "messages": [{"role": "user", "content": "hello"}],
                             "max_tokens": 4, "stream": true});
    let url = format!("{}/v1/chat/completions", gw.api());
    let mut stream = SseStream::open(&url, Some(&key("t-chunk")), &stream_body).await;
    assert_eq!(stream.status, StatusCode::OK);
    let events = stream.rest().await;
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "plugin_failed", "{events:?}");
    assert!(!events.iter().any(|e| e == "[DONE]"), "{events:?}");
    assert_eq!(errors(&gw, "trap-chunk", "trap").await, 2.0);

    // On-response-done: nothing left to refuse; counted only.
    for _ in 0..2 {
        let reply = chat_as(&gw, "t-done").await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    }
    wait_until("both on-response-done traps are counted", PATIENCE, || async {
        errors(&gw, "trap-done", "trap").await == 2.0
    })
    .await;

    // Hammering host calls until the deadline: cut off, its log lines over budget dropped.
    for _ in 0..2 {
        assert_plugin_failed(&chat_as(&gw, "t-hammer").await, "hammer", "timeout");
    }
    assert_eq!(errors(&gw, "hammer", "timeout").await, 2.0);
    let dropped = metric(&gw, "sluice_plugin_log_dropped_total", &[("plugin", "hammer")]).await;
    assert!(dropped > 0.0, "hammering logs more than 100 lines per second; none were dropped");

    // None of them reached its breaker's threshold.
    for (plugin, tenant) in [("grow", "t-grow"), ("trap-route", "t-route"), ("hammer", "t-hammer")] {
        let labels = [("plugin", plugin), ("binding", &format!("config:tenant:{tenant}") as &str)];
        assert_eq!(metric(&gw, "sluice_plugin_breaker_state", &labels).await, 0.0, "{plugin}");
    }
    assert_contained(&mut gw, good, rss_before).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_plugin_output_is_refused_before_it_reaches_the_worker_or_client() {
    let dir = TempDir::new("sandbox-output");
    let worker = RecordingWorker::start().await;
    let guest = guest_file(&dir, "guest.wasm", sluice_plugin_host::testing::TEST_GUEST);
    let closed = "failure = \"closed\"\ntimeout = \"1s\"";
    let plugins = [
        binding("huge-body", &guest, "t-body", closed, "", "mode = \"huge-body\""),
        binding(
            "huge-body-open",
            &guest,
            "t-body-open",
            "failure = \"open\"\ntimeout = \"1s\"",
            "",
            "mode = \"huge-body\"",
        ),
        binding("huge-header", &guest, "t-header", closed, "", "mode = \"huge-header\""),
        binding("huge-response", &guest, "t-response", closed, "", "mode = \"huge-response\""),
    ]
    .concat();
    let tenants = ["t-body", "t-body-open", "t-header", "t-response"];
    // A client's body may be at most 1 MiB; the plugin's rewrite is 4 MiB.
    let mut gw = gateway(&dir, &[worker.url()], "max_body_bytes = 1048576", &tenants, &plugins).await;
    let rss_before = rss_kib(gw.proc.pid());
    let good = acme_alongside(&gw).await;

    for _ in 0..2 {
        assert_plugin_failed(&chat_as(&gw, "t-body").await, "huge-body", "output_limit");
        assert_plugin_failed(&chat_as(&gw, "t-header").await, "huge-header", "output_limit");
        assert_plugin_failed(&chat_as(&gw, "t-response").await, "huge-response", "output_limit");
        // Fail-open: the rewrite is dropped and the client's own request goes on.
        let reply = chat_as(&gw, "t-body-open").await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    }
    for plugin in ["huge-body", "huge-body-open", "huge-header", "huge-response"] {
        assert_eq!(errors(&gw, plugin, "output_limit").await, 2.0, "{plugin}");
    }
    let seen = worker.chats();
    let largest = seen.iter().map(|r| r.body_len).max().unwrap_or(0);
    assert!(largest < 1 << 20, "the worker received a {largest}-byte body");
    assert!(seen.iter().all(|r| !r.headers.contains_key("x-huge")), "the worker received the plugin's huge header");
    assert_contained(&mut gw, good, rss_before).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_state_is_namespaced_per_tenant_and_plugin() {
    let dir = TempDir::new("sandbox-state");
    let worker = RecordingWorker::start().await;
    let guest = guest_file(&dir, "guest.wasm", sluice_plugin_host::testing::TEST_GUEST);
    let closed = "failure = \"closed\"\norder = 1";
    let state = |mode: &str, value: &str, scope: &str| {
        format!("mode = \"{mode}\"\nkey = \"k\"\nvalue = \"{value}\"\nscope = \"{scope}\"")
    };
    let plugins = [
        // The same plugin, for acme (writes) and for evil (reads the same key).
        binding("vault", &guest, TENANT, closed, "", &state("state-write", "acme-private-answer", "binding")),
        binding("vault", &guest, "evil", closed, "", &state("state-read", "", "binding")),
        // Evil's own plugin writing the same key, in the per-tenant scope, before vault reads.
        binding(
            "thief",
            &guest,
            "evil",
            "failure = \"closed\"\norder = 0",
            "",
            &state("state-write", "stolen", "tenant"),
        ),
        // The same plugin for mallory, reserving the same counter first.
        binding("vault", &guest, "mallory", closed, "", &state("state-write", "mallory", "tenant")),
    ]
    .concat();
    let mut gw = gateway(&dir, &[worker.url()], "", &["evil", "mallory"], &plugins).await;
    let rss_before = rss_kib(gw.proc.pid());
    let last_seen = |tenant: &str| {
        let chats = worker.chats();
        let last = chats.last().unwrap_or_else(|| panic!("no request of {tenant} reached the worker")).clone();
        assert_eq!(last.header("authorization"), "", "the client's key is not forwarded");
        last
    };
    let served = |reply: &sluice_e2e::Reply| assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());

    // Mallory reserves vault's counter "k" (limit 1) for herself.
    served(&chat_as(&gw, "mallory").await);
    assert_eq!(last_seen("mallory").header("x-granted"), "true");
    // Evil: thief writes "k" in its own namespace; vault reads evil's "k": nothing.
    served(&chat_as(&gw, "evil").await);
    let evil = last_seen("evil");
    assert_eq!((evil.header("x-read"), evil.header("x-counter")), ("none".to_owned(), "0".to_owned()));
    // Acme's first write is granted: nobody else could use up its limit-1 counter.
    served(&chat_as(&gw, TENANT).await);
    assert_eq!(last_seen(TENANT).header("x-granted"), "true", "another tenant used up acme's counter");
    // Evil reads again, after acme's write: still nothing, and acme's settings are not visible.
    served(&chat_as(&gw, "evil").await);
    let evil = last_seen("evil");
    assert_eq!(evil.header("x-read"), "none", "evil read acme's cache entry");
    assert_eq!(evil.header("x-counter"), "0", "evil saw acme's counter");
    assert_eq!(evil.header("x-other-tenant"), "false", "config.tenant(\"acme\") answered for evil");
    // Acme's own counter is used up: the state is real, only out of others' reach.
    served(&chat_as(&gw, TENANT).await);
    assert_eq!(last_seen(TENANT).header("x-granted"), "false");

    let text = gw.metrics().await;
    assert_eq!(sum(&text, "sluice_plugin_errors_total", &[]).unwrap_or(0.0), 0.0, "{text}");
    // Acme's load alongside, now that the counter checks are done.
    let good = acme_alongside(&gw).await;
    // Acme's requests now interleave at the worker: evil's are the ones vault read for.
    let evil_reads = || -> Vec<_> { worker.chats().into_iter().filter(|r| r.headers.contains_key("x-read")).collect() };
    for _ in 0..3 {
        let before = evil_reads().len();
        served(&chat_as(&gw, "evil").await);
        let reads = evil_reads();
        assert_eq!(reads.len(), before + 1);
        assert_eq!(reads.last().unwrap().header("x-read"), "none");
    }
    assert_contained(&mut gw, good, rss_before).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_binding_without_a_capability_the_plugin_imports_is_refused_naming_the_import() {
    let dir = TempDir::new("sandbox-grant");
    let guest = guest_file(&dir, "guest.wasm", sluice_plugin_host::testing::TEST_GUEST);
    let plugin = format!(
        "[[plugins]]\nname = \"greedy\"\nsource = \"{}\"\n\
         capabilities = [\"log\", \"clock\", \"cache\", \"config\", \"metrics\", \"embeddings\", \"http\"]\n\
         scope = {{ tenant = \"evil\" }}\n",
        guest.display()
    );
    let listen = sluice_e2e::net::free_addr();
    let admin = sluice_e2e::net::free_addr();
    let extra = format!("{}{plugin}", tenants_toml(&["evil"]));
    let path = dir.write("sluice.toml", &config(listen, admin, &["http://127.0.0.1:9".to_owned()], "", &extra));
    let mut cmd = bins::sluice();
    cmd.arg("serve").arg("--config").arg(&path).arg("--data-dir").arg(dir.path().join("data"));
    let mut proc = Proc::spawn("sluice", cmd, dir.path());
    let status = proc.wait_exit(STARTUP).await;
    let stderr = proc.stderr();
    assert!(
        status.is_some_and(|s| !s.success()),
        "the gateway started with a plugin importing an ungranted capability: {status:?}\n{}",
        proc.diagnostics()
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    for needle in ["greedy", "imports sluice:policy/counters@0.2.0", "capability `counters`"] {
        assert!(stderr.contains(needle), "the refusal should name {needle:?}:\n{stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_http_off_the_allow_list_is_refused_in_every_spelling() {
    let dir = TempDir::new("sandbox-net");
    let sim = start_sim(&dir, "sim", None, &[]).await;
    let port = sim.addr.port();
    let guest = guest_file(&dir, "net-guest.wasm", sluice_plugin_host::testing::TEST_NET_GUEST);
    let net = |tenant: &str, url: &str, allow: &str| {
        format!(
            "[[plugins]]\nname = \"net\"\nsource = \"{}\"\ncapabilities = [\"config\", \"http\", \"embeddings\"]\n\
             scope = {{ tenant = \"{tenant}\" }}\nhttp_allow = [{allow}]\ntimeout = \"1s\"\n\
             [plugins.config]\nmode = \"http\"\nurl = \"{url}\"\ntimeout_ms = 500\n\n",
            guest.display()
        )
    };
    let off_list = "\"allowed.example\"";
    let attempts = [
        ("n-numeric", format!("http://2130706433:{port}/health")),
        ("n-dotted", format!("http://127.0.0.1:{port}/health")),
        ("n-ipv6", format!("http://[::1]:{port}/health")),
        ("n-userinfo", format!("http://allowed.example@127.0.0.1:{port}/health")),
    ];
    let mut plugins: String = attempts.iter().map(|(tenant, url)| net(tenant, url, off_list)).collect();
    // The control: the same request to a host on the list gets through.
    plugins += &net("n-allowed", &format!("http://127.0.0.1:{port}/health"), &format!("\"127.0.0.1:{port}\""));
    let tenants = ["n-numeric", "n-dotted", "n-ipv6", "n-userinfo", "n-allowed"];
    let mut gw = gateway(&dir, &[sim.url()], "", &tenants, &plugins).await;
    let rss_before = rss_kib(gw.proc.pid());
    let good = acme_alongside(&gw).await;

    let reply = chat_as(&gw, "n-allowed").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.json()["status"], 200, "the allowed host answers: {}", reply.text());
    for (tenant, url) in &attempts {
        // Credentials in a URL are refused before the host is looked at.
        let refusal = if *tenant == "n-userinfo" {
            "must not carry credentials"
        } else {
            "is not in this binding's http_allow list"
        };
        let reply = chat_as(&gw, tenant).await;
        assert_eq!(reply.status, StatusCode::OK, "the plugin answers locally: {}", reply.text());
        let answer = reply.json();
        assert!(answer.get("status").is_none(), "{url} was reached: {answer}");
        let error = answer["error"].as_str().unwrap_or_default();
        assert!(error.contains(refusal), "{url}: {error}");
    }
    assert_eq!(sum(&gw.metrics().await, "sluice_plugin_errors_total", &[("plugin", "net")]).unwrap_or(0.0), 0.0);
    assert_contained(&mut gw, good, rss_before).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_binding_for_one_tenant_loops_and_its_breaker_opens() {
    let dir = TempDir::new("sandbox-stored");
    let sim = start_sim(&dir, "sim", None, &[]).await;
    let mut gw = gateway(&dir, &[sim.url()], "", &["evil"], "").await;
    let rss_before = rss_kib(gw.proc.pid());
    let good = acme_alongside(&gw).await;
    let admin = format!("{}/admin/api", gw.admin_url());

    let bytes = sluice_plugin_host::testing::TEST_GUEST.to_vec();
    let upload =
        post_bytes(&format!("{admin}/plugins/spin/versions"), Some(ADMIN_TOKEN), "application/wasm", bytes).await;
    assert_eq!(upload.status, StatusCode::CREATED, "{}", upload.text());
    let version = upload.json()["version"].clone();
    let activate = post(
        &format!("{admin}/plugins/spin/activate"),
        Some(ADMIN_TOKEN),
        &json!({"version": version, "grants": ALL_GRANTS}),
    )
    .await;
    assert_eq!(activate.status, StatusCode::OK, "{}", activate.text());
    let bind = json!({"plugin": "spin", "scope": {"kind": "tenant", "name": "evil"}, "failure_policy": "closed",
                      "config": {"mode": "loop"}});
    let bound = post(&format!("{admin}/bindings"), Some(ADMIN_TOKEN), &bind).await;
    assert!(bound.status.is_success(), "{}", bound.text());
    let id = bound.json()["id"].clone();
    let label = format!("store:{id}");
    let breaker = [("plugin", "spin"), ("binding", label.as_str())];

    // The binding reaches the data plane; evil's requests are refused until the breaker opens
    // (the default: 5 failures within 10 s).
    wait_until("evil's stored loop binding opens its breaker", PATIENCE, || async {
        let reply = chat_as(&gw, "evil").await;
        if reply.status == StatusCode::OK {
            return false; // not swapped in yet
        }
        assert_eq!(reply.json()["error"]["code"], "plugin_failed", "{}", reply.text());
        metric(&gw, "sluice_plugin_breaker_state", &breaker).await == 2.0
    })
    .await;
    let text = gw.metrics().await;
    let failures = ["timeout", "overloaded"]
        .iter()
        .map(|kind| sum(&text, "sluice_plugin_errors_total", &[("plugin", "spin"), ("kind", kind)]).unwrap_or(0.0))
        .sum::<f64>();
    assert_eq!(failures, 5.0, "{text}");
    assert!(sum(&text, "sluice_plugin_errors_total", &[("plugin", "spin"), ("kind", "timeout")]).unwrap_or(0.0) >= 1.0);
    let shorts = metric(&gw, "sluice_plugin_short_circuits_total", &[("plugin", "spin")]).await;
    assert_plugin_failed(&chat_as(&gw, "evil").await, "spin", "circuit_open");
    let after = metric(&gw, "sluice_plugin_short_circuits_total", &[("plugin", "spin")]).await;
    assert_eq!(after, shorts + 1.0);

    // Unbinding lets evil through again.
    let url = format!("{}/admin/api/bindings/{id}", gw.admin_url());
    let deleted = sluice_e2e::client::send(http::Method::DELETE, &url, Some(ADMIN_TOKEN), None).await.unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    wait_until("evil is served once the binding is gone", PATIENCE, || async {
        chat_as(&gw, "evil").await.status == StatusCode::OK
    })
    .await;
    assert_contained(&mut gw, good, rss_before).await;
}
