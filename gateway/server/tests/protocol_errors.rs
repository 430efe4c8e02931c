//! Requests that cannot be parsed as HTTP/1.1 (issue 22, "protocol errors in the OpenAI shape"):
//! header bombs, malformed request lines and headers, and the framing conflicts request
//! smuggling relies on are answered with an OpenAI error body, the connection is closed, no
//! worker sees anything, each is counted, and a well-behaved client alongside is unaffected.
//! Raw TCP, since no HTTP client sends such requests.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests fail loudly")]

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};
use sluice_test_support::{GatewayOptions, TestGateway, chat_body};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Bounds a failure only: every read below ends when the server closes the connection.
const WAIT: Duration = Duration::from_secs(10);

struct Answer {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    fn error(&self) -> Value {
        assert_eq!(self.header("content-type"), Some("application/json"), "{}", self.head);
        let length: usize = self.header("content-length").unwrap().parse().unwrap();
        assert_eq!(length, self.body.len(), "{}", self.head);
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// Sends `request` as is and reads every answer until the server closes the connection.
async fn exchange(addr: SocketAddr, request: &[u8]) -> Vec<Answer> {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut raw)).await.expect("the server closes the connection").unwrap();
    split_answers(&raw)
}

/// Splits a byte stream of HTTP/1.1 answers framed by `content-length`.
fn split_answers(mut raw: &[u8]) -> Vec<Answer> {
    let mut answers = Vec::new();
    while !raw.is_empty() {
        let end = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a complete head") + 4;
        let head = String::from_utf8(raw[..end].to_vec()).unwrap();
        let status = head[9..12].parse().unwrap();
        let mut answer = Answer { status, head, body: Vec::new() };
        let length: usize = answer.header("content-length").expect("content-length framing").parse().unwrap();
        answer.body = raw[end..end + length].to_vec();
        raw = &raw[end + length..];
        answers.push(answer);
    }
    answers
}

fn one(mut answers: Vec<Answer>) -> Answer {
    assert_eq!(answers.len(), 1, "{:?}", answers.iter().map(|a| &a.head).collect::<Vec<_>>());
    answers.remove(0)
}

fn assert_openai_error(answer: &Answer, status: u16, code: &str) -> String {
    assert_eq!(answer.status, status, "{}", answer.head);
    assert_eq!(answer.header("connection"), Some("close"), "{}", answer.head);
    let error = answer.error();
    assert_eq!(error["error"]["type"], "invalid_request_error", "{error}");
    assert_eq!(error["error"]["code"], code, "{error}");
    assert!(error["error"]["param"].is_null(), "{error}");
    error["error"]["message"].as_str().unwrap().to_owned()
}

fn chat_request(gw: &TestGateway, extra_headers: &str) -> Vec<u8> {
    let body = chat_body("hello", json!({"max_tokens": 3})).to_string();
    format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: sluice\r\nauthorization: Bearer {}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n{extra_headers}\r\n{body}",
        gw.key,
        body.len()
    )
    .into_bytes()
}

