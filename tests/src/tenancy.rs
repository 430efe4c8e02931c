//! For the plugin sandbox and hardening tests: more tenants than the fleet's one, a
//! well-behaved tenant's load running beside an attack, bounded polling, the gateway's resident memory, raw uploads
//! for the admin API, and a worker that records the requests that reach it.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use crate::client::{IO_TIMEOUT, Reply};
use crate::{API_KEY, MODEL, TENANT};

/// The admin API token the sandbox configs set in `[admin]`.
pub const ADMIN_TOKEN: &str = "sandbox-admin-token-0123456789abcdef";

/// The API key of `tenant`: the fleet's key for [`TENANT`], `sk-<tenant>-0123456789` otherwise.
pub fn key(tenant: &str) -> String {
    if tenant == TENANT { API_KEY.to_owned() } else { format!("sk-{tenant}-0123456789") }
}

/// `[[tenants]]` tables for `names` (besides the fleet's own), each with [`key`].
pub fn tenants_toml(names: &[&str]) -> String {
    names.iter().map(|n| format!("[[tenants]]\nname = \"{n}\"\napi_keys = [\"{}\"]\n\n", key(n))).collect()
}

/// A small non-streamed chat completion for [`MODEL`].
pub fn chat() -> Value {
    json!({"model": MODEL, "messages": [{"role": "user", "content": "hello"}], "max_tokens": 3})
}

/// Polls `check` every 20 ms until it returns true; panics naming `what` after `timeout`.
pub async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The resident set size of process `pid` in KiB (`VmRSS` in `/proc/PID/status`).
pub fn rss_kib(pid: u32) -> u64 {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in {path}:\n{status}"))
}

/// What a [`GoodTenant`] sends, and how.
#[derive(Debug, Clone)]
pub struct Load {
    /// Clients sending at once, each one request after another.
    pub workers: usize,
    /// The requests each client sends in turn. A streamed one (`"stream": true`) is served only
    /// if its events end with `[DONE]` and none of them is an error.
    pub requests: Vec<Value>,
    /// Each client sends every request on one kept-alive HTTP/1.1 connection (a broken one is
    /// a failure, and replaced), instead of a fresh connection per request: the client is
    /// already connected when an attack starts, as a busy client would be.
    pub kept_alive: bool,
}

impl Load {
    /// `workers` clients sending [`chat`], each on a fresh connection per request.
    pub fn new(workers: usize) -> Load {
        Load { workers, requests: vec![chat()], kept_alive: false }
    }
}

/// A well-behaved tenant sending chat completions on `workers` connections at once, one after
/// another, until stopped. Every answer that is not a 200 is a failure.
pub struct GoodTenant {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failures: Arc<Mutex<Vec<String>>>,
    tasks: JoinSet<()>,
}

/// What the well-behaved tenant saw.
#[derive(Debug)]
pub struct LoadReport {
    pub ok: u64,
    pub failures: Vec<String>,
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

impl GoodTenant {
    pub fn start(api: &str, tenant: &str, workers: usize) -> GoodTenant {
        GoodTenant::start_with(api, tenant, Load::new(workers))
    }

