//! Workers that refuse: their error answers reach the client in the OpenAI error shape with the
//! worker's status, and a request refused for its own size is neither retried on another worker
//! nor held against the one that refused it.
//!
//! The workers here are a few lines of TCP rather than `sluice-sim`: the point is to answer the
//! way other servers do (an empty 431, an HTML 413, closing on a request too large to read).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests fail loudly")]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::json;
use sluice_config::Config;
use sluice_server::{Running, Sluice};
use sluice_test_support::metrics::value;
use sluice_test_support::{MODEL, Reply, TENANT_KEY, TestClient, chat_body};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Requests above this are "large" to the test workers; well under the gateway's body limit.
const WORKER_BODY_LIMIT: usize = 64 * 1024;
/// A body a worker refuses, large enough not to fit in the sockets' buffers at once.
const LARGE_PROMPT: usize = 6 * 1024 * 1024;

/// A whole HTTP/1.1 answer with a correct length.
fn answer(status_line: &str, content_type: &str, body: &str) -> &'static [u8] {
    let text = format!(
        "HTTP/1.1 {status_line}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    Box::leak(text.into_bytes().into_boxed_slice())
}

fn ok() -> &'static [u8] {
    let completion = json!({
        "id": "c", "object": "chat.completion", "created": 0, "model": MODEL,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    });
    answer("200 OK", "application/json", &completion.to_string())
}

/// What a test worker does with a chat request.
#[derive(Clone, Copy, Debug)]
enum Answer {
    /// Reads the whole request and answers with these bytes; the connection stays open.
    Whole(&'static [u8]),
    /// Answers with these bytes as soon as the head is read, without reading the body, and
    /// closes the connection (what hyper does with a head or body over its limits).
    EarlyAndClose(&'static [u8]),
    /// Closes the connection as soon as the head is read, without a word.
    Close,
}

/// A worker that answers requests up to [`WORKER_BODY_LIMIT`] with `small` and larger ones with
/// `large`, and counts both.
#[derive(Clone)]
struct Worker {
    url: String,
    small_requests: Arc<AtomicUsize>,
    large_requests: Arc<AtomicUsize>,
}

impl Worker {
    async fn start(small: Answer, large: Answer) -> Worker {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let worker = Worker {
            url,
            small_requests: Arc::new(AtomicUsize::new(0)),
            large_requests: Arc::new(AtomicUsize::new(0)),
        };
        let counts = worker.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(serve(socket, small, large, counts.clone()));
            }
        });
        worker
    }

    fn small(&self) -> usize {
        self.small_requests.load(Ordering::SeqCst)
    }

    fn large(&self) -> usize {
        self.large_requests.load(Ordering::SeqCst)
    }
}

