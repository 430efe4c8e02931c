//! Finding 2: a client that stopped reading a stream had its stall booked as the worker's
//! failure, the worker was ejected, and another tenant was answered `503`. Now the stalled
//! stream is cut after `write_timeout` while its client still holds the socket, the worker
//! request is cancelled, and no worker is blamed: with one worker that a single failure would
//! eject for a minute, the good tenant is served throughout.

use http::StatusCode;
use serde_json::json;
use sluice_e2e::fleet::{start_gateway, start_sim};
use sluice_e2e::net::closed_by_peer;
use sluice_e2e::tenancy::{Load, chat, wait_until};
use sluice_e2e::{API_KEY, TENANT, TempDir};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};

use super::{GOOD, PATIENCE, Pool, assert_good_unharmed, chat_stream, gateway_toml, good_alongside, metric};

/// Sends a streamed chat request with no `max_tokens` (the worker's 400,000 tokens) on a
/// connection with a small receive buffer, and never reads a byte of the answer.
async fn stalled_client(listen: std::net::SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(listen).await.unwrap();
    let body = json!({"model": sluice_e2e::MODEL, "stream": true,
                      "messages": [{"role": "user", "content": "tell me everything"}]})
    .to_string();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: sluice\r\nauthorization: Bearer {API_KEY}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body.as_bytes()).await.unwrap();
    stream
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_cut_and_its_worker_is_not_blamed() {
    let dir = TempDir::new("hardening-slow-readers");
    // A worker that answers at once with very long streams: a client that does not read fills
    // every buffer on the way within moments.
    let sim =
        start_sim(&dir, "sim", None, &["--zero-delay", "--output-tokens", "400000", "--max-model-len", "1000000"])
            .await;
    // One failure would eject the only worker for a minute: any blame shows as the good
    // tenant's failures.
    let upstream = "[upstream.ejection]\nconsecutive_failures = 1\nbase = \"60s\"\n";
    let gw = start_gateway(&dir, |l, a| {
        gateway_toml(l, a, "write_timeout = \"500ms\"", &[Pool::llama(&[sim.url()])], upstream)
    })
    .await;
    let good = good_alongside(&gw, Load { requests: vec![chat(), chat_stream(3)], ..Load::new(2) }).await;

    let mut stalled = stalled_client(gw.listen).await;
    wait_until("the stalled stream is cut and recorded as cancelled", PATIENCE, || async {
        metric(&gw, "sluice_client_write_timeouts_total", &[]).await == 1.0
            && metric(&gw, "sluice_requests_total", &[("tenant", TENANT), ("outcome", "cancelled")]).await == 1.0
    })
    .await;
    assert_good_unharmed(good).await;
    // The worker request was cancelled with the stream: nothing is left in flight, although
    // the stalled client still holds its socket; reading it now finds the connection closed.
    wait_until("nothing in flight to the worker", PATIENCE, || async {
        metric(&gw, "sluice_endpoint_in_flight", &[("pool", "llama")]).await == 0.0
    })
    .await;
    assert!(closed_by_peer(&mut stalled, PATIENCE).await, "the stalled client's connection was kept open");
    let text = gw.metrics().await;
    let value = |name, labels: &[(&str, &str)]| sluice_e2e::metrics::sum(&text, name, labels).unwrap_or(0.0);
    assert_eq!(value("sluice_endpoint_ejections_total", &[]), 0.0, "the worker was ejected:\n{text}");
    assert_eq!(value("sluice_upstream_errors_total", &[]), 0.0, "the worker was blamed:\n{text}");
    assert_eq!(value("sluice_endpoint_healthy", &[("pool", "llama")]), 1.0, "{text}");
    assert!(value("sluice_requests_total", &[("tenant", GOOD), ("outcome", "ok")]) > 0.0, "{text}");

    // A request after the cut is served by the same worker.
    let reply = sluice_e2e::client::post(&format!("{}/v1/chat/completions", gw.api()), Some(API_KEY), &chat()).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
}
