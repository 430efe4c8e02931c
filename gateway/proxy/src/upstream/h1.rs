//! HTTP/1.1 connections to workers, driven by the task that reads the response.
//!
//! A request's task writes the request and reads the response itself, on a connection it leases
//! from the pool: there is no connection task and no channel between the socket and the relay,
//! so the chunks one socket read delivered are all decoded within one poll of the relay and
//! leave as one write to the client. (hyper-util's pooled client ran each connection as a task
//! of its own and passed every chunk, one per token, through a one-slot channel; hyper's
//! connection driven in place still cost a dispatch channel and a header map per response,
//! which measured as the largest single part of the gateway's own work per request.) The wire
//! format is in [`sluice_wire`].
//!
//! A connection is leased for one request and goes back to its endpoint's idle list when the
//! response body has been read to the end and the worker did not ask to close it. Idle
//! connections are not polled; one the worker closed while it idled is noticed at checkout,
//! where it is read from once without waiting (finding the EOF); one that closes just as it is
//! taken fails the request with no answer, and the request is sent once more on a new connection
//! (a worker closing an idle connection has not read what it was sent). A lease dropped early
//! (the client went away, a timeout) closes its connection, which is how the worker learns the
//! request was cancelled.

use std::collections::HashMap;
use std::future::poll_fn;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker, ready};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use http::uri::{Authority, Scheme};
use http::{HeaderValue, Request, StatusCode, Uri, header};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_rustls::{HttpsConnector, MaybeHttpsStream};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWrite;
use tokio::net::TcpStream;
use tower_service::Service;

use super::client::{RequestSize, SendError};
use sluice_wire::{self as wire, ChunkedDecoder, Decoded, Framing, ResponseHead, WireError};

type Io = TokioIo<MaybeHttpsStream<TokioIo<TcpStream>>>;
type Idle = HashMap<Key, Vec<(Conn, Instant)>, foldhash::fast::RandomState>;

/// An endpoint's connections are pooled by scheme and authority, compared as written: the
/// endpoint's URI is the same on every request, and `Authority`'s own case-insensitive hash
/// feeds the hasher one byte at a time (a SipHash of it was ~2% of a request's instructions).
struct Key {
    https: bool,
    authority: Authority,
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.https == other.https && self.authority.as_str() == other.authority.as_str()
    }
}

impl Eq for Key {}

impl std::hash::Hash for Key {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.https.hash(state);
        self.authority.as_str().hash(state);
    }
}

/// Room a read gets; a zero-delay worker's whole answer fits, a token event many times over.
const READ_SIZE: usize = 8 * 1024;

struct Conn {
    /// Boxed: with rustls' state inline it is over a kilobyte, and a connection is moved into
    /// and out of the pool and through the request's futures several times per request.
    io: Box<Io>,
    /// Read from the socket, not yet consumed.
    buf: BytesMut,
}

