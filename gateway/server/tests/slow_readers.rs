//! Clients that stop reading a stream (issue 22, finding 2): the stream is cut after the write
//! timeout, or at the total timeout if that comes first, whatever the client does with its
//! socket; the worker request is cancelled and its slot released; and none of it counts against
//! the worker, so a well-behaved tenant alongside sees no failure.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests fail loudly")]

use std::time::Duration;

use serde_json::json;
use sluice_sim::{OutputLength, SimConfig};
use sluice_test_support::{GatewayOptions, POOL, TENANT, TestGateway, chat_body, wait_until_async};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};

const WAIT: Duration = Duration::from_secs(10);

fn options(write_timeout: &str, total_timeout: Option<Duration>) -> GatewayOptions {
    // Workers that answer at once with very long streams: a client that does not read fills
    // every buffer on the way within moments. One failure would eject a worker for a minute.
    let sim = SimConfig {
        zero_delay: true,
        output: OutputLength { min: 400_000, max: 400_000, fixed: None },
        max_model_len: 1_000_000,
        ..SimConfig::default()
    };
    GatewayOptions {
        sim,
        server_toml: format!("write_timeout = \"{write_timeout}\""),
        total_timeout,
        ejection_failures: Some(1),
        ejection_base: Some(Duration::from_secs(60)),
        ..GatewayOptions::default()
    }
}

/// Sends a streamed chat request on a connection with a small receive buffer, and never reads.
async fn stalled_client(gw: &TestGateway) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(gw.data_addr()).await.unwrap();
    let body = chat_body("tell me everything", json!({"stream": true})).to_string();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: sluice\r\nauthorization: Bearer {}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n",
        gw.key,
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body.as_bytes()).await.unwrap();
    stream
}

/// Streams that read every event: each must end with `[DONE]`.
async fn well_behaved(gw: &TestGateway, n: usize) {
    for i in 0..n {
        let body = chat_body("hello there", json!({"stream": true, "max_tokens": 8}));
        let events = gw.chat_stream(&body).await.rest().await;
        assert!(events.last().is_some_and(|e| e.is_done()), "well-behaved stream {i}: {events:?}");
        assert!(!events.iter().any(|e| e.is_error()), "well-behaved stream {i}: {events:?}");
    }
}

/// The stalled stream is cut while its client still holds the socket: the workers have nothing
/// in flight, the cut is counted, the request recorded as cancelled, and no worker was blamed.
async fn assert_cut_without_blame(gw: &TestGateway) {
    let _stalled = stalled_client(gw).await;
    let ((), cut) = tokio::join!(
        well_behaved(gw, 10),
        wait_until_async(WAIT, || async {
            let text = gw.metrics_text().await;
            let value = |name, labels: &[(&str, &str)]| sluice_test_support::metrics::value(&text, name, labels);
            value("sluice_client_write_timeouts_total", &[]) == 1.0
                && value("sluice_endpoint_in_flight", &[("pool", POOL)]) == 0.0
                && value("sluice_requests_total", &[("tenant", TENANT), ("outcome", "cancelled")]) == 1.0
        }),
    );
    assert!(cut, "the stalled stream kept its worker request:\n{}", gw.metrics_text().await);
    well_behaved(gw, 5).await;
    let text = gw.metrics_text().await;
    let value = |name, labels: &[(&str, &str)]| sluice_test_support::metrics::value(&text, name, labels);
    assert_eq!(value("sluice_endpoint_ejections_total", &[("pool", POOL)]), 0.0, "a worker was ejected");
    assert_eq!(value("sluice_upstream_errors_total", &[("pool", POOL)]), 0.0, "a worker was blamed");
    assert_eq!(value("sluice_requests_total", &[("tenant", TENANT), ("outcome", "ok")]), 15.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_cut_after_the_write_timeout() {
    let gw = TestGateway::start(2, options("300ms", None)).await;
    assert_cut_without_blame(&gw).await;
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_total_timeout_holds_whatever_the_client_does() {
    // The write timeout is out of reach: only the total timeout can end the stalled stream.
    let gw = TestGateway::start(2, options("60s", Some(Duration::from_millis(1500)))).await;
    assert_cut_without_blame(&gw).await;
    gw.shutdown().await;
}
