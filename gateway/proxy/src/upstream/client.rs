//! Pooled keep-alive HTTP clients to upstream workers: HTTP/1.1 connections read and written by
//! the request's own task ([`super::h1`]), and HTTP/2 for endpoints that ask for it (prior knowledge
//! on `http://`, ALPN on `https://`), multiplexed by hyper-util's client.

use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use sluice_config::UpstreamConfig;

use super::h1::{H1Pool, WorkerResponse};

pub type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// How long an unused connection is kept.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// A request head this large is unusual: the gateway's own headers take a few hundred bytes and
/// only plugin-set headers add to them. Common worker front ends refuse heads of 8 to 16 KiB
/// (nginx's 8 KiB header line, uvicorn's 16 KiB head), often by closing the connection.
pub const LARGE_REQUEST_HEAD: usize = 8 * 1024;

/// A request body this large is unusual, and larger than some worker front ends accept
/// (nginx's default `client_max_body_size` is 1 MiB).
pub const LARGE_REQUEST_BODY: usize = 1024 * 1024;

/// The sizes of a request sent to a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestSize {
    /// The head as written: request line and headers.
    pub head: usize,
    pub body: usize,
}

impl RequestSize {
    /// A request whose size alone may make a worker refuse it.
    pub fn is_large(self) -> bool {
        self.head >= LARGE_REQUEST_HEAD || self.body > LARGE_REQUEST_BODY
    }

    /// The head, rather than the body, is what a worker likely refused.
    pub fn head_is_large(self) -> bool {
        self.head >= LARGE_REQUEST_HEAD
    }
}

/// Why a request to a worker got no response head.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SendError {
    /// No connection: refused, unreachable, timed out, TLS failed.
    #[error("connect: {0}")]
    Connect(String),
    /// The connection broke or the worker answered with something that is not HTTP.
    #[error("request failed: {0}")]
    Request(String),
    /// The connection failed, with no answer, while or after sending a request whose size alone
    /// may explain it (see [`RequestSize::is_large`]): a worker that refuses a request for its
    /// size may just close the connection, and writing the rest then fails (EPIPE, ECONNRESET).
    /// The request, not the worker, is the likely cause: it is not retried elsewhere, and the
    /// worker is not blamed for it.
    #[error("the connection failed while sending a large request ({} header bytes, {} body bytes): {reason}", .size.head, .size.body)]
    TooLarge { size: RequestSize, reason: String },
    /// The gateway could not open a connection because it is itself out of a resource: file
    /// descriptors (`EMFILE`, `ENFILE`), socket buffers (`ENOBUFS`) or memory (`ENOMEM`). Every
    /// worker would fail the same way, and none of them is at fault.
    #[error("out of local resources: {0}")]
    Local(String),
}

impl SendError {
    /// A connect failure, unless the gateway's own resources are what failed.
    pub(super) fn connect(error: &(dyn std::error::Error + 'static)) -> Self {
        if is_local_exhaustion(error) {
            SendError::Local(error_chain(error))
        } else {
            SendError::Connect(error.to_string())
        }
    }
}

/// Whether `error`, or any error it wraps, is the local system refusing a resource rather than
/// the network or the worker failing.
pub(super) fn is_local_exhaustion(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && is_local_errno(io)
        {
            return true;
        }
        next = e.source();
    }
    false
}

#[cfg(unix)]
fn is_local_errno(error: &std::io::Error) -> bool {
    use rustix::io::Errno;
    matches!(Errno::from_io_error(error), Some(Errno::MFILE | Errno::NFILE | Errno::NOBUFS | Errno::NOMEM))
}

#[cfg(not(unix))]
fn is_local_errno(error: &std::io::Error) -> bool {
    error.kind() == std::io::ErrorKind::OutOfMemory
}

/// `error` and its causes, for the log: hyper-util's "tcp open error" alone does not say which.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut next = error.source();
    while let Some(e) = next {
        text.push_str(": ");
        text.push_str(&e.to_string());
        next = e.source();
    }
    text
}

/// The clients of one pool, since connect timeouts and pool sizes are per pool.
#[derive(Clone, Debug)]
pub struct UpstreamClient {
    http1: H1Pool,
    http2: HttpClient,
}