impl Conn {
    /// Reads more of the response into `buf`; `Ok(0)` is the end of the connection.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.buf.capacity() - self.buf.len() < READ_SIZE / 4 {
            self.buf.reserve(READ_SIZE);
        }
        tokio_util::io::poll_read_buf(Pin::new(&mut *self.io), cx, &mut self.buf)
    }

    /// An idle connection that can carry a request right now: nothing arrived on it since its
    /// last response (the worker closing it, or sending something unasked) and nothing is left.
    fn still_open(&mut self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        self.buf.is_empty() && self.poll_fill(&mut cx).is_pending()
    }

    /// Writes the request. While the worker is not taking more of it, reads what it sends: a
    /// worker that refuses a request (413, 431) often answers as soon as it has seen the head and
    /// stops reading, and writing on would wait for nothing or fail (RFC 9112 §9.5: a client
    /// watches for an error response while it sends a body, and stops sending when one comes).
    /// A request that fits in the socket's buffer is written in one go and never reads here.
    async fn write_request(&mut self, mut head: &[u8], mut body: &[u8]) -> Result<Written, RoundTripError> {
        // Set once nothing more is to be learnt from reading: the worker closed its side, the
        // read failed (the write will say how), or it answered 2xx early (the body is still sent).
        let mut stop_reading = false;
        poll_fn(|cx| {
            loop {
                if head.is_empty() && body.is_empty() {
                    // TLS holds records until flushed; plain TCP has nothing to flush.
                    return Pin::new(&mut *self.io)
                        .poll_flush(cx)
                        .map(|r| r.map(|()| Written::Whole).map_err(RoundTripError::Write));
                }
                match Pin::new(&mut *self.io).poll_write_vectored(cx, &[IoSlice::new(head), IoSlice::new(body)]) {
                    Poll::Ready(Ok(0)) => {
                        return Poll::Ready(Err(RoundTripError::Write(io::ErrorKind::WriteZero.into())));
                    }
                    Poll::Ready(Ok(n)) => {
                        let from_head = n.min(head.len());
                        head = &head[from_head..];
                        body = &body[n - from_head..];
                        continue;
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(RoundTripError::Write(e))),
                    Poll::Pending => {}
                }
                if stop_reading {
                    return Poll::Pending;
                }
                match self.poll_fill(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Ok(0) | Err(_)) => stop_reading = true,
                    Poll::Ready(Ok(_)) => match self.early_answer() {
                        Err(e) => return Poll::Ready(Err(e.into())),
                        Ok(Some(status)) if status.is_success() => stop_reading = true,
                        Ok(Some(_)) => return Poll::Ready(Ok(Written::Refused)),
                        Ok(None) => {}
                    },
                }
            }
        })
        .await
    }

    /// The status of a final response that arrived while the request was being written, if one
    /// did; interim (1xx) responses before it are skipped.
    fn early_answer(&mut self) -> Result<Option<StatusCode>, WireError> {
        loop {
            match wire::parse_response(&self.buf)? {
                None => return Ok(None),
                Some((len, head))
                    if head.status.is_informational() && head.status != StatusCode::SWITCHING_PROTOCOLS =>
                {
                    self.buf.advance(len);
                }
                Some((_, head)) => return Ok(Some(head.status)),
            }
        }
    }

    /// Reads the final response head, skipping interim (1xx) responses.
    async fn read_head(&mut self) -> Result<ResponseHead, RoundTripError> {
        let mut received = false;
        loop {
            if let Some((len, head)) = wire::parse_response(&self.buf)? {
                self.buf.advance(len);
                if head.status == StatusCode::SWITCHING_PROTOCOLS {
                    return Err(WireError::Informational(101).into());
                }
                if head.status.is_informational() {
                    continue;
                }
                return Ok(head);
            }
            match poll_fn(|cx| self.poll_fill(cx)).await {
                Ok(0) => return Err(RoundTripError::Closed { received }),
                Ok(_) => received = true,
                Err(e) => return Err(RoundTripError::Read { error: e, received }),
            }
        }
    }

    async fn round_trip(&mut self, head: &[u8], body: &[u8]) -> Result<ResponseHead, RoundTripError> {
        match self.write_request(head, body).await {
            Ok(Written::Whole) => self.read_head().await,
            Ok(Written::Refused) => {
                let mut head = self.read_head().await?;
                // The request was not sent whole: the connection is out of step.
                head.reusable = false;
                Ok(head)
            }
            Err(RoundTripError::Write(error)) => {
                // A worker that refused the request may have said why before it closed the
                // connection: that answer arrived before the failure did, so it is read without
                // waiting on the worker for more than a moment.
                match tokio::time::timeout(EARLY_ANSWER_WAIT, self.read_head()).await {
                    Ok(Ok(mut head)) if !head.status.is_success() => {
                        head.reusable = false;
                        Ok(head)
                    }
                    _ => Err(RoundTripError::Write(error)),
                }
            }
            Err(e) => Err(e),
        }
    }
}

/// How long a failed write waits for the answer the worker may have sent before closing. The
/// answer is normally in the socket's buffer already; this only bounds a connection that failed
/// for a local reason and is still open for reading.
const EARLY_ANSWER_WAIT: Duration = Duration::from_millis(100);

/// How writing a request ended.
enum Written {
    /// All of it was written.
    Whole,
    /// The worker answered with an error status before taking all of it; the answer's head is
    /// in the read buffer.
    Refused,
}

