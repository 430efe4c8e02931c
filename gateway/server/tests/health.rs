//! `GET /health` on the data port, where vLLM-ecosystem clients and routers check a backend:
//! the admin plane's readiness, without a key and without details.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests fail loudly")]

use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode, header};
use sluice_test_support::{
    GatewayOptions, TENANT, TestClient, TestGateway, chat_body, full_body, request, wait_until_async,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_on_the_data_port_answers_200_without_a_key_or_a_body() {
    let gw = TestGateway::start(1, GatewayOptions::default()).await;

    for client in [TestClient::http1(), TestClient::h2c()] {
        let health = client.get(&gw.url("/health"), None).await;
        assert_eq!(health.status, StatusCode::OK, "{:?}: {}", health.version, health.text());
        assert!(health.body.is_empty(), "no details on the data port: {:?}", health.text());
        assert_eq!(health.headers[header::CACHE_CONTROL], "no-store");

        // A key is not needed, and a wrong one does not turn it into a 401.
        let with_bad_key = client.get(&gw.url("/health"), Some("sk-not-a-key")).await;
        assert_eq!(with_bad_key.status, StatusCode::OK);

        let head = client.send_whole(request(Method::HEAD, &gw.url("/health"), None, full_body(Bytes::new()))).await;
        assert_eq!(head.status, StatusCode::OK);

        let post = client.send_whole(request(Method::POST, &gw.url("/health"), None, full_body("{}"))).await;
        assert_eq!(post.status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(post.headers[header::ALLOW], "GET, HEAD");
    }
    // The admin plane agrees.
    assert_eq!(gw.client.get(&gw.admin_url("/readyz"), None).await.status, StatusCode::OK);

    // Health checks are not requests of a tenant: nothing is counted, nothing reaches a worker.
    let reply = gw.chat(&chat_body("hi", serde_json::json!({"max_tokens": 2}))).await;
    assert_eq!(reply.status, StatusCode::OK);
    let counted = wait_until_async(Duration::from_secs(10), || async {
        gw.metric("sluice_requests_total", &[("tenant", TENANT)]).await == 1.0
    })
    .await;
    assert!(counted, "only the chat request is counted:\n{}", gw.metrics_text().await);
    let text = gw.metrics_text().await;
    assert_eq!(sluice_test_support::metrics::value(&text, "sluice_requests_total", &[]), 1.0, "{text}");

    // Paths beside it are still the OpenAI API's 404.
    assert_eq!(gw.client.get(&gw.url("/healthz"), None).await.status, StatusCode::NOT_FOUND);
    gw.shutdown().await;
}

/// Like `/readyz`, `/health` reports the gateway, not its workers: taking every replica out of
/// a load balancer because the workers are sick would turn a degraded service into an outage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_stays_200_while_the_workers_are_down() {
    let mut gw = TestGateway::start(1, GatewayOptions::default()).await;
    for sim in std::mem::take(&mut gw.sims) {
        sim.shutdown().await;
    }
    let down = wait_until_async(Duration::from_secs(10), || async {
        gw.client.get(&gw.admin_url("/readyz"), None).await.json()["pools"][0]["available"] == 0
    })
    .await;
    assert!(down, "the health checker marks the worker down");
    assert_eq!(gw.client.get(&gw.url("/health"), None).await.status, StatusCode::OK);
    gw.shutdown().await;
}
