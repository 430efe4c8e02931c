//! A small closed-loop HTTP/1.1 load generator: each worker keeps one keep-alive connection and
//! sends the next request as soon as the previous response has been read in full.
//!
//! It writes a request encoded once and reads responses with the gateway's own HTTP/1.1 framing
//! (`sluice_wire`), as wrk does with its pre-built request: on a two-core
//! machine the client's CPU comes out of what the worker and the gateway can use, and a
//! general-purpose client (hyper's, before 2026-11-29) cost about twice what wrk does per
//! request (BENCHMARKS.md).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use hdrhistogram::Histogram;
use http::{HeaderMap, HeaderValue, Method, Uri, header};
use sluice_wire::{self as wire, ChunkedDecoder, Decoded, Framing, WireError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub path: &'static str,
    pub bearer: Option<String>,
    pub body: Bytes,
}

impl Target {
    /// The whole request, head and body, ready to write.
    pub fn encode(&self) -> Result<Bytes, ExchangeError> {
        let uri: Uri = format!("http://{}{}", self.addr, self.path).parse().map_err(|_| ExchangeError::Target)?;
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(key) = &self.bearer {
            let value = HeaderValue::try_from(format!("Bearer {key}")).map_err(|_| ExchangeError::Target)?;
            headers.insert(header::AUTHORIZATION, value);
        }
        let head = wire::encode_request(&Method::POST, &uri, &headers, self.body.len());
        let mut request = BytesMut::with_capacity(head.len() + self.body.len());
        request.extend_from_slice(&head);
        request.extend_from_slice(&self.body);
        Ok(request.freeze())
    }
}

/// Why one request of the load failed; the connection is not used again after any of these.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    #[error("the target's address and path do not make a request")]
    Target,
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("the connection closed before the response ended")]
    Closed,
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error("HTTP {0}")]
    Status(http::StatusCode),
}

/// One request's timing.
#[derive(Debug, Clone, Copy)]
pub struct Exchange {
    pub total: Duration,
    /// Time to the first body bytes (the first token, for streams).
    pub first_chunk: Duration,
    /// The connection may carry another request.
    pub reusable: bool,
}

/// One keep-alive HTTP/1.1 connection.
pub struct Connection {
    stream: TcpStream,
    buf: BytesMut,
}

impl Connection {
    pub async fn open(addr: SocketAddr) -> std::io::Result<Connection> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Connection { stream, buf: BytesMut::with_capacity(16 * 1024) })
    }

    /// Writes `request` (from [`Target::encode`]) and reads the whole response; a status other
    /// than 2xx is an error.
    pub async fn send(&mut self, request: &[u8]) -> Result<Exchange, ExchangeError> {
        let start = Instant::now();
        self.stream.write_all(request).await?;
        let head = loop {
            if let Some((len, head)) = wire::parse_response(&self.buf)? {
                self.buf.advance(len);
                if head.status.is_informational() {
                    continue;
                }
                break head;
            }
            self.fill().await?;
        };
        let mut first_chunk = None;
        match head.framing {
            Framing::Empty => {}
            Framing::Length(len) => {
                let mut left = usize::try_from(len).map_err(|_| WireError::ContentLength)?;
                loop {
                    if !self.buf.is_empty() {
                        first_chunk.get_or_insert_with(|| start.elapsed());
                        let n = left.min(self.buf.len());
                        self.buf.advance(n);
                        left -= n;
                    }
                    if left == 0 {
                        break;
                    }
                    self.fill().await?;
                }
            }
            Framing::Chunked => {
                let mut decoder = ChunkedDecoder::default();
                loop {
                    match decoder.decode(&mut self.buf)? {
                        Decoded::Data(_) => {
                            first_chunk.get_or_insert_with(|| start.elapsed());
                        }
                        Decoded::NeedMore => self.fill().await?,
                        Decoded::End => break,
                    }
                }
            }
            Framing::UntilClose => {
                while self.stream.read_buf(&mut self.buf).await? > 0 {
                    first_chunk.get_or_insert_with(|| start.elapsed());
                    self.buf.clear();
                }
            }
        }
        let total = start.elapsed();
        if !head.status.is_success() {
            return Err(ExchangeError::Status(head.status));
        }
        let reusable = head.reusable && head.framing != Framing::UntilClose;
        Ok(Exchange { total, first_chunk: first_chunk.unwrap_or(total), reusable })
    }

    /// Reads more of the response into the buffer.
    async fn fill(&mut self) -> Result<(), ExchangeError> {
        if self.stream.read_buf(&mut self.buf).await? == 0 {
            return Err(ExchangeError::Closed);
        }
        Ok(())
    }
}

/// Latencies in microseconds.
#[derive(Debug, Clone)]
pub struct LoadResult {
    pub ok: u64,
    pub errors: u64,
    pub elapsed: Duration,
    pub latency_us: Histogram<u64>,
    /// Time to the first body chunk (the first token, for streams).
    pub first_chunk_us: Histogram<u64>,
}

impl Default for LoadResult {
    fn default() -> Self {
        LoadResult { ok: 0, errors: 0, elapsed: Duration::ZERO, latency_us: histogram(), first_chunk_us: histogram() }
    }
}

impl LoadResult {
    fn new() -> Self {
        LoadResult::default()
    }

    /// Adds a run that happened at another time (a slice of a phase): its requests, errors,
    /// latencies and duration.
    pub fn absorb(&mut self, other: &LoadResult) {
        self.merge(other);
        self.elapsed += other.elapsed;
    }

