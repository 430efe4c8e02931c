//! Requests the gateway refuses itself, each in the OpenAI error shape, none reaching a worker.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests fail loudly")]

use bytes::Bytes;
use http::Method;
use serde_json::json;
use sluice_test_support::{
    GatewayOptions, MODEL, Reply, TENANT, TestClient, TestGateway, chat_body, chunked_body, full_body, request,
};

const LIMIT: usize = 1024;

async fn gateway() -> TestGateway {
    TestGateway::start(1, GatewayOptions { max_body_bytes: Some(LIMIT), ..GatewayOptions::default() }).await
}

async fn post_raw(gw: &TestGateway, path: &str, key: Option<&str>, body: &'static str) -> Reply {
    gw.client.send_whole(request(Method::POST, &gw.url(path), key, full_body(body))).await
}

fn assert_error(reply: &Reply, status: u16, kind: &str, code: &str) -> serde_json::Value {
    assert_eq!(reply.status, status, "{}", reply.text());
    let error = reply.openai_error();
    assert_eq!(error["type"], kind, "{error}");
    assert_eq!(error["code"], code, "{error}");
    assert!(reply.headers.contains_key("x-request-id"), "errors carry a request id");
    error
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authentication_is_required() {
    let gw = gateway().await;
    let url = gw.url("/v1/chat/completions");
    let body = chat_body("hi", json!({"max_tokens": 2}));

    let missing = gw.client.post_json_whole(&url, None, &body).await;
    let error = assert_error(&missing, 401, "invalid_request_error", "missing_api_key");
    assert!(error["param"].is_null());
    assert_eq!(missing.headers["www-authenticate"], "Bearer");

    let wrong = gw.client.post_json_whole(&url, Some("sk-acme-wrong-key"), &body).await;
    assert_error(&wrong, 401, "invalid_request_error", "invalid_api_key");
    assert!(!wrong.text().contains("sk-acme-wrong-key"), "keys are never echoed");

    assert_eq!(gw.sims[0].stats().requests_received, 0);
    let outcome = gw.metric("sluice_requests_total", &[("tenant", "unknown"), ("outcome", "client_error")]).await;
    assert_eq!(outcome, 2.0, "refused before authentication: counted under tenant `unknown`");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_model_and_unknown_path_are_404() {
    let gw = gateway().await;
    let reply = gw.chat(&json!({"model": "gpt-17", "messages": [{"role": "user", "content": "hi"}]})).await;
    let error = assert_error(&reply, 404, "invalid_request_error", "model_not_found");
    assert_eq!(error["param"], "model");
    assert!(error["message"].as_str().unwrap().contains("gpt-17"));

    let reply = post_raw(&gw, "/v1/nope", Some(gw.key), "{}").await;
    assert_error(&reply, 404, "invalid_request_error", "unknown_url");
    // Unknown paths are 404 whoever asks.
    let reply = gw.client.get(&gw.url("/"), None).await;
    assert_error(&reply, 404, "invalid_request_error", "unknown_url");

    assert_eq!(gw.sims[0].stats().requests_received, 0);
    // A client-chosen model name never becomes a metric label.
    assert!(!gw.metrics_text().await.contains("gpt-17"));
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_bodies_are_400_with_param() {
    let gw = gateway().await;
    let reply = post_raw(&gw, "/v1/chat/completions", Some(gw.key), "{\"model\": \"llama-3-8b\", ").await;
    let error = assert_error(&reply, 400, "invalid_request_error", "invalid_body");
    assert!(error["param"].is_null());

    let reply = gw.chat(&json!({"model": MODEL})).await;
    let error = assert_error(&reply, 400, "invalid_request_error", "invalid_body");
    assert_eq!(error["param"], "messages");

    let reply = gw.client.post_json_whole(&gw.url("/v1/completions"), Some(gw.key), &json!({"prompt": "x"})).await;
    let error = assert_error(&reply, 400, "invalid_request_error", "invalid_body");
    assert_eq!(error["param"], "model");

    let reply = post_raw(&gw, "/v1/embeddings", Some(gw.key), "").await;
    assert_error(&reply, 400, "invalid_request_error", "invalid_body");

    assert_eq!(gw.sims[0].stats().requests_received, 0);
    let refused = gw.metric("sluice_requests_total", &[("tenant", TENANT), ("outcome", "client_error")]).await;
    assert_eq!(refused, 4.0);
    gw.shutdown().await;
}

/// A valid chat body of exactly `len` bytes (the prompt pads it).
fn body_of_len(len: usize) -> Bytes {
    let base = chat_body("", json!({"max_tokens": 2})).to_string();
    let pad = len - base.len();
    let body = chat_body(&"a".repeat(pad), json!({"max_tokens": 2})).to_string();
    assert_eq!(body.len(), len);
    Bytes::from(body)
}

fn chunks(body: &Bytes, n: usize) -> Vec<Bytes> {
    body.chunks(body.len().div_ceil(n)).map(Bytes::copy_from_slice).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_the_limit_are_413_with_content_length_or_chunked() {
    let gw = gateway().await;
    let url = gw.url("/v1/chat/completions");
    let send = |body| gw.client.send_whole(request(Method::POST, &url, Some(gw.key), body));

    // Repeated: a 413 sent while the body is still arriving used to be lost to a connection
    // reset now and then (the gateway closed the socket with the body unread).
    let big = body_of_len(4 * LIMIT);
    for _ in 0..10 {
        let reply = send(full_body(big.clone())).await;
        assert_error(&reply, 413, "invalid_request_error", "request_too_large");
        let reply = send(chunked_body(chunks(&big, 8))).await;
        assert_error(&reply, 413, "invalid_request_error", "request_too_large");
    }
    assert_eq!(gw.sims[0].stats().requests_received, 0);

    // Right at the limit both ways is fine: the limit is the body, not the framing.
    let exact = body_of_len(LIMIT);
    let reply = send(full_body(exact.clone())).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let reply = send(chunked_body(chunks(&exact, 4))).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let over_by_one = body_of_len(LIMIT + 1);
    let reply = send(chunked_body(chunks(&over_by_one, 4))).await;
    assert_error(&reply, 413, "invalid_request_error", "request_too_large");
    assert_eq!(gw.sims[0].stats().requests_received, 2);

    // HTTP/2 has no chunked encoding: DATA frames without a content-length are limited too.
    let h2 = TestClient::h2c();
    let reply = h2.send_whole(request(Method::POST, &url, Some(gw.key), chunked_body(chunks(&big, 8)))).await;
    assert_eq!(reply.version, http::Version::HTTP_2);
    assert_error(&reply, 413, "invalid_request_error", "request_too_large");
    assert_eq!(gw.sims[0].stats().requests_received, 2);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_method_is_405() {
    let gw = gateway().await;
    let reply = gw.client.get(&gw.url("/v1/chat/completions"), Some(gw.key)).await;
    assert_error(&reply, 405, "invalid_request_error", "method_not_allowed");
    assert_eq!(reply.headers["allow"], "POST");
    let reply = post_raw(&gw, "/v1/models", Some(gw.key), "{}").await;
    assert_error(&reply, 405, "invalid_request_error", "method_not_allowed");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_lists_configured_models_and_requires_auth() {
    let gw = gateway().await;
    let reply = gw.client.get(&gw.url("/v1/models"), Some(gw.key)).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let v = reply.json();
    assert_eq!(v["object"], "list");
    let ids: Vec<&str> = v["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [MODEL]);
    assert_eq!(v["data"][0]["object"], "model");

    let reply = gw.client.get(&gw.url("/v1/models"), None).await;
    assert_error(&reply, 401, "invalid_request_error", "missing_api_key");
    gw.shutdown().await;
}
