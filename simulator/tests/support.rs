//! Helpers shared by the integration tests: start a worker on port 0, talk to it with hyper.

#![allow(dead_code)] // each test crate uses a different subset
#![expect(clippy::unwrap_used, reason = "test helpers fail the test on any error")]

use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use sluice_openai::sse::SseParser;
use sluice_sim::{SimConfig, SimHandle, SimWorker};

pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

pub async fn start(config: SimConfig) -> SimHandle {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    SimWorker::start(config, listener).await.unwrap()
}

pub fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

pub fn h2_client() -> HttpClient {
    Client::builder(TokioExecutor::new()).http2_only(true).build_http()
}

pub async fn send(client: &HttpClient, url: String, body: &str) -> Response<Incoming> {
    let req = Request::post(url)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap();
    client.request(req).await.unwrap()
}

pub async fn post(client: &HttpClient, url: String, body: &Value) -> (StatusCode, Bytes) {
    let resp = send(client, url, &body.to_string()).await;
    let status = resp.status();
    (status, resp.into_body().collect().await.unwrap().to_bytes())
}

pub async fn get(client: &HttpClient, url: String) -> (StatusCode, Bytes) {
    let resp = client.request(Request::get(url).body(Full::new(Bytes::new())).unwrap()).await.unwrap();
    let status = resp.status();
    (status, resp.into_body().collect().await.unwrap().to_bytes())
}

/// Reads a whole SSE body: the `data` payloads, and whether the body ended in an error.
pub async fn read_events(resp: Response<Incoming>) -> (Vec<String>, bool) {
    let mut body = resp.into_body();
    let mut parser = SseParser::new(1 << 20);
    let mut events = Vec::new();
    loop {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    parser.push(data);
                }
                while let Some(ev) = parser.next_event().unwrap() {
                    if let Some(d) = ev.data {
                        events.push(String::from_utf8(d.to_vec()).unwrap());
                    }
                }
            }
            Some(Err(_)) => return (events, true),
            None => return (events, false),
        }
    }
}

/// Waits until `cond` holds, failing after a generous bound instead of sleeping a fixed time.
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

pub fn chat(content: &str, extra: Value) -> Value {
    let mut body = serde_json::json!({
        "model": "llama-3-8b",
        "messages": [{"role": "user", "content": content}],
    });
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    body
}
