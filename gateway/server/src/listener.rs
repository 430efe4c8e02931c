//! Accept loops: plain TCP or TLS, HTTP/1.1 and HTTP/2 on the same port (ALPN with TLS, prior
//! knowledge without), connections tracked so shutdown can drain them.
//!
//! Each accepted connection is first admitted by the listener's [`ConnectionBudget`] (refused
//! ones are closed before anything else is spent on them), then must deliver a request within
//! the header read timeout (TLS handshake and protocol detection included), and is closed once
//! it has gone `idle_timeout` without a request in progress. Each HTTP/1.1 connection and each
//! HTTP/2 stream runs inside `sluice_proxy::client_watch::Watched`, which drops it when its
//! client leaves a streamed response unread past `write_timeout`.

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
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::connections::{Activity, ConnectionBudget, Tracked};

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
}

impl<F> hyper::rt::Executor<F> for StreamExecutor
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, stream: F) {
        let (watched, metrics) = (Watched::new(self.write_timeout, stream), self.metrics.clone());
        self.tasks.spawn(async move {
            if watched.await.is_none() {
                metrics.client_write_timeout();
                tracing::debug!("HTTP/2 stream cut: its client left the response unread");
            }
        });
    }
}

fn builder(limits: &ListenerLimits, tasks: &TaskTracker) -> auto::Builder<StreamExecutor> {
    let executor =
        StreamExecutor { tasks: tasks.clone(), write_timeout: limits.write_timeout, metrics: limits.metrics.clone() };
    let mut builder = auto::Builder::new(executor);
    // Between requests on a kept-alive HTTP/1.1 connection hyper runs the same timer, so a
    // client cannot hold one open by starting a head and never finishing it.
    builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout).keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(20)))
        .max_concurrent_streams(limits.http2_max_concurrent_streams)
        .adaptive_window(true);
    builder
}

/// Serves `handler` on `listener` until `cancel` fires, then lets open connections finish
/// (HTTP/2 gets GOAWAY, HTTP/1 closes after its current response) for up to `grace`.
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
    let builder = Arc::new(builder(&listener.limits, &tasks));
    let graceful = GracefulShutdown::new();
    let (header_timeout, idle_timeout) = (listener.limits.header_read_timeout, listener.limits.idle_timeout);
    let (write_timeout, metrics) = (listener.limits.write_timeout, listener.limits.metrics.clone());
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
        let metrics = metrics.clone();
        tasks.spawn(async move {
            let _permit = permit;
            let activity = Activity::new();
            let serve = async {
                match tls {
                    None => connection(&builder, graceful, TokioIo::new(stream), handler, &activity, peer).await,
                    Some(acceptor) => match tokio::time::timeout(header_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(tls_stream)) => {
                            connection(&builder, graceful, TokioIo::new(tls_stream), handler, &activity, peer).await;
                        }
                        Ok(Err(e)) => tracing::debug!(listener = name, %peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(listener = name, %peer, "TLS handshake timed out"),
                    },
                }
            };
            // An HTTP/1.1 response is streamed by the connection's own task: the connection is
            // what a stalled client loses.
            tokio::select! {
                served = Watched::new(write_timeout, serve) => if served.is_none() {
                    metrics.client_write_timeout();
                    tracing::debug!(listener = name, %peer, "connection cut: its client left a response unread");
                },
                // Dropping the connection closes it; no request is in progress on it.
                () = activity.idle_for(header_timeout, idle_timeout) => {
                    tracing::debug!(listener = name, %peer, "closed an idle connection");
                }
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(grace, graceful.shutdown()).await.is_err() {
        tracing::warn!(?grace, "connections still open after the grace period; closing them");
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
