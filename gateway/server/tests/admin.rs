//! The admin plane: liveness, readiness with pool state, and the Prometheus exposition.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests fail loudly")]

use std::time::Duration;

use http::Method;
use serde_json::json;
use sluice_test_support::metrics::{has, value};
use sluice_test_support::{GatewayOptions, POOL, TENANT, TestGateway, chat_body, full_body, request, wait_until_async};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_readyz_and_metrics() {
    let gw = TestGateway::start(2, GatewayOptions::default()).await;

    let health = gw.client.get(&gw.admin_url("/healthz"), None).await;
    assert_eq!(health.status, 200);
    assert_eq!(health.text().trim(), "ok");

    let ready = gw.client.get(&gw.admin_url("/readyz"), None).await;
    assert_eq!(ready.status, 200, "{}", ready.text());
    assert_eq!(ready.headers["content-type"], "application/json");
    assert_eq!(
        ready.json(),
        json!({"status": "ready", "pools": [{"pool": POOL, "endpoints": 2, "available": 2}], "store": null, "limits": null})
    );

    let reply = gw.chat(&chat_body("hi", json!({"max_tokens": 2}))).await;
    assert_eq!(reply.status, 200);
    let scraped = wait_until_async(Duration::from_secs(10), || async {
        gw.metric("sluice_requests_total", &[("tenant", TENANT)]).await == 1.0
    })
    .await;
    assert!(scraped);
    let metrics = gw.client.get(&gw.admin_url("/metrics"), None).await;
    assert_eq!(metrics.status, 200);
    assert!(metrics.headers["content-type"].to_str().unwrap().starts_with("text/plain"));
    let text = metrics.text();
    for family in [
        "sluice_requests_total",
        "gen_ai_server_request_duration_seconds_bucket",
        "sluice_gateway_overhead_seconds_count",
        "sluice_tokens_total",
        "sluice_requests_in_flight",
        "sluice_endpoint_healthy",
        "sluice_endpoint_in_flight",
    ] {
        assert!(has(&text, family), "{family} missing from\n{text}");
    }
    assert!(text.contains("# TYPE sluice_requests_total counter"));
    for endpoint in ["sim-0", "sim-1"] {
        assert_eq!(value(&text, "sluice_endpoint_healthy", &[("pool", POOL), ("endpoint", endpoint)]), 1.0);
    }
    assert!(!text.contains(gw.key), "keys never reach metrics");

    // Admin routes are GET only; anything else is not there. The data plane is not served here.
    let post = gw.client.send_whole(request(Method::POST, &gw.admin_url("/metrics"), None, full_body(""))).await;
    assert_eq!(post.status, 405);
    let models = gw.client.get(&gw.admin_url("/v1/models"), Some(gw.key)).await;
    assert_eq!(models.status, 404);
    gw.shutdown().await;
}
