//! The gateway-wide budget of request-body bytes (issue 22, finding 7): bodies in flight are
//! reserved against `server.max_inflight_body_bytes` before they are buffered, a request the
//! budget has no room for is refused at once with a 503 in the OpenAI error shape, and the room
//! comes back when the requests holding it end. One tenant may hold only its share of it
//! (`max_inflight_body_bytes_per_tenant`): past that its requests get a 429 while another
//! tenant's still go through.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests fail loudly")]

use std::time::Duration;

use serde_json::json;
use sluice_test_support::{GatewayOptions, TestClient, TestGateway, chat_body, wait_until_async};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(20);
const MAX_BODY: usize = 64 * 1024;

/// A client that declares a body of the largest size and sends only its first bytes: the
/// gateway reserves the whole declared length while it waits for the rest.
async fn hold_a_large_body(gw: &TestGateway, key: &str) -> TcpStream {
    let mut socket = TcpStream::connect(gw.data_addr()).await.unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: sluice\r\nauthorization: Bearer {key}\r\n\
         content-type: application/json\r\ncontent-length: {MAX_BODY}\r\n\r\n{{\"model\":"
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    socket
}

#[tokio::test]
async fn bodies_past_the_budget_are_refused_until_the_bodies_holding_it_end() {
    let opts = GatewayOptions {
        max_body_bytes: Some(MAX_BODY),
        server_toml: format!("max_inflight_body_bytes = {0}\nmax_inflight_body_bytes_per_tenant = {0}\n", 2 * MAX_BODY),
        ..GatewayOptions::default()
    };
    let gw = TestGateway::start(1, opts).await;
    let client = TestClient::http1();
    let url = gw.url("/v1/chat/completions");
    let small = chat_body("hello there", json!({"max_tokens": 4}));
    let ok = || async { client.post_json_whole(&url, Some(gw.key), &small).await.status == 200 };

    let first = hold_a_large_body(&gw, gw.key).await;
    assert!(ok().await, "half the budget held: a small body still fits");
    let second = hold_a_large_body(&gw, gw.key).await;
    // Once both are reserved, nothing more fits.
    let refused =
        wait_until_async(WAIT, || async { client.post_json_whole(&url, Some(gw.key), &small).await.status == 503 })
            .await;
    assert!(refused, "a full body budget refuses new bodies");
    let reply = client.post_json_whole(&url, Some(gw.key), &small).await;
    assert_eq!(reply.status, 503);
    assert_eq!(reply.headers["retry-after"], "1");
    let error = &reply.json()["error"];
    assert_eq!(error["code"], "gateway_overloaded", "{error}");
    assert_eq!(error["type"], "server_error");
    assert!(error["message"].as_str().unwrap().contains("memory budget"), "{error}");

    // The clients holding the budget go away: their reservations end with their requests.
    drop(first);
    drop(second);
    assert!(wait_until_async(WAIT, ok).await, "the budget comes back when the bodies holding it end");
    gw.shutdown().await;
}

#[tokio::test]
async fn one_tenant_holds_only_its_share_and_another_still_gets_through() {
    const OTHER_KEY: &str = "sk-other-tenant-0123456789";
    let opts = GatewayOptions {
        max_body_bytes: Some(MAX_BODY),
        server_toml: format!(
            "max_inflight_body_bytes = {}\nmax_inflight_body_bytes_per_tenant = {}\n",
            4 * MAX_BODY,
            MAX_BODY + MAX_BODY / 2
        ),
        extra_toml: format!("[[tenants]]\nname = \"other\"\napi_keys = [\"{OTHER_KEY}\"]\n"),
        ..GatewayOptions::default()
    };
    let gw = TestGateway::start(1, opts).await;
    let client = TestClient::http1();
    let url = gw.url("/v1/chat/completions");
    let large = chat_body(&"a".repeat(MAX_BODY / 2), json!({"max_tokens": 4}));

    // The flooding tenant holds one largest body: half of its share is left, so a body of
    // half the largest size does not fit.
    let held = hold_a_large_body(&gw, gw.key).await;
    let refused =
        wait_until_async(WAIT, || async { client.post_json_whole(&url, Some(gw.key), &large).await.status == 429 })
            .await;
    assert!(refused, "the tenant's share is full");
    let reply = client.post_json_whole(&url, Some(gw.key), &large).await;
    assert_eq!(reply.status, 429);
    assert_eq!(reply.headers["retry-after"], "1");
    let error = &reply.json()["error"];
    assert_eq!(error["code"], "too_many_body_bytes_in_flight", "{error}");
    assert_eq!(error["type"], "rate_limit_exceeded");

    // The other tenant is not touched by it: the budget has room, and its own share is empty.
    for _ in 0..3 {
        let reply = client.post_json_whole(&url, Some(OTHER_KEY), &large).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    let rate_limited = gw
        .metric("sluice_requests_total", &[("tenant", sluice_test_support::TENANT), ("outcome", "rate_limited")])
        .await;
    assert!(rate_limited >= 1.0, "counted as the tenant's limit: {rate_limited}");

    drop(held);
    let ok = || async { client.post_json_whole(&url, Some(gw.key), &large).await.status == 200 };
    assert!(wait_until_async(WAIT, ok).await, "the share comes back when the body holding it ends");
    gw.shutdown().await;
}
