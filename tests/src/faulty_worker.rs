//! A stand-in worker whose `200` answers are not what they claim to be: a proxy's HTML error
//! page instead of a JSON answer, an SSE event whose data is HTML. `sluice-sim` has these
//! faults (`garbage_body`, `garbage_after_tokens`) but its command line does not offer them, so
//! the binary cannot be asked for them.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::MODEL;

/// What the worker sends where JSON belongs.
pub const GARBAGE: &str = "<html><body><h1>502 Bad Gateway</h1></body></html>";

/// Answers `GET /health` with 200, a whole chat completion with [`GARBAGE`] (status 200,
/// `application/json`), and a streamed one with `tokens` well-formed chunks, then an event whose
/// data is [`GARBAGE`], then the end of the stream.
pub struct GarbageWorker {
    pub addr: SocketAddr,
    chats: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl GarbageWorker {
    pub async fn start(tokens: u32) -> GarbageWorker {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let chats = Arc::new(AtomicU64::new(0));
        let counter = chats.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else { return };
                let counter = counter.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let counter = counter.clone();
                        async move { Ok::<_, Infallible>(answer(req, tokens, &counter).await) }
                    });
                    let _ =
                        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tcp), service).await;
                });
            }
        });
        GarbageWorker { addr, chats, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Chat completion requests received so far.
    pub fn chats(&self) -> u64 {
        self.chats.load(Ordering::Relaxed)
    }
}

impl Drop for GarbageWorker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer(req: Request<Incoming>, tokens: u32, chats: &AtomicU64) -> Response<Full<Bytes>> {
    if req.uri().path() != "/v1/chat/completions" {
        return respond(StatusCode::OK, "text/plain", String::new());
    }
    chats.fetch_add(1, Ordering::Relaxed);
    let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let request: Value = serde_json::from_slice(&body).unwrap_or_default();
    if request["stream"] != json!(true) {
        return respond(StatusCode::OK, "application/json", GARBAGE.to_owned());
    }
    let mut events = String::new();
    for i in 0..tokens {
        let delta = if i == 0 { json!({"role": "assistant", "content": "tok "}) } else { json!({"content": "tok "}) };
        let chunk = json!({
            "id": "chatcmpl-garbage", "object": "chat.completion.chunk", "created": 0, "model": MODEL,
            "choices": [{"index": 0, "delta": delta, "finish_reason": null}]
        });
        events.push_str(&format!("data: {chunk}\n\n"));
    }
    events.push_str(&format!("data: {GARBAGE}\n\n"));
    respond(StatusCode::OK, "text/event-stream", events)
}

fn respond(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}