/// Why a request got no response head.
#[derive(Debug, thiserror::Error)]
enum RoundTripError {
    #[error("writing the request: {0}")]
    Write(io::Error),
    #[error("reading the response: {error}")]
    Read { error: io::Error, received: bool },
    #[error("connection closed before a response")]
    Closed { received: bool },
    #[error(transparent)]
    Wire(#[from] WireError),
}

impl RoundTripError {
    /// The connection failed without a byte of an answer: on a connection that had idled, the
    /// worker had closed it before reading the request; on any connection, a worker refusing a
    /// request may close it without a word.
    fn unanswered(&self) -> bool {
        match self {
            RoundTripError::Write(_) => true,
            RoundTripError::Read { received, .. } | RoundTripError::Closed { received } => !received,
            RoundTripError::Wire(_) => false,
        }
    }

    /// The failure of a request of `size`: one whose size alone may explain an unanswered
    /// failure is [`SendError::TooLarge`].
    fn into_send_error(self, size: RequestSize) -> SendError {
        if self.unanswered() && size.is_large() {
            SendError::TooLarge { size, reason: self.to_string() }
        } else {
            SendError::Request(self.to_string())
        }
    }
}

/// Keep-alive HTTP/1.1 connections per endpoint (scheme and authority).
#[derive(Clone)]
pub struct H1Pool {
    inner: Arc<Inner>,
}

struct Inner {
    connector: HttpsConnector<HttpConnector>,
    idle: Mutex<Idle>,
    max_idle: usize,
    idle_timeout: Duration,
}

impl std::fmt::Debug for H1Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H1Pool").field("max_idle", &self.inner.max_idle).finish_non_exhaustive()
    }
}

impl H1Pool {
    pub fn new(connector: HttpsConnector<HttpConnector>, max_idle: usize, idle_timeout: Duration) -> Self {
        let idle = Mutex::new(Idle::default());
        H1Pool { inner: Arc::new(Inner { connector, idle, max_idle, idle_timeout }) }
    }

    /// Sends `request` (an absolute URI) and returns the response head; its body reads the rest
    /// of the response from the connection and hands the connection back when done.
    pub async fn send(&self, request: Request<Bytes>) -> Result<WorkerResponse, SendError> {
        let (parts, body) = request.into_parts();
        let uri = parts.uri;
        let (Some(scheme), Some(authority)) = (uri.scheme(), uri.authority()) else {
            return Err(SendError::Request(format!("not an absolute URI: {uri}")));
        };
        let key = Key { https: *scheme == Scheme::HTTPS, authority: authority.clone() };
        let head = wire::encode_request(&parts.method, &uri, &parts.headers, body.len());

        let size = RequestSize { head: head.len(), body: body.len() };
        // A large request goes on a new connection: if the worker then drops it unanswered, that
        // cannot be an idle connection closing just as it was taken, so the request is not sent
        // to the worker a second time, and its size is the likely cause.
        let idle = if size.is_large() { None } else { self.checkout(&key) };
        let (mut conn, reused) = match idle {
            Some(conn) => (conn, true),
            None => (self.connect(&uri).await?, false),
        };
        let response = match conn.round_trip(&head, &body).await {
            Err(e) if reused && e.unanswered() => {
                tracing::debug!(error = %e, "idle upstream connection was closed; sending on a new one");
                conn = self.connect(&uri).await?;
                conn.round_trip(&head, &body).await
            }
            response => response,
        };
        let head = response.map_err(|e| e.into_send_error(size))?;
        let state = match head.framing {
            Framing::Empty => BodyState::Length(0),
            Framing::Length(n) => BodyState::Length(n),
            Framing::Chunked => BodyState::Chunked(ChunkedDecoder::default()),
            Framing::UntilClose => BodyState::UntilClose,
        };
        let lease = Lease { conn, key, pool: Arc::clone(&self.inner), reusable: head.reusable, state };
        Ok(WorkerResponse {
            status: head.status,
            content_type: head.content_type,
            body: WorkerBody { inner: Source::H1(lease) },
        })
    }

    fn checkout(&self, key: &Key) -> Option<Conn> {
        loop {
            let (mut conn, since) = {
                let mut idle = self.inner.idle.lock().ok()?;
                idle.get_mut(key)?.pop()?
            };
            if since.elapsed() < self.inner.idle_timeout && conn.still_open() {
                return Some(conn);
            }
        }
    }

