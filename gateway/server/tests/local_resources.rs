//! A gateway out of file descriptors (issue 22, finding 6): connections to workers it cannot
//! open for want of its own descriptors are answered 503 in the OpenAI error shape, and neither
//! the requests nor the health probes of that moment count against the workers, so service is
//! whole again as soon as descriptors are.
//!
//! Its own test binary: it takes the process's descriptors away for a moment.

#![cfg(unix)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests fail loudly")]

use std::fs::File;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
use serde_json::{Value, json};
use sluice_test_support::{GatewayOptions, POOL, TestGateway, chat_body};
use tokio::net::TcpStream;

type Sender = hyper::client::conn::http2::SendRequest<Full<Bytes>>;

/// One chat request on the shared HTTP/2 connection: its status and body.
async fn chat(sender: &Sender, key: &str) -> (u16, Bytes) {
    let body = chat_body("hello there", json!({"max_tokens": 4})).to_string();
    let request = http::Request::post("http://sluice/v1/chat/completions")
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let response = sender.clone().send_request(request).await.unwrap();
    let status = response.status().as_u16();
    (status, response.into_body().collect().await.unwrap().to_bytes())
}

/// Takes every free file descriptor of the process: the soft limit is brought down to just
/// above those in use (so there are few to take), then the rest are opened. Returns what is
/// needed to give them back.
fn exhaust_descriptors() -> (Vec<File>, Rlimit) {
    let before = getrlimit(Resource::Nofile);
    let in_use = std::fs::read_dir("/proc/self/fd").map(Iterator::count).unwrap_or(256) as u64;
    setrlimit(Resource::Nofile, Rlimit { current: Some(in_use + 64), maximum: before.maximum }).unwrap();
    let mut held = Vec::new();
    while let Ok(file) = File::open("/dev/null") {
        held.push(file);
    }
    (held, before)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_out_of_descriptors_is_not_the_workers_fault() {
    // One failure would eject a worker for a minute, one failed probe would take it out until a
    // thousand good ones: any blame shows.
    let opts = GatewayOptions {
        ejection_failures: Some(1),
        ejection_base: Some(Duration::from_secs(60)),
        unhealthy_threshold: Some(1),
        healthy_threshold: Some(1000),
        ..GatewayOptions::default()
    };
    let gw = TestGateway::start(2, opts).await;
    // The client's connection is open before the descriptors run out; HTTP/2, so that many
    // requests at once need many connections to workers.
    let stream = TcpStream::connect(gw.data_addr()).await.unwrap();
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let (status, body) = chat(&sender, gw.key).await;
    assert_eq!(status, 200, "{body:?}");

    let (held, limit) = exhaust_descriptors();
    let burst = futures_util::future::join_all((0..8).map(|_| chat(&sender, gw.key))).await;
    // Two health rounds while descriptors are short.
    tokio::time::sleep(Duration::from_millis(250)).await;
    drop(held);
    setrlimit(Resource::Nofile, limit).unwrap();

    let mut refused = 0;
    for (status, body) in &burst {
        match status {
            200 => {}
            503 => {
                refused += 1;
                let error: Value = serde_json::from_slice(body).unwrap();
                assert_eq!(error["error"]["type"], "server_error", "{error}");
                assert_eq!(error["error"]["code"], "gateway_overloaded", "{error}");
            }
            other => panic!("answered {other}: {body:?}"),
        }
    }
    assert!(refused > 0, "the descriptors never ran out: every request found a kept-alive connection");

    // Nothing was held against the workers: a well-behaved client is served at once, by both.
    for i in 0..10 {
        let (status, body) = chat(&sender, gw.key).await;
        assert_eq!(status, 200, "request {i} after the shortage: {body:?}");
    }
    let text = gw.metrics_text().await;
    for endpoint in ["sim-0", "sim-1"] {
        let labels = [("pool", POOL), ("endpoint", endpoint)];
        let value = |name| sluice_test_support::metrics::value(&text, name, &labels);
        assert_eq!(value("sluice_endpoint_ejections_total"), 0.0, "{endpoint} was ejected");
        assert_eq!(value("sluice_endpoint_healthy"), 1.0, "{endpoint} was marked unhealthy");
    }
    gw.shutdown().await;
}
