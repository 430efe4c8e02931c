//! The gateway-wide budget of request-body bytes (issue 22, finding 7): bodies in flight are
//! reserved against `server.max_inflight_body_bytes` before they are buffered, a request the
//! budget has no room for is refused at once with a 503 in the OpenAI error shape, and the room
//! comes back when the requests holding it end.

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
async fn hold_a_large_body(gw: &TestGateway) -> TcpStream {
    let mut socket = TcpStream::connect(gw.data_addr()).await.unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: sluice\r\nauthorization: Bearer {}\r\n\
         content-type: application/json\r\ncontent-length: {MAX_BODY}\r\n\r\n{{\"model\":",
        gw.key
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    socket
}

#[tokio::test]
async fn bodies_past_the_budget_are_refused_until_the_bodies_holding_it_end() {
    let opts = GatewayOptions {
        max_body_bytes: Some(MAX_BODY),
        server_toml: format!("max_inflight_body_bytes = {}\n", 2 * MAX_BODY),
        ..GatewayOptions::default()
    };
    let gw = TestGateway::start(1, opts).await;
    let client = TestClient::http1();
    let url = gw.url("/v1/chat/completions");
    let small = chat_body("hello there", json!({"max_tokens": 4}));
    let ok = || async { client.post_json_whole(&url, Some(gw.key), &small).await.status == 200 };

    let first = hold_a_large_body(&gw).await;
    assert!(ok().await, "half the budget held: a small body still fits");
    let second = hold_a_large_body(&gw).await;
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
