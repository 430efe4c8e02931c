//! HTTP/1.1 connections to workers, driven by the task that reads the response.
//!
//! hyper runs an HTTP/1 client connection as a future. hyper-util's pooled client spawns that
//! future as a task of its own, and the response body then reaches the request's task through a
//! one-slot channel: every chunk of a stream, one per token, is a hand-off between two tasks
//! (often two threads), and the relay never finds more than one chunk ready to coalesce. Here the
//! connection future is polled by whoever reads the response — the forward stage for the head,
//! then the relay or the collector for the body — so the chunks one socket read delivered are all
//! decoded within one poll of the relay and leave as one write to the client.
//!
//! A connection is leased for one request and goes back to its endpoint's idle list when the
//! response body has been read to the end. Idle connections are not polled; one the worker closed
//! while it idled is noticed at checkout, where it is polled once (reading the EOF); one that
//! closes just as it is taken fails the request with no answer, and the request is sent once more
//! on a new connection (a worker closing an idle connection has not read what it was sent). A
//! lease dropped early (the client went away, a timeout) closes its connection, which is how the
//! worker learns the request was cancelled.

use std::collections::HashMap;
use std::future::poll_fn;
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderValue, Request, Response, Uri, header};
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_rustls::{HttpsConnector, MaybeHttpsStream};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tower_service::Service;

use super::client::SendError;

type Io = MaybeHttpsStream<TokioIo<TcpStream>>;
type Driver = http1::Connection<Io, Full<Bytes>>;
type Key = (Scheme, Authority);

struct Conn {
    send: http1::SendRequest<Full<Bytes>>,
    /// `None` once the connection has ended.
    driver: Option<Driver>,
}

impl Conn {
    /// Lets the connection read and write what it can; false once it has ended.
    fn drive(&mut self, cx: &mut Context<'_>) -> bool {
        if let Some(driver) = &mut self.driver
            && let Poll::Ready(result) = Pin::new(driver).poll(cx)
        {
            if let Err(e) = result {
                tracing::debug!(error = %e, "upstream connection ended");
            }
            self.driver = None;
        }
        self.driver.is_some()
    }

    /// Ready for a request right now, without waiting: an idle connection that is still open.
    fn ready_now(&mut self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        self.drive(&mut cx) && matches!(self.send.poll_ready(&mut cx), Poll::Ready(Ok(())))
    }
}

/// Keep-alive HTTP/1.1 connections per endpoint (scheme and authority).
#[derive(Clone)]
pub struct H1Pool {
    inner: Arc<Inner>,
}

struct Inner {
    connector: HttpsConnector<HttpConnector>,
    idle: Mutex<HashMap<Key, Vec<(Conn, Instant)>>>,
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
        let idle = Mutex::new(HashMap::new());
        H1Pool { inner: Arc::new(Inner { connector, idle, max_idle, idle_timeout }) }
    }

    /// Sends `request` (an absolute URI) and returns the response head; its body drives the
    /// connection and hands it back when read to the end.
    pub async fn send(&self, mut request: Request<Full<Bytes>>) -> Result<Response<WorkerBody>, SendError> {
        let uri = request.uri().clone();
        let (Some(scheme), Some(authority)) = (uri.scheme().cloned(), uri.authority().cloned()) else {
            return Err(SendError::Request(format!("not an absolute URI: {uri}")));
        };
        if !request.headers().contains_key(header::HOST)
            && let Ok(host) = HeaderValue::from_str(authority.as_str())
        {
            request.headers_mut().insert(header::HOST, host);
        }
        // HTTP/1.1 request lines name the path; the authority travels in `Host`.
        let path = uri.path_and_query().cloned().unwrap_or_else(|| PathAndQuery::from_static("/"));
        *request.uri_mut() = Uri::from(path);
        let key = (scheme, authority);

        let (mut conn, reused) = match self.checkout(&key) {
            Some(conn) => (conn, true),
            None => (self.connect(&uri).await?, false),
        };
        // An idle connection the worker closed just as it was taken fails the request without
        // an answer; the request is then sent again once, on a new connection.
        let again = reused.then(|| copy(&request));
        let head = match (round_trip(&mut conn, request).await, again) {
            (Err(mut e), Some(again)) if e.message().is_some() || e.error().is_incomplete_message() => {
                tracing::debug!(error = %e.error(), "idle upstream connection was closed; sending on a new one");
                let request = e.take_message().unwrap_or(again);
                conn = self.connect(&uri).await?;
                round_trip(&mut conn, request).await
            }
            (head, _) => head,
        };
        let response = head.map_err(|e| SendError::Request(e.into_error().to_string()))?;
        let lease = Box::new(Lease { conn, key, pool: Arc::clone(&self.inner) });
        Ok(response.map(|incoming| WorkerBody { incoming, lease: Some(lease) }))
    }

    fn checkout(&self, key: &Key) -> Option<Conn> {
        loop {
            let (mut conn, since) = {
                let mut idle = self.inner.idle.lock().ok()?;
                idle.get_mut(key)?.pop()?
            };
            if since.elapsed() < self.inner.idle_timeout && conn.ready_now() {
                return Some(conn);
            }
        }
    }

    async fn connect(&self, uri: &Uri) -> Result<Conn, SendError> {
        let mut connector = self.inner.connector.clone();
        poll_fn(|cx| connector.poll_ready(cx)).await.map_err(|e| SendError::Connect(e.to_string()))?;
        let io = connector.call(uri.clone()).await.map_err(|e| SendError::Connect(e.to_string()))?;
        let (send, driver) =
            http1::Builder::new().handshake(io).await.map_err(|e| SendError::Connect(format!("handshake: {e}")))?;
        Ok(Conn { send, driver: Some(driver) })
    }
}

