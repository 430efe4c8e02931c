//! Responses API follow-ups (`previous_response_id`) reach the worker that holds their
//! predecessor, through the whole gateway against simulated workers that keep stored responses
//! as vLLM does (only the worker that made a response can continue it; any other answers 404).
//!
//! The pool's router is the test guest, which picks the last of its rotating candidates: left to
//! it, consecutive requests alternate between the two workers, so a chain of follow-ups only
//! succeeds if the gateway pins each one to its predecessor's worker.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests fail loudly")]

use serde_json::{Value, json};
use sluice_sim::{OutputLength, SimConfig};
use sluice_test_support::{GatewayOptions, MODEL, Reply, TestGateway, TimedEvent};

const APIS: &str = r#"apis = ["chat", "responses"]"#;
const OTHER: &str = "globex";
const OTHER_KEY: &str = "sk-globex-0123456789";
/// The test guest imports every capability.
const CAPABILITIES: &str =
    r#"capabilities = ["log", "clock", "counters", "cache", "config", "metrics", "embeddings", "http"]"#;

/// Two workers (unless `upstream_urls` names others) behind an alternating router; `extra` is
/// more config (`[redis]`).
fn options(test: &str, extra: &str) -> GatewayOptions {
    let dir = std::env::temp_dir().join(format!("sluice-affinity-{}-{test}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let guest = dir.join("guest.wasm");
    std::fs::write(&guest, sluice_plugin_host::testing::TEST_GUEST).unwrap();
    GatewayOptions {
        sim: SimConfig { output: OutputLength { min: 4, max: 4, fixed: Some(4) }, ..SimConfig::default() },
        pool_toml: APIS.to_owned(),
        extra_toml: format!(
            "[[tenants]]\nname = \"{OTHER}\"\napi_keys = [\"{OTHER_KEY}\"]\n\n\
             [[plugins]]\nname = \"router\"\nsource = \"{}\"\n{CAPABILITIES}\n\
             [plugins.config]\nmode = \"continue\"\n\n{extra}",
            guest.display()
        ),
        ..GatewayOptions::default()
    }
}

fn body(input: &str, previous: Option<&str>, extra: Value) -> Value {
    let mut body = json!({"model": MODEL, "input": input});
    if let Some(previous) = previous {
        body["previous_response_id"] = json!(previous);
    }
    body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    body
}

/// Requests each worker has received so far.
fn received(workers: &TestGateway) -> Vec<u64> {
    workers.sims.iter().map(|s| s.stats().requests_received).collect()
}

/// Which worker took the one request sent since `before`.
fn served_by(workers: &TestGateway, before: &[u64]) -> usize {
    let now = received(workers);
    let moved: Vec<usize> = (0..now.len()).filter(|&i| now[i] != before[i]).collect();
    assert_eq!(moved.len(), 1, "exactly one worker took the request: {before:?} → {now:?}");
    assert_eq!(now[moved[0]], before[moved[0]] + 1);
    moved[0]
}

/// `POST /v1/responses` through `gw` with `key`, read whole; the worker of `workers` that took it.
async fn whole(gw: &TestGateway, workers: &TestGateway, key: &str, body: &Value) -> (Reply, usize) {
    let before = received(workers);
    let reply = gw.client.post_json_whole(&gw.url("/v1/responses"), Some(key), body).await;
    (reply, served_by(workers, &before))
}

/// A streamed `POST /v1/responses` read to its end: the response's id (from `response.created`)
/// and the worker that took it. The stream must end with `response.completed`.
async fn streamed(gw: &TestGateway, workers: &TestGateway, body: &Value) -> (String, usize) {
    let before = received(workers);
    let mut body = body.clone();
    body["stream"] = json!(true);
    let mut stream = gw.client.post_stream(&gw.url("/v1/responses"), Some(gw.key), &body).await;
    let events = stream.rest().await;
    assert!(!stream.broke, "the stream ended cleanly");
    let types: Vec<String> = events.iter().map(event_type).collect();
    assert_eq!(types.first().map(String::as_str), Some("response.created"), "{types:?}");
    assert_eq!(types.last().map(String::as_str), Some("response.completed"), "{types:?}");
    let id = events[0].json().unwrap()["response"]["id"].as_str().unwrap().to_owned();
    (id, served_by(workers, &before))
}

fn event_type(e: &TimedEvent) -> String {
    e.json().and_then(|v| v["type"].as_str().map(str::to_owned)).unwrap_or_default()
}

fn id_of(reply: &Reply) -> String {
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()["id"].as_str().unwrap().to_owned()
}

async fn followups(gw: &TestGateway, result: &str) -> f64 {
    gw.metric("sluice_response_followups_total", &[("result", result)]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chains_of_follow_ups_stay_on_the_worker_holding_their_predecessor() {
    let gw = TestGateway::start(2, options("chains", "")).await;
    let key = gw.key;

    // Left to the router, consecutive requests alternate between the workers.
    let (a, first) = whole(&gw, &gw, key, &body("hello", None, json!({"store": false}))).await;
    let (b, second) = whole(&gw, &gw, key, &body("hello", None, json!({"store": false}))).await;
    assert_eq!((a.status.as_u16(), b.status.as_u16()), (200, 200));
    assert_ne!(first, second, "the router spreads requests");

    // Whole answers: each follow-up continues the one before, on the same worker.
    let (reply, mut worker) = whole(&gw, &gw, key, &body("start", None, json!({}))).await;
    let mut previous = id_of(&reply);
    for step in 1..=10 {
        let (reply, took) = whole(&gw, &gw, key, &body(&format!("step {step}"), Some(&previous), json!({}))).await;
        let id = id_of(&reply);
        assert_eq!(took, worker, "step {step} went to the worker holding {previous}");
        assert_ne!(id, previous);
        (previous, worker) = (id, took);
    }

    // Streams: the id comes in `response.created`, the record when the stream completes.
    let (mut previous, mut worker) = streamed(&gw, &gw, &body("start streaming", None, json!({}))).await;
    for step in 1..=10 {
        let (id, took) = streamed(&gw, &gw, &body(&format!("stream {step}"), Some(&previous), json!({}))).await;
        assert_eq!(took, worker, "streamed step {step} went to the worker holding {previous}");
        (previous, worker) = (id, took);
    }
    assert_eq!(followups(&gw, "pinned").await, 20.0);

    // An id nobody recorded is routed as usual, and the worker's own 404 reaches the client.
    let made_up = "resp_00000000000000000000000000000000";
    let (reply, _) = whole(&gw, &gw, key, &body("what?", Some(made_up), json!({}))).await;
    assert_eq!(reply.status, 404, "{}", reply.text());
    assert_eq!(
        reply.json(),
        json!({"error": {"message": format!("Response with id '{made_up}' not found."),
                         "type": "invalid_request_error", "param": "response_id", "code": 404}})
    );
    assert_eq!(followups(&gw, "not_found").await, 1.0);
    assert_eq!(followups(&gw, "pinned").await, 20.0);

    // `store: false`: nothing is recorded, so its follow-up is not pinned either.
    let (reply, _) = whole(&gw, &gw, key, &body("forget me", None, json!({"store": false}))).await;
    let unstored = id_of(&reply);
    let _ = whole(&gw, &gw, key, &body("and?", Some(&unstored), json!({}))).await;
    assert_eq!(followups(&gw, "not_found").await, 2.0);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_is_never_routed_by_another_tenants_response() {
    let gw = TestGateway::start(2, options("tenants", "")).await;
    let (reply, holder) = whole(&gw, &gw, gw.key, &body("mine", None, json!({}))).await;
    let id = id_of(&reply);

    // The other tenant sends the same id twice: not pinned, so the router alternates, and the
    // worker that does not hold the response refuses it.
    let follow = body("yours?", Some(&id), json!({}));
    let (one, first) = whole(&gw, &gw, OTHER_KEY, &follow).await;
    let (two, second) = whole(&gw, &gw, OTHER_KEY, &follow).await;
    assert_ne!(first, second, "routed as usual, not pinned to {holder}");
    let refused = if first == holder { &two } else { &one };
    assert_eq!(refused.status, 404, "{}", refused.text());
    assert_eq!(followups(&gw, "not_found").await, 2.0);
    assert_eq!(followups(&gw, "pinned").await, 0.0);

    // Its own tenant's follow-up is pinned.
    let (reply, took) = whole(&gw, &gw, gw.key, &follow).await;
    assert_eq!((reply.status.as_u16(), took), (200, holder), "{}", reply.text());
    assert_eq!(followups(&gw, "pinned").await, 1.0);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_sharing_redis_continue_each_others_responses() {
    let prefix = format!("test-affinity-{}-{}:", std::process::id(), rand_suffix());
    let redis = format!("[redis]\nurl = \"redis://127.0.0.1:6379\"\nkey_prefix = \"{prefix}\"\ntimeout = \"500ms\"\n");
    let one = TestGateway::start(2, options("replica-1", &redis)).await;
    let two = TestGateway::start(
        1,
        GatewayOptions {
            upstream_urls: one.sims.iter().map(|s| s.base_url()).collect(),
            ..options("replica-2", &redis)
        },
    )
    .await;

    // Made through replica 1, continued through replica 2 (which never saw it) on its worker;
    // then back the other way, whole and streamed.
    let (reply, holder) = whole(&one, &one, one.key, &body("start", None, json!({}))).await;
    let mut previous = id_of(&reply);
    for step in 0..4 {
        let gw = if step % 2 == 0 { &two } else { &one };
        let (reply, took) = whole(gw, &one, gw.key, &body(&format!("step {step}"), Some(&previous), json!({}))).await;
        assert_eq!(took, holder, "step {step}");
        previous = id_of(&reply);
    }
    let (streamed_id, holder) = streamed(&two, &one, &body("stream", Some(&previous), json!({}))).await;
    let (reply, took) = whole(&one, &one, one.key, &body("after the stream", Some(&streamed_id), json!({}))).await;
    assert_eq!((reply.status.as_u16(), took), (200, holder), "{}", reply.text());
    assert_eq!(followups(&one, "pinned").await + followups(&two, "pinned").await, 6.0);
    assert_eq!(followups(&two, "not_found").await, 0.0);
    assert_eq!(one.metric("sluice_response_affinity_backend_errors_total", &[]).await, 0.0);

    // Through Redis too, another tenant's id is not found.
    let _ = whole(&two, &one, OTHER_KEY, &body("yours?", Some(&streamed_id), json!({}))).await;
    assert_eq!(followups(&two, "not_found").await, 1.0);
    two.shutdown().await;
    one.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_down_follow_ups_are_still_pinned_by_this_replica() {
    // Nothing listens on port 1.
    let redis = "[redis]\nurl = \"redis://127.0.0.1:1\"\nkey_prefix = \"down:\"\ntimeout = \"100ms\"\n";
    let gw = TestGateway::start(2, options("redis-down", redis)).await;
    let (reply, holder) = whole(&gw, &gw, gw.key, &body("start", None, json!({}))).await;
    let id = id_of(&reply);
    let (reply, took) = whole(&gw, &gw, gw.key, &body("next", Some(&id), json!({}))).await;
    assert_eq!((reply.status.as_u16(), took), (200, holder), "{}", reply.text());
    assert!(gw.metric("sluice_response_affinity_backend_errors_total", &[]).await >= 1.0);
    gw.shutdown().await;
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0);
    h.finish()
}