impl UpstreamClient {
    pub fn new(config: &UpstreamConfig) -> Self {
        let http1 = H1Pool::new(
            connector(config.connect_timeout, false),
            config.max_idle_connections_per_endpoint,
            IDLE_TIMEOUT,
        );
        UpstreamClient { http1, http2: build(config, true) }
    }

    /// Sends `request` (an absolute URI) over HTTP/2 or HTTP/1.1.
    pub async fn send(&self, http2: bool, request: Request<Bytes>) -> Result<WorkerResponse, SendError> {
        if !http2 {
            return self.http1.send(request).await;
        }
        let size = RequestSize { head: approximate_head_len(&request), body: request.body().len() };
        match self.http2.request(request.map(Full::new)).await {
            Ok(response) => Ok(WorkerResponse::detached(response)),
            Err(e) if e.is_connect() => Err(SendError::connect(&e)),
            // A local shortage can surface outside the connect step too (a socket buffer).
            Err(e) if is_local_exhaustion(&e) => Err(SendError::Local(error_chain(&e))),
            // hyper's HTTP/2 client does not say whether the stream was refused or broke, nor
            // whether it was answered in part; for a large request, its size is the likely cause.
            Err(e) if size.is_large() => Err(SendError::TooLarge { size, reason: e.to_string() }),
            Err(e) => Err(SendError::Request(e.to_string())),
        }
    }
}

/// The head as HTTP/1.1 would write it, near enough: HTTP/2 compresses it, but a worker's
/// limits are on the headers' own sizes.
fn approximate_head_len(request: &Request<Bytes>) -> usize {
    let line = request.method().as_str().len() + request.uri().path().len() + 12;
    request.headers().iter().fold(line, |sum, (name, value)| sum + name.as_str().len() + value.len() + 4)
}

/// An HTTP/1.1 (and https) client for requests that are not to workers: the plugins' `http`
/// capability.
pub fn outbound_client(config: &UpstreamConfig) -> HttpClient {
    build(config, false)
}

fn build(config: &UpstreamConfig, http2: bool) -> HttpClient {
    let mut client = Client::builder(TokioExecutor::new());
    client
        .pool_idle_timeout(IDLE_TIMEOUT)
        .pool_max_idle_per_host(config.max_idle_connections_per_endpoint)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new());
    if http2 {
        client
            .http2_only(true)
            .http2_adaptive_window(true)
            .http2_keep_alive_interval(Duration::from_secs(20))
            .http2_keep_alive_while_idle(true);
    }
    client.build(connector(config.connect_timeout, http2))
}

/// TCP (connect timeout, no delay, keepalive) and rustls for `https://`, offering `h2` or
/// `http/1.1` by ALPN.
pub(super) fn connector(connect_timeout: Duration, http2: bool) -> HttpsConnector<HttpConnector> {
    let mut http = HttpConnector::new();
    http.set_connect_timeout(Some(connect_timeout));
    http.set_nodelay(true);
    http.enforce_http(false);
    http.set_keepalive(Some(Duration::from_secs(60)));
    let tls = match rustls_config() {
        Ok(tls) => tls,
        Err(e) => {
            tracing::warn!(error = %e, "no system root certificates; https upstreams will fail to verify");
            empty_roots_config()
        }
    };
    let builder = HttpsConnectorBuilder::new().with_tls_config(tls).https_or_http();
    if http2 { builder.enable_http2().wrap_connector(http) } else { builder.enable_http1().wrap_connector(http) }
}

fn provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    std::sync::Arc::new(rustls::crypto::ring::default_provider())
}

fn rustls_config() -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        // Individual unparsable system certificates are skipped, as browsers do.
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        return Err(format!("{} errors loading native certs", native.errors.len()));
    }
    rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map(|b| b.with_root_certificates(roots).with_no_client_auth())
        .map_err(|e| e.to_string())
}

fn empty_roots_config() -> rustls::ClientConfig {
    match rustls::ClientConfig::builder_with_provider(provider()).with_safe_default_protocol_versions() {
        Ok(b) => b.with_root_certificates(rustls::RootCertStore::empty()).with_no_client_auth(),
        // The ring provider supports the default versions; this arm is unreachable in practice.
        Err(_) => {
            rustls::ClientConfig::builder().with_root_certificates(rustls::RootCertStore::empty()).with_no_client_auth()
        }
    }
}