fn copy(request: &Request<Full<Bytes>>) -> Request<Full<Bytes>> {
    let mut copy = Request::new(request.body().clone());
    *copy.method_mut() = request.method().clone();
    *copy.uri_mut() = request.uri().clone();
    *copy.headers_mut() = request.headers().clone();
    copy
}

type TrySendError = hyper::client::conn::TrySendError<Request<Full<Bytes>>>;

/// Sends the request and drives the connection until the response head arrives.
async fn round_trip(conn: &mut Conn, request: Request<Full<Bytes>>) -> Result<Response<Incoming>, TrySendError> {
    let mut response = pin!(conn.send.try_send_request(request));
    poll_fn(|cx| {
        conn.drive(cx);
        response.as_mut().poll(cx)
    })
    .await
}

/// A connection out of the pool for one request.
struct Lease {
    conn: Conn,
    key: Key,
    pool: Arc<Inner>,
}

impl Lease {
    /// The response was read to the end: the connection may serve another request.
    fn release(self: Box<Self>) {
        let Lease { conn, key, pool } = *self;
        if conn.driver.is_none() {
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

/// A worker's response body. Over a leased HTTP/1.1 connection, reading it drives the
/// connection; over HTTP/2 the connection has a task of its own.
pub struct WorkerBody {
    incoming: Incoming,
    /// Boxed: a connection is large, and this body is moved through the pipeline's stages.
    lease: Option<Box<Lease>>,
}

impl WorkerBody {
    /// A body whose connection is driven elsewhere (HTTP/2).
    pub fn detached(incoming: Incoming) -> Self {
        WorkerBody { incoming, lease: None }
    }
}

impl Body for WorkerBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        if let Some(lease) = &mut this.lease {
            lease.conn.drive(cx);
        }
        let polled = Pin::new(&mut this.incoming).poll_frame(cx);
        if let Poll::Ready(None) = polled
            && let Some(lease) = this.lease.take()
        {
            lease.release();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.incoming.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.incoming.size_hint()
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

    /// A worker that answers `per_connection` requests on each connection, then closes it, and
    /// counts the connections it accepted.
    async fn worker(per_connection: usize) -> (Uri, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let uri: Uri = format!("http://{}/v1/models", listener.local_addr().unwrap()).parse().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&accepted);
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    for _ in 0..per_connection {
                        let mut seen = Vec::new();
                        while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                            match socket.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => seen.extend_from_slice(&buf[..n]),
                            }
                        }
                        let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                        if socket.write_all(reply).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (uri, accepted)
    }

    fn pool() -> H1Pool {
        H1Pool::new(super::super::client::connector(Duration::from_secs(1), false), 4, Duration::from_secs(60))
    }

    async fn get(pool: &H1Pool, uri: &Uri) -> String {
        let request = Request::builder().uri(uri.clone()).body(Full::new(Bytes::new())).unwrap();
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
        let request = Request::builder().uri(uri.clone()).body(Full::new(Bytes::new())).unwrap();
        drop(pool.send(request).await.unwrap());
        assert_eq!(get(&pool, &uri).await, "ok");
        assert_eq!(accepted.load(Ordering::SeqCst), 2, "the abandoned connection was not reused");
    }
}
