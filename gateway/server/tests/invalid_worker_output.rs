//! A worker whose `2xx` is not what it claims — bytes that are not JSON, a stream whose events
//! are not JSON — is failing: the client gets a `502` or an SSE error event, never the bytes
//! relayed as a `200`, and the worker is blamed (and skipped by a retry) like for a 5xx.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests fail loudly")]

use serde_json::json;
use sluice_sim::Faults;
use sluice_test_support::metrics::value;
use sluice_test_support::{GatewayOptions, TENANT, TestGateway, chat_body};

const BRAVO: &str = "bravo";
const BRAVO_KEY: &str = "sk-bravo-0123456789";

fn stream_body(max_tokens: u32) -> serde_json::Value {
    chat_body("hello there", json!({"stream": true, "max_tokens": max_tokens}))
}

fn whole_body() -> serde_json::Value {
    chat_body("hello there", json!({"max_tokens": 4}))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_answering_garbage_gets_the_client_a_502_not_a_200() {
    let gw = TestGateway::start(1, GatewayOptions::default()).await;
    gw.sims[0].set_faults(Faults { garbage_body: true, ..Faults::default() });

    let reply = gw.chat(&whole_body()).await;
    assert_eq!(reply.status, 502, "{}", reply.text());
    let error = reply.openai_error();
    assert_eq!(error["type"], "server_error");
    assert_eq!(error["code"], "upstream_error");
    assert!(!reply.text().contains("<html>"), "the worker's bytes are not relayed: {}", reply.text());

    let text = gw.metrics_text().await;
    assert_eq!(value(&text, "sluice_upstream_errors_total", &[("endpoint", "sim-0"), ("kind", "stream")]), 1.0);
    assert_eq!(value(&text, "sluice_requests_total", &[("tenant", TENANT), ("outcome", "upstream_error")]), 1.0);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_whose_first_event_is_garbage_gets_the_client_a_502() {
    let gw = TestGateway::start(1, GatewayOptions::default()).await;
    gw.sims[0].set_faults(Faults { garbage_after_tokens: Some(0), ..Faults::default() });

    let reply = gw.client.post_json_whole(&gw.url("/v1/chat/completions"), Some(gw.key), &stream_body(4)).await;
    assert_eq!(reply.status, 502, "{}", reply.text());
    assert_eq!(reply.openai_error()["code"], "upstream_error");

    let text = gw.metrics_text().await;
    assert_eq!(value(&text, "sluice_upstream_errors_total", &[("endpoint", "sim-0"), ("kind", "stream")]), 1.0);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_turning_to_garbage_ends_with_an_error_event() {
    let gw = TestGateway::start(1, GatewayOptions::default()).await;
    gw.sims[0].set_faults(Faults { garbage_after_tokens: Some(3), ..Faults::default() });

    let events = gw.chat_stream(&stream_body(10)).await.rest().await;
    let (last, tokens) = events.split_last().expect("some events");
    assert_eq!(tokens.len(), 3, "the tokens before the garbage reached the client: {events:?}");
    assert!(tokens.iter().all(|e| e.content().is_some()));
    assert!(last.is_error(), "the stream ends with an error event: {}", last.data);
    let error = &last.json().unwrap()["error"];
    assert_eq!(error["type"], "server_error");
    assert_eq!(error["code"], "upstream_error");
    assert!(!events.iter().any(|e| e.data.contains("<html>")), "the garbage is not relayed: {events:?}");
    assert!(!events.iter().any(|e| e.is_done()), "a broken stream does not claim [DONE]");

    let text = gw.metrics_text().await;
    assert_eq!(value(&text, "sluice_upstream_errors_total", &[("endpoint", "sim-0"), ("kind", "stream")]), 1.0);
    assert_eq!(value(&text, "sluice_requests_total", &[("tenant", TENANT), ("outcome", "upstream_error")]), 1.0);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_before_the_first_byte_is_retried_and_another_tenant_sees_no_failure() {
    // Ejection out of the way: this test is about retries alone.
    let opts = GatewayOptions {
        ejection_failures: Some(100),
        extra_toml: format!("[[tenants]]\nname = \"{BRAVO}\"\napi_keys = [\"{BRAVO_KEY}\"]\n"),
        ..GatewayOptions::default()
    };
    let gw = TestGateway::start(2, opts).await;
    gw.sims[0].set_faults(Faults { garbage_body: true, garbage_after_tokens: Some(0), ..Faults::default() });

    let url = gw.url("/v1/chat/completions");
    for i in 0..6 {
        if i % 2 == 0 {
            let events = gw.client.post_stream(&url, Some(BRAVO_KEY), &stream_body(4)).await.rest().await;
            assert!(events.last().is_some_and(|e| e.is_done()), "request {i}: {events:?}");
            assert!(!events.iter().any(|e| e.is_error()), "request {i}: {events:?}");
        } else {
            let reply = gw.client.post_json_whole(&url, Some(BRAVO_KEY), &whole_body()).await;
            assert_eq!(reply.status, 200, "request {i}: {}", reply.text());
            assert!(reply.json()["choices"].is_array(), "request {i}: {}", reply.text());
        }
    }
    let bad = gw.sims[0].stats();
    let good = gw.sims[1].stats();
    assert!(bad.requests_received >= 1, "the garbage worker was tried: {bad:?}");
    assert_eq!(good.requests_completed, 6, "every request was answered by the good worker");
    let text = gw.metrics_text().await;
    assert_eq!(value(&text, "sluice_upstream_retries_total", &[]), bad.requests_received as f64);
    assert_eq!(
        value(&text, "sluice_upstream_errors_total", &[("endpoint", "sim-0"), ("kind", "stream")]),
        bad.requests_received as f64
    );
    assert_eq!(value(&text, "sluice_requests_total", &[("tenant", BRAVO), ("outcome", "ok")]), 6.0);
    assert_eq!(value(&text, "sluice_requests_total", &[("tenant", BRAVO), ("outcome", "upstream_error")]), 0.0);
    gw.shutdown().await;
}
