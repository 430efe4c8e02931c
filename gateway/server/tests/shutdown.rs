//! Graceful shutdown: streams in flight finish, new connections are refused.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests fail loudly")]

use std::time::Duration;

use serde_json::json;
use sluice_sim::Faults;
use sluice_test_support::{GatewayOptions, TestClient, TestGateway, chat_body, wait_until_async};

const WAIT: Duration = Duration::from_secs(10);

async fn in_flight_stream_finishes_while_new_connections_are_refused(client: TestClient) {
    let gw = TestGateway::start(1, GatewayOptions::default()).await;
    // 40 tokens, 50 ms apart: about two seconds of stream left when shutdown starts.
    gw.sims[0].set_faults(Faults { slow_token: Duration::from_millis(50), ..Faults::default() });
    let body = chat_body("a long answer please", json!({"stream": true, "max_tokens": 40}));
    let mut stream = client.post_stream(&gw.url("/v1/chat/completions"), Some(gw.key), &body).await;
    let first = stream.next().await.expect("first event before shutdown");
    assert!(first.content().is_some());

    let TestGateway { running, sims, .. } = gw;
    let (data_addr, admin_url) = (running.data_addr, running.admin_url());
    let shutdown = tokio::spawn(running.shutdown());

    let refused = wait_until_async(WAIT, || async { tokio::net::TcpStream::connect(data_addr).await.is_err() }).await;
    assert!(refused, "the data port still accepts connections during shutdown");
    // The admin plane stays up while draining and tells load balancers to go away.
    let ready = TestClient::http1().get(&format!("{admin_url}/readyz"), None).await;
    assert_eq!(ready.status, 503, "{}", ready.text());
    assert_eq!(ready.json()["status"], "shutting_down");
    assert!(!shutdown.is_finished(), "shutdown waits for the stream");

    let rest = stream.rest().await;
    assert!(!stream.broke, "the stream was cut: {rest:?}");
    assert_eq!(rest.iter().filter(|e| e.content().is_some()).count(), 39, "every remaining token arrived");
    assert!(rest.last().is_some_and(|e| e.is_done()), "the stream ends with [DONE]");

    tokio::time::timeout(WAIT, shutdown).await.expect("shutdown completes once the stream is done").unwrap();
    assert!(tokio::net::TcpStream::connect(data_addr).await.is_err());
    assert_eq!(sims[0].stats().requests_completed, 1);
    assert_eq!(sims[0].stats().requests_aborted, 0);
    for sim in sims {
        sim.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_drains_an_http1_stream() {
    in_flight_stream_finishes_while_new_connections_are_refused(TestClient::http1()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_drains_an_http2_stream() {
    in_flight_stream_finishes_while_new_connections_are_refused(TestClient::h2c()).await;
}
