//! A client that goes away cancels the work it started on the worker, and the gateway records
//! the request as `cancelled`, whenever it leaves.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests fail loudly")]

use std::time::Duration;

use serde_json::json;
use sluice_sim::Faults;
use sluice_test_support::{GatewayOptions, TENANT, TestClient, TestGateway, chat_body, wait_until, wait_until_async};
use tokio::io::AsyncWriteExt;

const WAIT: Duration = Duration::from_secs(10);

async fn assert_cancelled(gw: &TestGateway) {
    let sim = gw.sims[0].clone();
    let stopped = wait_until(WAIT, || {
        let s = sim.stats();
        s.running == 0 && s.waiting == 0 && s.requests_aborted >= 1
    })
    .await;
    assert!(stopped, "the worker kept generating: {:?}", sim.stats());
    let recorded = wait_until_async(WAIT, || async {
        gw.metric("sluice_requests_total", &[("tenant", TENANT), ("outcome", "cancelled")]).await == 1.0
    })
    .await;
    assert!(recorded, "no cancelled record:\n{}", gw.metrics_text().await);
    assert_eq!(sim.stats().requests_completed, 0);
    assert_eq!(gw.metric("sluice_requests_total", &[]).await, 1.0, "recorded exactly once");
    assert_eq!(gw.metric("sluice_endpoint_in_flight", &[("endpoint", "sim-0")]).await, 0.0);
    assert_eq!(gw.metric("sluice_requests_in_flight", &[]).await, 0.0);
}

/// Reads two tokens of a long, slow stream, then drops it.
async fn disconnect_mid_stream(client: TestClient, upstream_http2: bool) {
    let gw = TestGateway::start(1, GatewayOptions { upstream_http2, ..GatewayOptions::default() }).await;
    // 500 tokens, 50 ms apart: 25 s if nobody cancels it.
    gw.sims[0].set_faults(Faults { slow_token: Duration::from_millis(50), ..Faults::default() });
    let body = chat_body("hello there", json!({"stream": true, "max_tokens": 500}));
    let mut stream = client.post_stream(&gw.url("/v1/chat/completions"), Some(gw.key), &body).await;
    for _ in 0..2 {
        assert!(stream.next().await.is_some_and(|e| e.content().is_some()));
    }
    assert_eq!(gw.sims[0].stats().running, 1);
    drop(stream);
    drop(client);
    assert_cancelled(&gw).await;
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_client_disconnect_mid_stream_cancels_upstream() {
    disconnect_mid_stream(TestClient::http1(), false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_stream_reset_mid_stream_cancels_an_http2_upstream() {
    disconnect_mid_stream(TestClient::h2c(), true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_disconnect_before_the_first_token_cancels_upstream() {
    let gw = TestGateway::start(1, GatewayOptions::default()).await;
    let sim = gw.sims[0].clone();
    // The worker sits on the request far longer than the test waits.
    sim.set_faults(Faults { stall_first_token: Duration::from_secs(60), ..Faults::default() });

    let body = chat_body("hello there", json!({"stream": true, "max_tokens": 4})).to_string();
    let raw = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: {}\r\nauthorization: Bearer {}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        gw.data_addr(),
        gw.key,
        body.len()
    );
    let mut socket = tokio::net::TcpStream::connect(gw.data_addr()).await.unwrap();
    socket.write_all(raw.as_bytes()).await.unwrap();
    assert!(wait_until(WAIT, || sim.stats().running == 1).await, "the request reached the worker");
    drop(socket);
    assert_cancelled(&gw).await;
    gw.shutdown().await;
}