    pub fn start_with(api: &str, tenant: &str, load: Load) -> GoodTenant {
        assert!(!load.requests.is_empty(), "a load needs requests to send");
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = JoinSet::new();
        let url = format!("{api}/v1/chat/completions");
        let load = Arc::new(load);
        for _ in 0..load.workers {
            let (stop, ok, failures, url, key) = (stop.clone(), ok.clone(), failures.clone(), url.clone(), key(tenant));
            let load = load.clone();
            tasks.spawn(async move {
                let mut connection: Option<Sender> = None;
                for body in load.requests.iter().cycle() {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let outcome = if load.kept_alive {
                        exchange_kept_alive(&mut connection, &url, &key, body).await
                    } else {
                        exchange(&url, &key, body).await
                    };
                    match outcome {
                        Ok(()) => {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => failures.lock().unwrap().push(e),
                    }
                }
            });
        }
        GoodTenant { stop, ok, failures, tasks }
    }

    /// Requests answered 200 so far.
    pub fn ok(&self) -> u64 {
        self.ok.load(Ordering::Relaxed)
    }

    /// Stops the load, lets the requests in flight finish, and reports.
    pub async fn stop(mut self) -> LoadReport {
        self.stop.store(true, Ordering::Relaxed);
        while let Some(joined) = self.tasks.join_next().await {
            joined.unwrap();
        }
        let failures = std::mem::take(&mut *self.failures.lock().unwrap());
        LoadReport { ok: self.ok(), failures }
    }
}

/// One request on a fresh connection.
async fn exchange(url: &str, key: &str, body: &Value) -> Result<(), String> {
    let response = crate::client::send(Method::POST, url, Some(key), Some(body)).await?;
    verdict(response, body).await
}

/// One request on the client's kept-alive connection, opened first if there is none.
async fn exchange_kept_alive(
    connection: &mut Option<Sender>,
    url: &str,
    key: &str,
    body: &Value,
) -> Result<(), String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("bad URL {url}: {e}"))?;
    let authority = uri.authority().ok_or_else(|| format!("no host in {url}"))?.clone();
    let sent = async {
        if connection.as_ref().is_none_or(|c| c.is_closed()) {
            let tcp = TcpStream::connect(authority.as_str()).await.map_err(|e| format!("connect {authority}: {e}"))?;
            let (sender, conn) = hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(tcp))
                .await
                .map_err(|e| format!("handshake with {authority}: {e}"))?;
            tokio::spawn(conn);
            *connection = Some(sender);
        }
        let sender = connection.as_mut().ok_or("no connection")?;
        sender.ready().await.map_err(|e| format!("kept-alive connection to {authority} closed: {e}"))?;
        let request = Request::builder()
            .method(Method::POST)
            .uri(uri.path())
            .header(header::HOST, authority.as_str())
            .header(header::AUTHORIZATION, format!("Bearer {key}"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .map_err(|e| format!("building request: {e}"))?;
        sender.send_request(request).await.map_err(|e| format!("request on the kept-alive connection: {e}"))
    };
    let outcome = match tokio::time::timeout(IO_TIMEOUT, sent).await {
        Ok(Ok(response)) => verdict(response, body).await,
        Ok(Err(e)) => Err(e),
        Err(_) => Err(format!("no response from {url} in {IO_TIMEOUT:?}")),
    };
    if outcome.is_err() {
        *connection = None;
    }
    outcome
}

/// Whether a response serves `body`: a 200, read to its end, and for a stream, events that end
/// with `[DONE]` and carry no error.
async fn verdict(response: Response<Incoming>, body: &Value) -> Result<(), String> {
    let status = response.status();
    let read = tokio::time::timeout(IO_TIMEOUT, response.into_body().collect()).await;
    let bytes = match read {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) => return Err(format!("{status}, body broke: {e}")),
        Err(_) => return Err(format!("{status}, body not complete in {IO_TIMEOUT:?}")),
    };
    let text = String::from_utf8_lossy(&bytes);
    if status != 200 {
        return Err(format!("{status}: {text}"));
    }
    if body["stream"] == json!(true) {
        let events: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("data:")).map(str::trim).collect();
        let error = events.iter().any(|e| serde_json::from_str::<Value>(e).is_ok_and(|v| v.get("error").is_some()));
        if error || events.last() != Some(&"[DONE]") {
            return Err(format!("stream did not end well: {text}"));
        }
    }
    Ok(())
}

/// POSTs raw `body` with `content_type` on a fresh connection (component uploads).
pub async fn post_bytes(url: &str, bearer: Option<&str>, content_type: &str, body: Vec<u8>) -> Reply {
    let uri: http::Uri = url.parse().unwrap_or_else(|e| panic!("bad URL {url}: {e}"));
    let authority = uri.authority().unwrap_or_else(|| panic!("no host in {url}")).clone();
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let exchange = async {
        let tcp = TcpStream::connect(authority.as_str()).await.unwrap_or_else(|e| panic!("connect {authority}: {e}"));
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(tcp)).await.unwrap();
        tokio::spawn(conn);
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header(header::HOST, authority.as_str())
            .header(header::CONTENT_TYPE, content_type);
        if let Some(token) = bearer {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let response = sender.send_request(request.body(Full::new(Bytes::from(body))).unwrap()).await;
        let response = response.unwrap_or_else(|e| panic!("POST {url}: {e}"));
        let (parts, body) = response.into_parts();
        let body = body.collect().await.unwrap_or_else(|e| panic!("reading body of {url}: {e}")).to_bytes();
        Reply { status: parts.status, headers: parts.headers, body }
    };
    tokio::time::timeout(IO_TIMEOUT, exchange)
        .await
        .unwrap_or_else(|_| panic!("no response from {url} in {IO_TIMEOUT:?}"))
}

/// A request as a [`RecordingWorker`] received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub path: String,
    pub headers: HeaderMap,
    pub body_len: usize,
}

impl Recorded {
    /// A header's value as text (`""` when absent).
    pub fn header(&self, name: &str) -> String {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned()
    }
}

/// A stand-in worker that records every request (path, headers, body size) and answers every
/// one with a small `chat.completion`: the only way to see what plugins set on the request a
/// worker receives.
pub struct RecordingWorker {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Recorded>>>,
    task: tokio::task::JoinHandle<()>,
}

impl RecordingWorker {
    pub async fn start() -> RecordingWorker {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Arc<Mutex<Vec<Recorded>>> = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else { return };
                let sink = sink.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let sink = sink.clone();
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                            sink.lock().unwrap().push(Recorded {
                                path: parts.uri.path().to_owned(),
                                headers: parts.headers,
                                body_len: body.len(),
                            });
                            Ok::<_, Infallible>(completion())
                        }
                    });
                    let _ =
                        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tcp), service).await;
                });
            }
        });
        RecordingWorker { addr, seen, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request received on a chat completions path, oldest first.
    pub fn chats(&self) -> Vec<Recorded> {
        self.seen.lock().unwrap().iter().filter(|r| r.path == "/v1/chat/completions").cloned().collect()
    }
}

impl Drop for RecordingWorker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn completion() -> Response<Full<Bytes>> {
    let body = json!({
        "id": "chatcmpl-recorded", "object": "chat.completion", "created": 0, "model": MODEL,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}
