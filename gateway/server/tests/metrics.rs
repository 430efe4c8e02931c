//! Usage accounting: every request that reached a worker is counted in `/metrics` under its
//! tenant, whether or not the client asked to see usage.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests fail loudly")]

use std::time::Duration;

use serde_json::json;
use sluice_test_support::metrics::value;
use sluice_test_support::{GatewayOptions, MODEL, TENANT, TestGateway, chat_body, wait_until_async};

const WAIT: Duration = Duration::from_secs(10);

/// Waits until `/metrics` has counted `n` finished requests for the tenant, then returns the text.
async fn metrics_after(gw: &TestGateway, n: f64) -> String {
    let counted =
        wait_until_async(WAIT, || async { gw.metric("sluice_requests_total", &[("tenant", TENANT)]).await >= n }).await;
    assert!(counted, "{n} requests never showed up in /metrics:\n{}", gw.metrics_text().await);
    gw.metrics_text().await
}

fn tokens(text: &str, kind: &str) -> f64 {
    value(text, "sluice_tokens_total", &[("tenant", TENANT), ("model", MODEL), ("type", kind)])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_without_include_usage_hides_usage_from_client_but_counts_it() {
    let gw = TestGateway::start(1, GatewayOptions::default()).await;
    let mut stream = gw.chat_stream(&chat_body("count my tokens", json!({"stream": true, "max_tokens": 7}))).await;
    let events = stream.rest().await;
    assert!(events.last().is_some_and(|e| e.is_done()), "{events:?}");
    assert!(!events.iter().any(|e| e.has_usage()), "client did not ask for usage: {events:?}");
    assert!(
        !events.iter().any(|e| e.json().is_some_and(|v| v["choices"].as_array().is_some_and(Vec::is_empty))),
        "no usage-only chunk reaches the client"
    );

    let text = metrics_after(&gw, 1.0).await;
    let sim = gw.sims[0].stats();
    assert!(sim.prompt_tokens > 0);
    assert_eq!(tokens(&text, "prompt"), sim.prompt_tokens as f64, "prompt tokens as the worker counted them");
    assert_eq!(tokens(&text, "completion"), 7.0);
    assert_eq!(value(&text, "sluice_requests_total", &[("tenant", TENANT), ("model", MODEL), ("outcome", "ok")]), 1.0);
    assert_eq!(value(&text, "gen_ai_server_time_to_first_token_seconds_count", &[("tenant", TENANT)]), 1.0);
    assert_eq!(value(&text, "gen_ai_server_time_per_output_token_seconds_count", &[("tenant", TENANT)]), 1.0);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_with_include_usage_gets_exactly_one_usage_chunk() {
    let gw = TestGateway::start(1, GatewayOptions::default()).await;
    let body = chat_body(
        "count my tokens",
        json!({"stream": true, "max_tokens": 5, "stream_options": {"include_usage": true}}),
    );
    let events = gw.chat_stream(&body).await.rest().await;
    let usage: Vec<_> = events.iter().filter(|e| e.has_usage()).collect();
    assert_eq!(usage.len(), 1, "exactly one usage chunk: {events:?}");
    let n = events.len();
    assert!(events[n - 1].is_done());
    let u = events[n - 2].json().expect("usage chunk right before [DONE]");
    assert_eq!(u["choices"], json!([]));
    assert_eq!(u["usage"]["completion_tokens"], 5);
    let prompt_tokens = u["usage"]["prompt_tokens"].as_u64().unwrap();

    let text = metrics_after(&gw, 1.0).await;
    assert_eq!(tokens(&text, "prompt"), prompt_tokens as f64);
    assert_eq!(tokens(&text, "completion"), 5.0);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_answers_are_counted_and_repeated_prompts_count_cached_tokens() {
    // One worker, so the second request finds the first one's KV blocks.
    let gw = TestGateway::start(1, GatewayOptions::default()).await;
    let long = "the quick brown fox jumps over the lazy dog ".repeat(12);
    let first = gw.chat(&chat_body(&long, json!({"max_tokens": 3}))).await;
    assert_eq!(first.status, 200, "{}", first.text());
    let u1 = first.json()["usage"].clone();
    assert_eq!(u1["completion_tokens"], 3);
    assert_eq!(u1["prompt_tokens_details"]["cached_tokens"], 0);

    let text = metrics_after(&gw, 1.0).await;
    assert_eq!(tokens(&text, "prompt"), u1["prompt_tokens"].as_f64().unwrap());
    assert_eq!(tokens(&text, "completion"), 3.0);
    assert_eq!(tokens(&text, "cached"), 0.0);
    // Whole answers have no time to first token.
    assert_eq!(value(&text, "gen_ai_server_time_to_first_token_seconds_count", &[]), 0.0);

    let second = gw.chat(&chat_body(&long, json!({"max_tokens": 3}))).await;
    assert_eq!(second.status, 200, "{}", second.text());
    let cached = second.json()["usage"]["prompt_tokens_details"]["cached_tokens"].as_f64().unwrap();
    assert!(cached > 0.0, "the repeated prompt hit the prefix cache");

    let text = metrics_after(&gw, 2.0).await;
    assert_eq!(tokens(&text, "cached"), cached);
    assert_eq!(tokens(&text, "prompt"), 2.0 * u1["prompt_tokens"].as_f64().unwrap());
    assert_eq!(tokens(&text, "completion"), 6.0);
    assert_eq!(value(&text, "sluice_requests_total", &[("tenant", TENANT), ("outcome", "ok")]), 2.0);
    assert_eq!(gw.sims[0].stats().cached_tokens as f64, cached);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embeddings_count_prompt_tokens_and_request_ids_round_trip() {
    let gw = TestGateway::start(1, GatewayOptions::default()).await;
    let body = json!({"model": MODEL, "input": "embed these few words please"});
    let mut req = sluice_test_support::request(
        http::Method::POST,
        &gw.url("/v1/embeddings"),
        Some(gw.key),
        sluice_test_support::full_body(body.to_string()),
    );
    req.headers_mut().insert("x-request-id", http::HeaderValue::from_static("test-req-42"));
    let reply = gw.client.send_whole(req).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.headers["x-request-id"], "test-req-42", "the client's request id comes back");
    let v = reply.json();
    assert_eq!(v["data"][0]["embedding"].as_array().unwrap().len(), 384);
    let prompt_tokens = v["usage"]["prompt_tokens"].as_f64().unwrap();
    assert!(prompt_tokens > 0.0);

    let text = metrics_after(&gw, 1.0).await;
    assert_eq!(tokens(&text, "prompt"), prompt_tokens);
    assert_eq!(tokens(&text, "completion"), 0.0);
    assert_eq!(value(&text, "sluice_requests_total", &[("tenant", TENANT), ("outcome", "ok")]), 1.0);
    gw.shutdown().await;
}