async fn protocol_errors(gw: &TestGateway, listener: &str, status: &str) -> f64 {
    gw.metric("sluice_http_protocol_errors_total", &[("listener", listener), ("status", status)]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unparseable_requests_get_openai_errors_and_reach_no_worker() {
    let gw = TestGateway::start(1, GatewayOptions::default()).await;
    let addr = gw.data_addr();
    for status in ["400", "414", "431"] {
        assert_eq!(protocol_errors(&gw, "data", status).await, 0.0, "every status is exported before its first");
    }

    // A header bomb: more header fields than allowed.
    let many: String = (0..150).map(|i| format!("x-filler-{i}: {i}\r\n")).collect();
    let bomb = one(exchange(addr, &chat_request(&gw, &many)).await);
    let message = assert_openai_error(&bomb, 431, "request_header_fields_too_large");
    assert!(message.contains("100 header fields"), "{message}");

    // A head that never ends, as large as the head may be.
    let mut endless = b"GET /v1/models HTTP/1.1\r\nhost: sluice\r\nx-filler: ".to_vec();
    endless.resize(sluice_head_limit(), b'a');
    assert_openai_error(&one(exchange(addr, &endless).await), 431, "request_header_fields_too_large");

    // A malformed request line and a malformed header name.
    assert_openai_error(
        &one(exchange(addr, b"G\x01T /v1/models HTTP/1.1\r\nhost: x\r\n\r\n").await),
        400,
        "malformed_request",
    );
    assert_openai_error(
        &one(exchange(addr, b"GET /v1/models HTTP/1.1\r\nho st: x\r\n\r\n").await),
        400,
        "malformed_request",
    );

    // What request smuggling relies on: two lengths, or a transfer coding that does not end in
    // chunked (so the body's end is unknowable).
    let two_lengths = chat_request(&gw, "content-length: 7\r\n");
    assert_openai_error(&one(exchange(addr, &two_lengths).await), 400, "malformed_request");
    let body = chat_body("hello", json!({})).to_string();
    let gzip = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: sluice\r\nauthorization: Bearer {}\r\n\
         transfer-encoding: gzip\r\n\r\n{body}",
        gw.key
    );
    assert_openai_error(&one(exchange(addr, gzip.as_bytes()).await), 400, "malformed_request");

    assert_eq!(gw.sims[0].stats().requests_received, 0, "nothing unparseable reached the worker");
    assert_eq!(protocol_errors(&gw, "data", "431").await, 2.0);
    assert_eq!(protocol_errors(&gw, "data", "400").await, 4.0);

    // A client alongside, unaffected.
    let reply = gw.chat(&chat_body("hello", json!({"max_tokens": 3}))).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
}

/// A good request and then a malformed one on the same connection: the first answer is the
/// handler's, byte for byte, and only hyper's answer to the second is rewritten.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_hypers_own_answer_is_rewritten_on_a_kept_alive_connection() {
    let gw = TestGateway::start(1, GatewayOptions::default()).await;
    let mut pipelined = chat_request(&gw, "");
    // The gateway's own 400 (an invalid body), which has its own error body.
    pipelined.extend_from_slice(
        format!(
            "POST /v1/chat/completions HTTP/1.1\r\nhost: sluice\r\nauthorization: Bearer {}\r\n\
             content-type: application/json\r\ncontent-length: 1\r\n\r\n{{",
            gw.key
        )
        .as_bytes(),
    );
    pipelined.extend_from_slice(b"GET /v1/models HTTP/1.1\r\nho st: x\r\n\r\n");
    let answers = exchange(gw.data_addr(), &pipelined).await;
    assert_eq!(answers.len(), 3, "{:?}", answers.iter().map(|a| &a.head).collect::<Vec<_>>());

    assert_eq!(answers[0].status, 200, "{}", answers[0].head);
    let completion: Value = serde_json::from_slice(&answers[0].body).unwrap();
    assert_eq!(completion["object"], "chat.completion");
    assert_ne!(answers[0].header("connection"), Some("close"));

    assert_eq!(answers[1].status, 400);
    let invalid_body = answers[1].error();
    assert_ne!(invalid_body["error"]["code"], "malformed_request", "the handler's own error: {invalid_body}");

    assert_openai_error(&answers[2], 400, "malformed_request");
    assert_eq!(protocol_errors(&gw, "data", "400").await, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_listener_answers_in_the_same_shape() {
    let gw = TestGateway::start(1, GatewayOptions::default()).await;
    let admin: SocketAddr = gw.admin_url("").trim_start_matches("http://").trim_end_matches('/').parse().unwrap();
    let answer = one(exchange(admin, b"GET /metrics HTTP/1.1\r\nho st: x\r\n\r\n").await);
    assert_openai_error(&answer, 400, "malformed_request");
    assert_eq!(protocol_errors(&gw, "admin", "400").await, 1.0);
}

/// The bytes a request head may take (`MAX_HEAD_BYTES` in `protocol_errors.rs`; hyper's read
/// buffer cap).
fn sluice_head_limit() -> usize {
    8192 + 4096 * 100
}
