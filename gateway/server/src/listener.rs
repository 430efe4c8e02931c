//! Accept loops: plain TCP or TLS, HTTP/1.1 and HTTP/2 on the same port (ALPN with TLS, prior
//! knowledge without), connections tracked so shutdown can drain them.
//!
//! Each accepted connection is first admitted by the listener's [`ConnectionBudget`] (refused
//! ones are closed before anything else is spent on them), then must deliver a request within
//! the header read timeout (TLS handshake and protocol detection included), and is closed once
//! it has gone `idle_timeout` without a request in progress. Its writes pass through
//! [`ErrorBodies`], so a request hyper cannot parse gets an OpenAI error body. Each HTTP/1.1
//! connection and each HTTP/2 stream runs inside `sluice_proxy::client_watch::Watched`, which
//! drops it when its client leaves a streamed response unread past `write_timeout`.
//!
//! Shutdown stops accepting and lets open connections finish for the grace period. When it
//! runs out, the listener cuts its open streams (`sluice_proxy::stream_cut`: each sends an SSE
//! error event, records its usage and ends) and gives their clients [`CUT_DRAIN`] to read that;
//! whatever is still running then (a client not reading, a request still waiting on its
//! worker) is dropped, which records it as cancelled. Every request is thus recorded before
//! [`serve`] returns, so before the usage writer's last flush.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use bytes::Bytes;
use http::{Request, Response};
use hyper::body::{Body, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use sluice_metrics::Metrics;
use sluice_proxy::client_watch::Watched;
use sluice_proxy::stream_cut::StreamCuts;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::connections::{Activity, ConnectionBudget, Tracked};
use crate::protocol_errors::{ErrorBodies, MAX_HEAD_BYTES, MAX_HEADER_FIELDS};

/// How long the clients of streams cut at the end of the grace period get to read their error
/// event before their connections are dropped.
pub const CUT_DRAIN: Duration = Duration::from_secs(1);

pub struct Listener {
    pub name: &'static str,
    pub tcp: TcpListener,
    pub tls: Option<TlsAcceptor>,
    pub limits: ListenerLimits,
}

/// What the listener lets each connection hold; see `sluice_config::ConnectionLimits`.
pub struct ListenerLimits {
    pub budget: Arc<ConnectionBudget>,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub http2_max_concurrent_streams: u32,
    /// How long a client may leave a streamed response unread.
    pub write_timeout: Duration,
    /// Counts the streams cut for that.
    pub metrics: Metrics,
}

/// Runs hyper's HTTP/2 streams as tracked tasks, each watched for a client that stops reading
/// it (one stalled stream is cut, not its connection's other streams).
#[derive(Clone)]
struct StreamExecutor {
    tasks: TaskTracker,
    write_timeout: Duration,
    metrics: Metrics,
    cuts: Arc<StreamCuts>,
    /// Fired after [`CUT_DRAIN`]: streams still running are dropped.
    abort: CancellationToken,
}

impl<F> hyper::rt::Executor<F> for StreamExecutor
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, stream: F) {
        let watched = Watched::new(self.write_timeout, self.cuts.scope(stream));
        let (metrics, abort) = (self.metrics.clone(), self.abort.clone());
        self.tasks.spawn(async move {
            tokio::select! {
                watched = watched => if watched.is_none() {
                    metrics.client_write_timeout();
                    tracing::debug!("HTTP/2 stream cut: its client left the response unread");
                },
                () = abort.cancelled() => tracing::debug!("HTTP/2 stream dropped at the end of shutdown"),
            }
        });
    }
}

fn builder(
    limits: &ListenerLimits,
    tasks: &TaskTracker,
    cuts: &Arc<StreamCuts>,
    abort: &CancellationToken,
) -> auto::Builder<StreamExecutor> {
    let executor = StreamExecutor {
        tasks: tasks.clone(),
        write_timeout: limits.write_timeout,
        metrics: limits.metrics.clone(),
        cuts: Arc::clone(cuts),
        abort: abort.clone(),
    };
    let mut builder = auto::Builder::new(executor);
    // Between requests on a kept-alive HTTP/1.1 connection hyper runs the same timer, so a
    // client cannot hold one open by starting a head and never finishing it.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true)
        .max_headers(MAX_HEADER_FIELDS)
        .max_buf_size(MAX_HEAD_BYTES);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(20)))
        .max_concurrent_streams(limits.http2_max_concurrent_streams)
        .adaptive_window(true);
    builder
}