    pub fn requests_per_second(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn merge(&mut self, other: &LoadResult) {
        self.ok += other.ok;
        self.errors += other.errors;
        let _ = self.latency_us.add(&other.latency_us);
        let _ = self.first_chunk_us.add(&other.first_chunk_us);
    }
}

#[expect(clippy::expect_used, reason = "constant bounds that new_with_bounds accepts")]
fn histogram() -> Histogram<u64> {
    // 1 µs .. 10 min at 3 significant figures.
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

/// Requests on one new keep-alive connection until `deadline`, the first failed request, or a
/// response that ends the connection.
async fn connection_loop(addr: SocketAddr, request: &[u8], deadline: Instant, result: &mut LoadResult) {
    let Ok(mut connection) = Connection::open(addr).await else {
        result.errors += 1;
        // A refused connection fails at once; without a pause the loop would spin.
        tokio::time::sleep(Duration::from_millis(10)).await;
        return;
    };
    while Instant::now() < deadline {
        match connection.send(request).await {
            Ok(exchange) => {
                let _ = result.latency_us.record(exchange.total.as_micros().max(1) as u64);
                let _ = result.first_chunk_us.record(exchange.first_chunk.as_micros().max(1) as u64);
                result.ok += 1;
                if !exchange.reusable {
                    return;
                }
            }
            Err(_) => {
                result.errors += 1;
                return;
            }
        }
    }
}

/// Runs `concurrency` closed-loop workers against `target` for `duration`.
pub async fn closed_loop(target: &Target, concurrency: usize, duration: Duration) -> LoadResult {
    let started = Instant::now();
    let deadline = started + duration;
    let mut total = LoadResult::new();
    let request = match target.encode() {
        Ok(request) => request,
        Err(_) => {
            total.errors += 1;
            return total;
        }
    };
    let mut workers = JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let (addr, request) = (target.addr, request.clone());
        workers.spawn(async move {
            let mut result = LoadResult::new();
            while Instant::now() < deadline {
                connection_loop(addr, &request, deadline, &mut result).await;
            }
            result
        });
    }
    while let Some(joined) = workers.join_next().await {
        if let Ok(r) = joined {
            total.merge(&r);
        }
    }
    total.elapsed = started.elapsed();
    total
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic, reason = "test code")]

    use tokio::net::TcpListener;

    use super::*;

    /// A server on 127.0.0.1 port 0 that answers the first request on the first connection with
    /// `responses` (written one piece at a time), then closes.
    async fn canned(responses: Vec<&'static [u8]>) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = vec![0u8; 4096];
            let _ = socket.read(&mut request).await.unwrap();
            for piece in responses {
                socket.write_all(piece).await.unwrap();
                socket.flush().await.unwrap();
            }
        });
        addr
    }

    fn target(addr: SocketAddr) -> Bytes {
        Target { addr, path: "/v1/chat/completions", bearer: Some("sk-x".into()), body: Bytes::from_static(b"{}") }
            .encode()
            .unwrap()
    }

    #[test]
    fn the_request_is_encoded_once_with_its_headers_and_body() {
        let request = target("127.0.0.1:8080".parse().unwrap());
        let text = std::str::from_utf8(&request).unwrap();
        assert!(text.starts_with("POST /v1/chat/completions HTTP/1.1\r\n"), "{text}");
        for line in ["host: 127.0.0.1:8080\r\n", "authorization: Bearer sk-x\r\n", "content-length: 2\r\n"] {
            assert!(text.contains(line), "{text}");
        }
        assert!(text.ends_with("\r\n\r\n{}"), "{text}");
    }

    #[tokio::test]
    async fn a_length_framed_response_is_read_to_its_end_and_keeps_the_connection() {
        let addr = canned(vec![b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n01234", b"56789"]).await;
        let mut connection = Connection::open(addr).await.unwrap();
        let exchange = connection.send(&target(addr)).await.unwrap();
        assert!(exchange.reusable);
        assert!(exchange.first_chunk <= exchange.total);
        assert!(connection.buf.is_empty(), "the whole body was consumed");
    }

    #[tokio::test]
    async fn a_chunked_stream_is_read_to_its_last_chunk_after_an_interim_response() {
        let addr = canned(vec![
            b"HTTP/1.1 100 Continue\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
            b"6\r\ndata: \r\n",
            b"2\r\n1\n\r\n0\r\n\r\n",
        ])
        .await;
        let mut connection = Connection::open(addr).await.unwrap();
        let exchange = connection.send(&target(addr)).await.unwrap();
        assert!(exchange.reusable);
        assert!(connection.buf.is_empty());
    }

    #[tokio::test]
    async fn a_body_that_ends_with_the_connection_is_read_and_not_reused() {
        let addr = canned(vec![b"HTTP/1.1 200 OK\r\n\r\nall of it"]).await;
        let mut connection = Connection::open(addr).await.unwrap();
        assert!(!connection.send(&target(addr)).await.unwrap().reusable);
    }

    #[tokio::test]
    async fn an_error_status_and_a_cut_body_are_errors() {
        let addr = canned(vec![b"HTTP/1.1 429 Too Many Requests\r\ncontent-length: 2\r\n\r\n{}"]).await;
        let mut connection = Connection::open(addr).await.unwrap();
        let error = connection.send(&target(addr)).await.unwrap_err();
        assert!(matches!(error, ExchangeError::Status(s) if s.as_u16() == 429), "{error}");

        let addr = canned(vec![b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n0123"]).await;
        let mut connection = Connection::open(addr).await.unwrap();
        let error = connection.send(&target(addr)).await.unwrap_err();
        assert!(matches!(error, ExchangeError::Closed), "{error}");
    }

    #[tokio::test]
    async fn a_closed_loop_against_nothing_counts_errors_and_ends() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let target = Target { addr, path: "/", bearer: None, body: Bytes::new() };
        let result = closed_loop(&target, 2, Duration::from_millis(50)).await;
        assert_eq!(result.ok, 0);
        assert!(result.errors >= 2, "{result:?}");
    }
}