async fn serve(mut socket: TcpStream, small: Answer, large: Answer, counts: Worker) {
    let mut buf = Vec::new();
    loop {
        let Some(head_end) = read_head(&mut socket, &mut buf).await else { return };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
        let length = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or(0);
        if head.starts_with("get ") {
            // Health checks.
            buf.drain(..head_end);
            if socket.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await.is_err() {
                return;
            }
            continue;
        }
        let answer = if length > WORKER_BODY_LIMIT {
            counts.large_requests.fetch_add(1, Ordering::SeqCst);
            large
        } else {
            counts.small_requests.fetch_add(1, Ordering::SeqCst);
            small
        };
        match answer {
            Answer::Whole(reply) => {
                while buf.len() < head_end + length {
                    let mut chunk = vec![0u8; 64 * 1024];
                    match socket.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                buf.drain(..head_end + length);
                if socket.write_all(reply).await.is_err() {
                    return;
                }
            }
            Answer::EarlyAndClose(reply) => {
                let _ = socket.write_all(reply).await;
                return;
            }
            Answer::Close => return,
        }
    }
}

/// Reads until `buf` holds a whole request head; its length, or `None` when the connection ends.
async fn read_head(socket: &mut TcpStream, buf: &mut Vec<u8>) -> Option<usize> {
    loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return Some(at + 4);
        }
        let mut chunk = vec![0u8; 16 * 1024];
        match socket.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

struct Gateway {
    running: Running,
    client: TestClient,
}

impl Gateway {
    /// A gateway in front of `workers`, named `w-0`, `w-1`, …; one failure would eject a worker.
    async fn start(workers: &[&Worker]) -> Gateway {
        let endpoints: Vec<String> =
            workers.iter().enumerate().map(|(i, w)| format!("{{ url = \"{}\", name = \"w-{i}\" }}", w.url)).collect();
        let toml = format!(
            "[server]\nmax_body_bytes = {}\n\n[upstream]\nmax_retries = 2\n\n\
             [upstream.health]\ninterval = \"100ms\"\n\n\
             [upstream.ejection]\nconsecutive_failures = 1\nbase = \"60s\"\nmax = \"120s\"\n\n\
             [[pools]]\nname = \"p\"\nmodels = [\"{MODEL}\"]\nendpoints = [{}]\n\n\
             [[tenants]]\nname = \"acme\"\napi_keys = [\"{TENANT_KEY}\"]\n",
            16 * 1024 * 1024,
            endpoints.join(", ")
        );
        let config = Config::from_toml(&toml, &[], &|_| None).unwrap_or_else(|e| panic!("{e}\n{toml}"));
        let sluice = Sluice::build(config).unwrap();
        let data = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Gateway { running: sluice.start_on(data, admin).unwrap(), client: TestClient::http1() }
    }

    async fn chat(&self, body: &serde_json::Value) -> Reply {
        let url = format!("{}/v1/chat/completions", self.running.base_url());
        self.client.post_json_whole(&url, Some(TENANT_KEY), body).await
    }

    async fn metrics(&self) -> String {
        let reply = self.client.get(&format!("{}/metrics", self.running.admin_url()), None).await;
        assert_eq!(reply.status, 200);
        reply.text()
    }

    /// Asserts that no attempt was retried, failed or ejected an endpoint.
    async fn assert_nothing_retried_or_blamed(&self) {
        let text = self.metrics().await;
        assert_eq!(value(&text, "sluice_upstream_retries_total", &[]), 0.0, "no retries");
        assert_eq!(value(&text, "sluice_upstream_errors_total", &[]), 0.0, "no failed attempts");
        assert_eq!(value(&text, "sluice_endpoint_ejections_total", &[]), 0.0, "no ejections");
    }
}

fn small_chat() -> serde_json::Value {
    chat_body("hello there", json!({"max_tokens": 2}))
}

fn large_chat() -> serde_json::Value {
    chat_body(&"x".repeat(LARGE_PROMPT), json!({"max_tokens": 2}))
}

/// Sends `body` through a gateway in front of two workers that both answer `reply`, and checks
/// that exactly one of them was asked.
async fn through_two_workers(reply: &'static [u8], body: &serde_json::Value) -> Reply {
    let a = Worker::start(Answer::Whole(reply), Answer::Whole(reply)).await;
    let b = Worker::start(Answer::Whole(reply), Answer::Whole(reply)).await;
    let gw = Gateway::start(&[&a, &b]).await;
    let answer = gw.chat(body).await;
    assert_eq!(a.small() + b.small(), 1, "one worker asked, no retry: {}", answer.text());
    gw.assert_nothing_retried_or_blamed().await;
    gw.running.shutdown().await;
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bare_upstream_4xx_reaches_the_client_openai_shaped_with_its_status() {
    let bare = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n\r\n";
    for body in [small_chat(), chat_body("hello there", json!({"max_tokens": 2, "stream": true}))] {
        let reply = through_two_workers(bare, &body).await;
        assert_eq!(reply.status, 431, "{}", reply.text());
        let error = reply.openai_error();
        assert_eq!(error["message"], "the worker answered 431 Request Header Fields Too Large");
        assert_eq!(error["type"], "invalid_request_error");
        assert_eq!(error["code"], "upstream_rejected");
        assert!(reply.headers.contains_key("x-request-id"));
    }

    let page = "<html><head><title>413 Request Entity Too Large</title></head><body><center>nginx/1.25.3</center></body></html>";
    let html = answer("413 Request Entity Too Large", "text/html", page);
    let reply = through_two_workers(html, &small_chat()).await;
    assert_eq!(reply.status, 413, "{}", reply.text());
    assert_eq!(reply.openai_error()["message"], "the worker answered 413 Payload Too Large");
    assert!(!reply.text().contains("nginx"), "no server signature: {}", reply.text());

    let text = answer("400 Bad Request", "text/plain", "bad request at http://10.1.2.3:8000/v1: field x is wrong");
    let reply = through_two_workers(text, &small_chat()).await;
    assert_eq!(reply.status, 400, "{}", reply.text());
    let message = reply.openai_error()["message"].as_str().unwrap().to_owned();
    assert_eq!(message, "the worker answered 400 Bad Request: bad request at [redacted] field x is wrong");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_openai_shaped_upstream_error_passes_unchanged() {
    const BODY: &str = r#"{"error":{"message":"This model's maximum context length is 2048 tokens.","type":"BadRequestError","param":"messages","code":400}}"#;
    let reply = through_two_workers(answer("400 Bad Request", "application/json", BODY), &small_chat()).await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.text(), BODY, "byte for byte");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_a_worker_drops_for_its_size_is_not_retried_and_does_not_eject_it() {
    let a = Worker::start(Answer::Whole(ok()), Answer::Close).await;
    let b = Worker::start(Answer::Whole(ok()), Answer::Close).await;
    let gw = Gateway::start(&[&a, &b]).await;

    let reply = gw.chat(&large_chat()).await;
    assert_eq!(reply.status, 413, "{}", reply.text());
    let error = reply.openai_error();
    assert_eq!(error["code"], "request_too_large");
    assert_eq!(error["type"], "invalid_request_error");
    assert!(!reply.text().contains("127.0.0.1"), "no worker address: {}", reply.text());
    assert_eq!(a.large() + b.large(), 1, "only one worker was sent the request");
    gw.assert_nothing_retried_or_blamed().await;
    let text = gw.metrics().await;
    assert_eq!(value(&text, "sluice_requests_total", &[("outcome", "upstream_rejected")]), 1.0);

    // Neither worker was ejected: both still serve.
    for _ in 0..10 {
        assert_eq!(gw.chat(&small_chat()).await.status, 200);
    }
    let text = gw.metrics().await;
    assert_eq!(value(&text, "sluice_endpoint_healthy", &[("endpoint", "w-0")]), 1.0);
    assert_eq!(value(&text, "sluice_endpoint_healthy", &[("endpoint", "w-1")]), 1.0);
    assert_eq!(a.small() + b.small(), 10);
    gw.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_refuses_a_large_request_early_is_heard_and_not_retried() {
    let bare = b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
    let a = Worker::start(Answer::Whole(ok()), Answer::EarlyAndClose(bare)).await;
    let b = Worker::start(Answer::Whole(ok()), Answer::EarlyAndClose(bare)).await;
    let gw = Gateway::start(&[&a, &b]).await;

    for _ in 0..3 {
        let reply = gw.chat(&large_chat()).await;
        assert_eq!(reply.status, 413, "{}", reply.text());
        assert_eq!(reply.openai_error()["message"], "the worker answered 413 Payload Too Large");
    }
    assert_eq!(a.large() + b.large(), 3, "each request went to one worker once");
    gw.assert_nothing_retried_or_blamed().await;
    assert_eq!(gw.chat(&small_chat()).await.status, 200, "the connection was not reused out of step");
    gw.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_request_a_worker_drops_is_still_retried_and_counted_against_it() {
    let dropping = Worker::start(Answer::Close, Answer::Close).await;
    let good = Worker::start(Answer::Whole(ok()), Answer::Whole(ok())).await;
    let gw = Gateway::start(&[&dropping, &good]).await;
    for i in 0..6 {
        let reply = gw.chat(&small_chat()).await;
        assert_eq!(reply.status, 200, "request {i}: {}", reply.text());
    }
    // The worker may see the first request twice: the gateway sends once more on a new
    // connection when a kept-alive one fails unanswered (the worker may have closed it idle).
    assert!(dropping.small() >= 1, "the dropping worker was tried");
    let text = gw.metrics().await;
    assert_eq!(value(&text, "sluice_upstream_retries_total", &[]), 1.0, "retried once, then ejected");
    assert_eq!(value(&text, "sluice_upstream_errors_total", &[("endpoint", "w-0"), ("kind", "stream")]), 1.0);
    assert_eq!(value(&text, "sluice_endpoint_ejections_total", &[("endpoint", "w-0")]), 1.0, "one failure ejects");
    gw.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_413_414_and_431_are_not_retried() {
    for reply in [
        &b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 0\r\n\r\n"[..],
        &b"HTTP/1.1 414 URI Too Long\r\ncontent-length: 0\r\n\r\n"[..],
        &b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n\r\n"[..],
    ] {
        let answer = through_two_workers(reply, &small_chat()).await;
        assert!(matches!(answer.status.as_u16(), 413 | 414 | 431), "{}", answer.text());
    }
}