/// Serves `handler` on `listener` until `cancel` fires, then lets open connections finish
/// (HTTP/2 gets GOAWAY, HTTP/1 closes after its current response) for up to `grace`; then cuts
/// open streams and, [`CUT_DRAIN`] later, drops what is left.
pub async fn serve<H, F, B>(
    listener: Listener,
    handler: H,
    cancel: CancellationToken,
    tasks: TaskTracker,
    grace: Duration,
) where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Result<Response<B>, Infallible>> + Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let cuts = StreamCuts::new();
    let abort = CancellationToken::new();
    let builder = Arc::new(builder(&listener.limits, &tasks, &cuts, &abort));
    let graceful = GracefulShutdown::new();
    let (header_timeout, idle_timeout) = (listener.limits.header_read_timeout, listener.limits.idle_timeout);
    let (write_timeout, metrics) = (listener.limits.write_timeout, listener.limits.metrics.clone());
    let listener_name = listener.name;
    loop {
        let (stream, peer) = tokio::select! {
            () = cancel.cancelled() => break,
            accepted = listener.tcp.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Usually out of file descriptors; back off instead of spinning.
                    tracing::warn!(listener = listener.name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // Before anything else is spent on the connection: dropping the stream closes it.
        let permit = match listener.limits.budget.admit(peer.ip()) {
            Ok(permit) => permit,
            Err(refusal) => {
                tracing::debug!(listener = listener.name, %peer, cap = refusal.label(), "connection refused");
                drop(stream);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (builder, graceful, handler, tls) =
            (Arc::clone(&builder), graceful.watcher(), handler.clone(), listener.tls.clone());
        let name = listener.name;
        let (metrics, cuts, abort) = (metrics.clone(), Arc::clone(&cuts), abort.clone());
        let connection_metrics = listener.limits.budget.metrics().clone();
        tasks.spawn(async move {
            let _permit = permit;
            let activity = Activity::new();
            let serve = async {
                match tls {
                    None => {
                        let io = TokioIo::new(ErrorBodies::new(stream, connection_metrics));
                        connection(&builder, graceful, io, handler, &activity, peer).await;
                    }
                    Some(acceptor) => match tokio::time::timeout(header_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(tls_stream)) => {
                            let io = TokioIo::new(ErrorBodies::new(tls_stream, connection_metrics));
                            connection(&builder, graceful, io, handler, &activity, peer).await;
                        }
                        Ok(Err(e)) => tracing::debug!(listener = name, %peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(listener = name, %peer, "TLS handshake timed out"),
                    },
                }
            };
            // An HTTP/1.1 response is streamed by the connection's own task: the connection is
            // what a stalled client loses.
            tokio::select! {
                served = Watched::new(write_timeout, cuts.scope(serve)) => if served.is_none() {
                    metrics.client_write_timeout();
                    tracing::debug!(listener = name, %peer, "connection cut: its client left a response unread");
                },
                // Dropping the connection closes it; no request is in progress on it.
                () = activity.idle_for(header_timeout, idle_timeout) => {
                    tracing::debug!(listener = name, %peer, "closed an idle connection");
                }
                () = abort.cancelled() => {
                    tracing::debug!(listener = name, %peer, "connection dropped at the end of shutdown");
                }
            }
        });
    }
    drop(listener);
    let mut drained = std::pin::pin!(graceful.shutdown());
    if tokio::time::timeout(grace, drained.as_mut()).await.is_ok() {
        return;
    }
    let streams = cuts.cut();
    tracing::warn!(listener = listener_name, ?grace, streams, "grace period over: cutting open streams");
    if tokio::time::timeout(CUT_DRAIN, drained).await.is_err() {
        tracing::warn!(listener = listener_name, "connections still open after the streams were cut; dropping them");
        abort.cancel();
    }
}

async fn connection<I, H, F, B>(
    builder: &auto::Builder<StreamExecutor>,
    watcher: Watcher,
    io: TokioIo<I>,
    handler: H,
    activity: &Arc<Activity>,
    peer: SocketAddr,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Fn(Request<Incoming>) -> F + Send + Sync + 'static,
    F: Future<Output = Result<Response<B>, Infallible>> + Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let activity = Arc::clone(activity);
    let service = service_fn(move |mut request: Request<Incoming>| {
        // Handlers that answer per client (the admin token's lockout) read the address here.
        request.extensions_mut().insert(ConnectInfo(peer));
        let guard = activity.begin();
        let response = handler(request);
        async move {
            let response = response.await?;
            Ok::<_, Infallible>(response.map(|body| Tracked::new(body, guard)))
        }
    });
    let conn = builder.serve_connection(io, service).into_owned();
    if let Err(e) = watcher.watch(conn).await {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}