    async fn connect(&self, uri: &Uri) -> Result<Conn, SendError> {
        let mut connector = self.inner.connector.clone();
        poll_fn(|cx| connector.poll_ready(cx)).await.map_err(|e| SendError::connect(&*e))?;
        let io = connector.call(uri.clone()).await.map_err(|e| SendError::connect(&*e))?;
        Ok(Conn { io: Box::new(TokioIo::new(io)), buf: BytesMut::new() })
    }
}

/// How much of the body is left to read.
enum BodyState {
    Length(u64),
    Chunked(ChunkedDecoder),
    UntilClose,
}

/// A connection out of the pool for one request, with the rest of its response.
struct Lease {
    conn: Conn,
    key: Key,
    pool: Arc<Inner>,
    reusable: bool,
    state: BodyState,
}

impl Lease {
    /// The next piece of the body, `None` at its end.
    fn poll_data(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Bytes>, BodyError>> {
        loop {
            let buf = &mut self.conn.buf;
            match &mut self.state {
                BodyState::Length(0) => return Poll::Ready(Ok(None)),
                BodyState::Length(remaining) => {
                    if !buf.is_empty() {
                        let n = usize::try_from(*remaining).unwrap_or(usize::MAX).min(buf.len());
                        *remaining -= n as u64;
                        return Poll::Ready(Ok(Some(wire::take(buf, n))));
                    }
                }
                BodyState::Chunked(decoder) => match decoder.decode(buf)? {
                    Decoded::Data(data) => return Poll::Ready(Ok(Some(data))),
                    Decoded::End => return Poll::Ready(Ok(None)),
                    Decoded::NeedMore => {}
                },
                BodyState::UntilClose => {
                    if !buf.is_empty() {
                        return Poll::Ready(Ok(Some(buf.split().freeze())));
                    }
                }
            }
            match ready!(self.conn.poll_fill(cx)) {
                Ok(0) if matches!(self.state, BodyState::UntilClose) => {
                    self.reusable = false;
                    return Poll::Ready(Ok(None));
                }
                Ok(0) => return Poll::Ready(Err(BodyError::Closed)),
                Ok(_) => {}
                Err(e) => return Poll::Ready(Err(BodyError::Read(e.to_string()))),
            }
        }
    }

    fn at_end(&self) -> bool {
        matches!(self.state, BodyState::Length(0))
    }

    /// The response was read to the end: the connection may serve another request.
    fn release(self) {
        let Lease { conn, key, pool, reusable, .. } = self;
        // Bytes past the end of the response were not asked for: the connection is out of step.
        if !reusable || !conn.buf.is_empty() {
            return;
        }
        if let Ok(mut idle) = pool.idle.lock() {
            let list = idle.entry(key).or_default();
            if list.len() < pool.max_idle {
                list.push((conn, Instant::now()));
            }
        }
    }
}

/// Why a worker's response body could not be read to its end.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("connection closed before the end of the body")]
    Closed,
    #[error("reading the body: {0}")]
    Read(String),
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error(transparent)]
    Http2(#[from] hyper::Error),
}

/// A worker's response body. Over a leased HTTP/1.1 connection, reading it reads the
/// connection; over HTTP/2 the connection has a task of its own.
/// A worker's response: the part of its head the gateway uses, and its body. Not an
/// `http::Response`: its header map would allocate on every request to hold one header.
#[derive(Debug)]
pub struct WorkerResponse {
    status: StatusCode,
    content_type: Option<HeaderValue>,
    body: WorkerBody,
}

impl WorkerResponse {
    /// A response whose body is driven elsewhere (HTTP/2).
    pub fn detached(response: http::Response<Incoming>) -> Self {
        let content_type = response.headers().get(header::CONTENT_TYPE).cloned();
        WorkerResponse { status: response.status(), content_type, body: WorkerBody::detached(response.into_body()) }
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn content_type(&self) -> Option<&HeaderValue> {
        self.content_type.as_ref()
    }

    pub fn into_body(self) -> WorkerBody {
        self.body
    }
}

pub struct WorkerBody {
    inner: Source,
}

enum Source {
    H1(Lease),
    H2(Incoming),
    /// Read to the end, or failed.
    Done,
}

impl std::fmt::Debug for WorkerBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let source = match &self.inner {
            Source::H1(_) => "http/1.1",
            Source::H2(_) => "http/2",
            Source::Done => "done",
        };
        f.debug_struct("WorkerBody").field("source", &source).finish_non_exhaustive()
    }
}

