//! Plugins end to end: the built-in router picks endpoints, and on-request plugins loaded from
//! files deny, answer, rewrite and fail (closed and open) in front of real simulated workers.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests fail loudly")]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::json;
use sluice_test_support::{GatewayOptions, MODEL, TestGateway, chat_body, wait_until_async};

/// The test guest written to a file of its own, so the gateway loads it like an operator's.
fn guest_file(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sluice-e2e-plugins-{}-{test}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("guest.wasm");
    std::fs::write(&path, sluice_plugin_host::testing::TEST_GUEST).unwrap();
    path
}

/// The test guest imports every capability.
const CAPABILITIES: &str =
    r#"capabilities = ["log", "clock", "counters", "cache", "config", "metrics", "embeddings", "http"]"#;

async fn with_plugin(test: &str, mode: &str, extra: &str) -> TestGateway {
    let path = guest_file(test);
    let toml = format!(
        "[[plugins]]\nname = \"guest\"\nsource = \"{}\"\n{CAPABILITIES}\n\
         {extra}\n[plugins.config]\nmode = \"{mode}\"\ntag = \"e2e\"\n",
        path.display()
    );
    TestGateway::start(2, GatewayOptions { extra_toml: toml, ..GatewayOptions::default() }).await
}

fn chat() -> serde_json::Value {
    chat_body("hello", json!({"max_tokens": 3}))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_builtin_router_routes_every_request() {
    let gw = TestGateway::start(2, GatewayOptions::default()).await;
    for _ in 0..6 {
        let reply = gw.chat(&chat()).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    assert!(gw.metric("sluice_plugin_calls_total", &[("plugin", "router"), ("hook", "route")]).await >= 6.0);
    // Sequential requests leave both workers idle, and the host rotates the candidates' order,
    // so the router's first-of-equals choice spreads them.
    for (i, sim) in gw.sims.iter().enumerate() {
        assert!(sim.stats().requests_received >= 1, "worker {i} served nothing");
    }
    gw.shutdown().await;
}

/// What each worker has received so far.
fn received(gw: &TestGateway) -> Vec<u64> {
    gw.sims.iter().map(|s| s.stats().requests_received).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_builtin_router_keeps_a_conversation_where_its_prefix_is_cached() {
    let gw = TestGateway::start(2, GatewayOptions::default()).await;
    for topic in ["alpha", "bravo", "charlie"] {
        let before = received(&gw);
        let cached_before: u64 = gw.sims.iter().map(|s| s.stats().cached_tokens).sum();
        // About 2 KB of system prompt: 30 blocks the next turns share.
        let system = format!("You answer questions about the {topic} fleet, briefly and exactly. ").repeat(30);
        let mut messages = vec![json!({"role": "system", "content": system})];
        for turn in 0..6 {
            messages.push(json!({"role": "user", "content": format!("question {turn} about {topic}")}));
            let reply = gw.chat(&json!({"model": MODEL, "max_tokens": 3, "messages": messages})).await;
            assert_eq!(reply.status, 200, "{}", reply.text());
            messages.push(json!({"role": "assistant", "content": reply.json()["choices"][0]["message"]["content"]}));
        }
        let served: Vec<u64> = received(&gw).iter().zip(&before).map(|(after, before)| after - before).collect();
        // Sequential requests with nothing in common alternate between the two idle workers
        // (the_builtin_router_routes_every_request); these share a prefix and stay together.
        assert!(served.contains(&6), "one worker served every turn about {topic}: {served:?}");
        let cached: u64 = gw.sims.iter().map(|s| s.stats().cached_tokens).sum();
        assert!(cached > cached_before, "the worker reused the conversation's cached prefix");
    }
    let held = gw.metric("sluice_prefix_routed_blocks_total", &[("held", "yes")]).await;
    let not_held = gw.metric("sluice_prefix_routed_blocks_total", &[("held", "no")]).await;
    assert!(held > 10.0 * 30.0 && not_held > 0.0, "held {held}, not held {not_held}");
    assert!(gw.metric("sluice_prefix_index_blocks", &[]).await > 0.0);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_denies_with_its_status_and_message() {
    let gw = with_plugin("deny", "deny", "").await;
    let reply = gw.chat(&chat()).await;
    assert_eq!(reply.status, 403, "{}", reply.text());
    let error = reply.openai_error();
    assert_eq!(error["code"], "policy_denied");
    assert_eq!(error["message"], "denied by test guest for tenant acme");
    assert_eq!(gw.metric("sluice_plugin_calls_total", &[("plugin", "guest"), ("hook", "on-request")]).await, 1.0);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_answers_locally() {
    let gw = with_plugin("respond", "respond", "").await;
    let reply = gw.chat(&chat()).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json(), json!({"answered_by": "test-guest"}));
    assert!(reply.headers.contains_key("x-request-id"));
    assert_eq!(gw.metric("sluice_plugin_calls_total", &[("plugin", "router"), ("hook", "route")]).await, 0.0);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_rewrites_the_model() {
    let gw = with_plugin("rewrite", "rewrite", "").await;
    // Without a model in its config, "rewrite" keeps the model and adds a header for the worker.
    let reply = gw.chat(&chat()).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    gw.shutdown().await;

    let path = guest_file("rewrite-model");
    let toml = format!(
        "[[plugins]]\nname = \"guest\"\nsource = \"{}\"\ncapabilities = [\"log\", \"clock\", \"counters\", \"cache\", \
         \"config\", \"metrics\", \"embeddings\", \"http\"]\n[plugins.config]\nmode = \"rewrite\"\nmodel = \"nope\"\n",
        path.display()
    );
    let gw = TestGateway::start(1, GatewayOptions { extra_toml: toml, ..GatewayOptions::default() }).await;
    let reply = gw.chat(&chat()).await;
    assert_eq!(reply.status, 404, "the rewritten model is resolved like the client's: {}", reply.text());
    assert!(reply.openai_error()["message"].as_str().unwrap().contains("'nope'"));
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_plugin_fails_closed_or_open() {
    let gw = with_plugin("trap-closed", "trap", "").await;
    let reply = gw.chat(&chat()).await;
    assert_eq!(reply.status, 503, "{}", reply.text());
    let error = reply.openai_error();
    assert_eq!(error["code"], "plugin_failed");
    assert_eq!(error["message"], "the policy plugin 'guest' failed (trap); the request was not processed");
    assert_eq!(gw.metric("sluice_plugin_errors_total", &[("plugin", "guest"), ("kind", "trap")]).await, 1.0);
    gw.shutdown().await;

    let gw = with_plugin("trap-open", "trap", "failure = \"open\"").await;
    let reply = gw.chat(&chat()).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_looping_plugin_is_cut_off_at_its_deadline() {
    let gw = with_plugin("loop", "loop", "timeout = \"20ms\"").await;
    let started = Instant::now();
    let reply = gw.chat(&chat()).await;
    assert_eq!(reply.status, 503, "{}", reply.text());
    assert!(reply.openai_error()["message"].as_str().unwrap().contains("(timeout)"));
    assert!(started.elapsed() < Duration::from_secs(2));
    // The gateway is still serving.
    let reply = gw.client.get(&gw.url("/v1/models"), Some(gw.key)).await;
    assert_eq!(reply.status, 200);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_scoped_binding_runs_only_for_its_tenant() {
    let gw = with_plugin("scope-other", "deny", "scope = { tenant = \"someone-else\" }").await;
    let reply = gw.chat(&chat()).await;
    assert_eq!(reply.status, 200, "another tenant's binding does not run for acme: {}", reply.text());
    assert_eq!(gw.metric("sluice_plugin_calls_total", &[("plugin", "guest"), ("hook", "on-request")]).await, 0.0);
    gw.shutdown().await;

    let gw = with_plugin("scope-acme", "deny", "scope = { tenant = \"acme\" }").await;
    let reply = gw.chat(&chat()).await;
    assert_eq!(reply.status, 403, "{}", reply.text());
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_output_over_the_limits_never_reaches_the_worker() {
    for mode in ["huge-header", "huge-body", "huge-response"] {
        let toml = format!(
            "[[plugins]]\nname = \"guest\"\nsource = \"{}\"\n{CAPABILITIES}\ntimeout = \"1s\"\n[plugins.config]\nmode = \"{mode}\"\nsize = \"2097152\"\n",
            guest_file(mode).display()
        );
        // The guest's body is 2 MiB, over the 1 MiB a client may send here; building it on a busy
        // machine may take longer than the default deadline.
        let options = GatewayOptions { extra_toml: toml, max_body_bytes: Some(1 << 20), ..GatewayOptions::default() };
        let gw = TestGateway::start(2, options).await;
        let reply = gw.chat(&chat()).await;
        assert_eq!(reply.status, 503, "{mode}: {}", reply.text());
        assert_eq!(reply.openai_error()["code"], "plugin_failed", "{mode}: {}", reply.text());
        let kind = [("plugin", "guest"), ("kind", "output_limit")];
        assert_eq!(gw.metric("sluice_plugin_errors_total", &kind).await, 1.0, "{mode}: {}", reply.text());
        let received: u64 = gw.sims.iter().map(|s| s.stats().requests_received).sum();
        assert_eq!(received, 0, "{mode}: nothing was forwarded");
        gw.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_looping_plugin_trips_its_breaker_and_is_then_skipped() {
    let extra = "timeout = \"5ms\"\n[plugins.breaker]\nfailures = 2\ncooldown = \"1h\"";
    let gw = with_plugin("breaker", "loop", extra).await;
    for _ in 0..2 {
        let reply = gw.chat(&chat()).await;
        assert!(reply.openai_error()["message"].as_str().unwrap().contains("(timeout)"), "{}", reply.text());
    }
    let labels = [("plugin", "guest"), ("binding", "config:global")];
    assert_eq!(gw.metric("sluice_plugin_breaker_state", &labels).await, 2.0, "open after two timeouts");
    let reply = gw.chat(&chat()).await;
    assert_eq!(reply.status, 503, "fail-closed while open: {}", reply.text());
    assert!(reply.openai_error()["message"].as_str().unwrap().contains("(circuit_open)"), "{}", reply.text());
    assert_eq!(gw.metric("sluice_plugin_short_circuits_total", &[("plugin", "guest")]).await, 1.0);
    assert_eq!(gw.metric("sluice_plugin_errors_total", &[("plugin", "guest"), ("kind", "timeout")]).await, 2.0);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_hooks_see_the_answer() {
    let gw = with_plugin("response-hooks", "continue", "").await;
    let reply = gw.chat(&chat()).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.headers["x-plugin-tag"], "e2e", "on-response-headers set a header");
    assert_eq!(reply.headers["x-seen-status"], "200");
    assert!(reply.headers.contains_key("x-request-id"));
    let done = gw.metric("sluice_plugin_calls_total", &[("plugin", "guest"), ("hook", "on-response-done")]).await;
    assert_eq!(done, 1.0, "on-response-done ran once the record was emitted");

    let mut stream = gw.chat_stream(&chat_body("hello", json!({"max_tokens": 3, "stream": true}))).await;
    let events = stream.rest().await;
    assert!(events.iter().any(|e| e.is_done()), "the stream ended");
    // The relay reports the stream once its last frame is out; give it a moment.
    let mut done = 0.0;
    for _ in 0..50 {
        done = gw.metric("sluice_plugin_calls_total", &[("plugin", "guest"), ("hook", "on-response-done")]).await;
        if done >= 2.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(done, 2.0, "and at the end of a stream");
    gw.shutdown().await;
}

/// The test guest with its on-response-chunk hook in `chunk` mode (`redact` replaces `word`).
async fn with_chunk_plugin(test: &str, chunk: &str, word: &str, extra: &str) -> TestGateway {
    let path = guest_file(test);
    let toml = format!(
        "[[plugins]]\nname = \"guest\"\nsource = \"{}\"\n{CAPABILITIES}\n{extra}\n\
         [plugins.config]\nchunk = \"{chunk}\"\nword = \"{word}\"\n",
        path.display()
    );
    TestGateway::start(1, GatewayOptions { extra_toml: toml, ..GatewayOptions::default() }).await
}

fn stream_body() -> serde_json::Value {
    chat_body("hello", json!({"max_tokens": 4, "stream": true}))
}

async fn completion_tokens(gw: &TestGateway) -> f64 {
    gw.metric("sluice_tokens_total", &[("type", "completion")]).await
}

/// A stream's record is emitted after its last frame went out; wait for it rather than guess.
async fn wait_for_tokens(gw: &TestGateway, want: f64) {
    let reached = wait_until_async(Duration::from_secs(5), || async { completion_tokens(gw).await >= want }).await;
    assert!(reached, "completion tokens never reached {want}: {}", completion_tokens(gw).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunk_hooks_rewrite_stream_events_and_whole_bodies() {
    let gw = with_chunk_plugin("chunk-redact", "redact", MODEL, "").await;
    let mut stream = gw.chat_stream(&stream_body()).await;
    let events = stream.rest().await;
    let chunks: Vec<_> = events.iter().filter(|e| !e.is_done()).collect();
    assert!(events.last().is_some_and(|e| e.is_done()), "{events:?}");
    assert!(chunks.len() >= 4, "{events:?}");
    for event in &chunks {
        assert_eq!(event.json().unwrap()["model"], "***", "every event rewritten: {}", event.data);
    }
    let text: String = chunks.iter().filter_map(|e| e.content()).collect();
    assert!(!text.is_empty(), "the content itself is untouched");

    let reply = gw.chat(&chat_body("hello", json!({"max_tokens": 4}))).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let body = reply.json();
    assert_eq!(body["model"], "***", "a whole body is offered once: {body}");
    assert_eq!(body["usage"]["completion_tokens"], 4);
    // Usage is measured on what the worker sent, before the plugin.
    wait_for_tokens(&gw, 8.0).await;
    let offered = gw.metric("sluice_plugin_calls_total", &[("plugin", "guest"), ("hook", "on-response-chunk")]).await;
    assert_eq!(offered, chunks.len() as f64 + 1.0, "every event with data once, and the whole body once");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunk_hooks_drop_stream_events() {
    let gw = with_chunk_plugin("chunk-drop", "drop-odd", "", "").await;
    let mut stream = gw.chat_stream(&stream_body()).await;
    let events = stream.rest().await;
    assert!(events.last().is_some_and(|e| e.is_done()), "[DONE] is never offered, so never dropped");
    let offered = gw.metric("sluice_plugin_calls_total", &[("plugin", "guest"), ("hook", "on-response-chunk")]).await;
    let offered = offered as usize;
    assert!(offered >= 4, "{offered}");
    assert_eq!(events.len() - 1, offered - offered / 2, "odd events dropped: {events:?}");
    wait_for_tokens(&gw, 4.0).await;
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_chunk_hook_ends_the_stream_when_closed_and_is_skipped_when_open() {
    let gw = with_chunk_plugin("chunk-trap", "trap", "", "").await;
    let mut stream = gw.chat_stream(&stream_body()).await;
    let events = stream.rest().await;
    assert!(events.first().is_some_and(|e| e.json().is_some() && !e.is_error()), "the first event passed: {events:?}");
    let last = events.last().unwrap();
    assert!(last.is_error(), "the stream ends with an error event: {events:?}");
    assert_eq!(last.json().unwrap()["error"]["code"], "plugin_failed");
    assert!(!events.iter().any(|e| e.is_done()));

    // A whole body is withheld, but the tokens the worker spent are still accounted.
    let reply = gw.chat(&chat_body("hello", json!({"max_tokens": 4}))).await;
    assert_eq!(reply.status, 503, "{}", reply.text());
    assert_eq!(reply.openai_error()["code"], "plugin_failed");
    wait_for_tokens(&gw, 4.0).await;
    assert_eq!(gw.metric("sluice_plugin_errors_total", &[("plugin", "guest"), ("kind", "trap")]).await, 2.0);
    gw.shutdown().await;

    let gw = with_chunk_plugin("chunk-trap-open", "trap", "", "failure = \"open\"").await;
    let mut stream = gw.chat_stream(&stream_body()).await;
    let events = stream.rest().await;
    assert!(events.last().is_some_and(|e| e.is_done()), "{events:?}");
    assert!(!events.iter().any(|e| e.is_error()));
    let reply = gw.chat(&chat_body("hello", json!({"max_tokens": 4}))).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    gw.shutdown().await;
}