impl WorkerBody {
    /// A body whose connection is driven elsewhere (HTTP/2).
    pub fn detached(incoming: Incoming) -> Self {
        WorkerBody { inner: Source::H2(incoming) }
    }

    /// Stops reading: an HTTP/1.1 connection not read to the end is closed (how the worker learns
    /// the request was cancelled), an HTTP/2 stream is reset. A body read to its end is already
    /// closed.
    pub fn close(&mut self) {
        self.inner = Source::Done;
    }
}

impl Body for WorkerBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        let polled = match &mut this.inner {
            Source::H2(incoming) => return Pin::new(incoming).poll_frame(cx).map_err(BodyError::from),
            Source::Done => return Poll::Ready(None),
            Source::H1(lease) => ready!(lease.poll_data(cx)),
        };
        match polled {
            Ok(Some(data)) => Poll::Ready(Some(Ok(Frame::data(data)))),
            Ok(None) => {
                if let Source::H1(lease) = std::mem::replace(&mut this.inner, Source::Done) {
                    lease.release();
                }
                Poll::Ready(None)
            }
            Err(e) => {
                // The connection is out of step with the worker: dropping it closes it.
                this.inner = Source::Done;
                Poll::Ready(Some(Err(e)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Source::H1(lease) => lease.at_end(),
            Source::H2(incoming) => incoming.is_end_stream(),
            Source::Done => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Source::H1(lease) => match lease.state {
                BodyState::Length(n) => SizeHint::with_exact(n),
                _ => SizeHint::default(),
            },
            Source::H2(incoming) => incoming.size_hint(),
            Source::Done => SizeHint::with_exact(0),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

    use std::sync::atomic::{AtomicUsize, Ordering};

    use http_body_util::BodyExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";

    /// A worker that answers `per_connection` requests on each connection, then closes it, and
    /// counts the connections it accepted.
    async fn worker(per_connection: usize) -> (Uri, Arc<AtomicUsize>) {
        replying(OK, per_connection).await
    }

    /// A worker that answers each request with the bytes of `reply`.
    async fn replying(reply: &'static [u8], per_connection: usize) -> (Uri, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let uri: Uri = format!("http://{}/v1/models", listener.local_addr().unwrap()).parse().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&accepted);
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    for _ in 0..per_connection {
                        if read_head(&mut socket).await.is_none() || socket.write_all(reply).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (uri, accepted)
    }

    /// Reads one request head; `None` when the connection ended first.
    async fn read_head(socket: &mut tokio::net::TcpStream) -> Option<Vec<u8>> {
        let mut buf = vec![0u8; 4096];
        let mut seen = Vec::new();
        while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
        Some(seen)
    }

    fn pool() -> H1Pool {
        H1Pool::new(super::super::client::connector(Duration::from_secs(1), false), 4, Duration::from_secs(60))
    }

    async fn get(pool: &H1Pool, uri: &Uri) -> String {
        let request = Request::builder().uri(uri.clone()).body(Bytes::new()).unwrap();
        let response = pool.send(request).await.expect("an answer");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(body.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn a_connection_read_to_the_end_serves_the_next_request() {
        let (uri, accepted) = worker(usize::MAX).await;
        let pool = pool();
        for _ in 0..5 {
            assert_eq!(get(&pool, &uri).await, "ok");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_connection_the_worker_closed_is_replaced_without_failing_a_request() {
        let (uri, accepted) = worker(1).await;
        let pool = pool();
        for _ in 0..4 {
            assert_eq!(get(&pool, &uri).await, "ok");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn a_body_dropped_unread_closes_its_connection() {
        let (uri, accepted) = worker(usize::MAX).await;
        let pool = pool();
        let request = Request::builder().uri(uri.clone()).body(Bytes::new()).unwrap();
        drop(pool.send(request).await.unwrap());
        assert_eq!(get(&pool, &uri).await, "ok");
        assert_eq!(accepted.load(Ordering::SeqCst), 2, "the abandoned connection was not reused");
    }

    #[tokio::test]
    async fn a_chunked_body_is_decoded_and_its_connection_reused() {
        let reply = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n\
                      2\r\nok\r\n3;ext=1\r\n!!!\r\n0\r\nx-trailer: t\r\n\r\n";
        let (uri, accepted) = replying(reply, usize::MAX).await;
        let pool = pool();
        for _ in 0..3 {
            let request = Request::builder().uri(uri.clone()).body(Bytes::new()).unwrap();
            let response = pool.send(request).await.unwrap();
            assert_eq!(response.content_type().unwrap(), "text/event-stream");
            let body = response.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(&body[..], b"ok!!!");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn chunks_reach_the_reader_as_the_worker_sends_them() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let uri: Uri = format!("http://{}/", listener.local_addr().unwrap()).parse().unwrap();
        let (first_read, wait_first_read) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            read_head(&mut socket).await.unwrap();
            let head = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n";
            socket.write_all(head).await.unwrap();
            // The rest is sent only once the reader has the first chunk.
            wait_first_read.await.unwrap();
            socket.write_all(b"6\r\nsecond\r\n0\r\n\r\n").await.unwrap();
        });
        let request = Request::builder().uri(uri).body(Bytes::new()).unwrap();
        let mut body = pool().send(request).await.unwrap().into_body();
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(&first[..], b"first");
        first_read.send(()).unwrap();
        let second = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(&second[..], b"second");
        assert!(body.frame().await.is_none());
    }

    #[tokio::test]
    async fn a_connection_the_worker_asked_to_close_is_not_reused() {
        let reply = b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok";
        let (uri, accepted) = replying(reply, usize::MAX).await;
        let pool = pool();
        for _ in 0..3 {
            assert_eq!(get(&pool, &uri).await, "ok");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn interim_responses_are_skipped() {
        let reply = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
        let (uri, accepted) = replying(reply, usize::MAX).await;
        let pool = pool();
        assert_eq!(get(&pool, &uri).await, "ok");
        assert_eq!(get(&pool, &uri).await, "ok");
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_body_framed_by_the_end_of_the_connection_is_read_to_it() {
        let (uri, accepted) = replying(b"HTTP/1.1 200 OK\r\n\r\nuntil the end", 1).await;
        let pool = pool();
        assert_eq!(get(&pool, &uri).await, "until the end");
        assert_eq!(get(&pool, &uri).await, "until the end");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_malformed_response_is_an_error() {
        let (uri, _) = replying(b"HTTP/1.1 2OO OK\r\n\r\n", 1).await;
        let request = Request::builder().uri(uri).body(Bytes::new()).unwrap();
        let error = pool().send(request).await.expect_err("no response");
        assert!(error.to_string().contains("malformed response head"), "{error}");
    }

    #[tokio::test]
    async fn a_body_cut_short_is_an_error_and_its_connection_is_not_reused() {
        let (uri, accepted) = replying(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nok", 1).await;
        let pool = pool();
        let request = Request::builder().uri(uri.clone()).body(Bytes::new()).unwrap();
        let error = pool.send(request).await.unwrap().into_body().collect().await.expect_err("cut short");
        assert!(matches!(error, BodyError::Closed), "{error}");
        let request = Request::builder().uri(uri).body(Bytes::new()).unwrap();
        let _ = pool.send(request).await.unwrap().into_body().collect().await;
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    /// A worker that reads request heads and, for one larger than `limit`, answers `reply` (if
    /// any) without reading further and closes the connection, as hyper and uvicorn do; smaller
    /// requests (heads only) get [`OK`] on a connection kept open. Counts the requests it saw.
    async fn limited(limit: usize, reply: Option<&'static [u8]>) -> (Uri, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let uri: Uri = format!("http://{}/v1/chat/completions", listener.local_addr().unwrap()).parse().unwrap();
        let seen = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&seen);
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let count = Arc::clone(&count);
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let mut got = Vec::new();
                    loop {
                        if got.len() > limit {
                            count.fetch_add(1, Ordering::SeqCst);
                            if let Some(reply) = reply {
                                let _ = socket.write_all(reply).await;
                            }
                            return;
                        }
                        if got.windows(4).any(|w| w == b"\r\n\r\n") {
                            count.fetch_add(1, Ordering::SeqCst);
                            if socket.write_all(OK).await.is_err() {
                                return;
                            }
                            got.clear();
                            continue;
                        }
                        match socket.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => got.extend_from_slice(&buf[..n]),
                        }
                    }
                });
            }
        });
        (uri, seen)
    }

    fn with_header_of(uri: &Uri, len: usize) -> Request<Bytes> {
        Request::post(uri.clone()).header("x-plugin", "a".repeat(len)).body(Bytes::new()).unwrap()
    }

    #[tokio::test]
    async fn a_worker_that_refuses_a_large_head_early_is_heard() {
        let reply = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n\r\n";
        let (uri, seen) = limited(16 * 1024, Some(reply)).await;
        let response = pool().send(with_header_of(&uri, 6 << 20)).await.expect("the worker's answer");
        assert_eq!(response.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        assert!(response.into_body().collect().await.unwrap().to_bytes().is_empty());
        assert_eq!(seen.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_large_request_the_worker_drops_unanswered_is_too_large() {
        let (uri, seen) = limited(16 * 1024, None).await;
        let error = pool().send(with_header_of(&uri, 6 << 20)).await.expect_err("no answer");
        match error {
            SendError::TooLarge { size, .. } => assert!(size.head > 6 << 20 && size.body == 0, "{size:?}"),
            other => panic!("not TooLarge: {other}"),
        }
        assert_eq!(seen.load(Ordering::SeqCst), 1, "sent once");
        // Large enough to be unusual, small enough to fit in the socket's buffers: the worker's
        // close is seen when reading, not writing.
        let error = pool().send(with_header_of(&uri, 20 * 1024)).await.expect_err("no answer");
        assert!(matches!(error, SendError::TooLarge { .. }), "{error}");
    }

    #[tokio::test]
    async fn a_large_request_is_sent_once_on_a_new_connection() {
        let (uri, seen) = limited(16 * 1024, None).await;
        let pool = pool();
        // Leaves an idle connection in the pool.
        let small = pool.send(with_header_of(&uri, 10)).await.unwrap();
        small.into_body().collect().await.unwrap();
        let error = pool.send(with_header_of(&uri, 6 << 20)).await.expect_err("no answer");
        assert!(matches!(error, SendError::TooLarge { .. }), "{error}");
        assert_eq!(seen.load(Ordering::SeqCst), 2, "the large request was sent once");
    }

    #[tokio::test]
    async fn a_small_request_the_worker_drops_is_an_ordinary_failure() {
        let (uri, _) = limited(0, None).await;
        let error = pool().send(with_header_of(&uri, 10)).await.expect_err("no answer");
        assert!(matches!(error, SendError::Request(_)), "{error}");
    }

    #[tokio::test]
    async fn the_request_body_is_sent_with_its_length() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let uri: Uri = format!("http://{}/v1/chat/completions", listener.local_addr().unwrap()).parse().unwrap();
        let received = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut seen = read_head(&mut socket).await.unwrap();
            while !seen.ends_with(b"{\"a\":1}") {
                let mut buf = [0u8; 64];
                let n = socket.read(&mut buf).await.unwrap();
                assert_ne!(n, 0, "the body did not arrive");
                seen.extend_from_slice(&buf[..n]);
            }
            socket.write_all(OK).await.unwrap();
            String::from_utf8(seen).unwrap()
        });
        let request = Request::post(uri)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::TRANSFER_ENCODING, "chunked")
            .body(Bytes::from_static(b"{\"a\":1}"))
            .unwrap();
        let body = pool().send(request).await.unwrap().into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"ok");
        let wire = received.await.unwrap();
        assert!(wire.starts_with("POST /v1/chat/completions HTTP/1.1\r\n"), "{wire}");
        assert!(wire.contains("content-length: 7\r\n"), "{wire}");
        assert!(!wire.contains("transfer-encoding"), "the gateway frames the body itself: {wire}");
    }
}
