//! Accept loops: plain TCP or TLS, HTTP/1.1 and HTTP/2 on the same port (ALPN with TLS, prior
//! knowledge without), connections tracked so shutdown can drain them.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::{Body, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Listener {
    pub name: &'static str,
    pub tcp: TcpListener,
    pub tls: Option<TlsAcceptor>,
}

fn builder() -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(Duration::from_secs(30)).keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(20)))
        .max_concurrent_streams(1024)
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
    let builder = Arc::new(builder());
    let graceful = GracefulShutdown::new();
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
        let _ = stream.set_nodelay(true);
        let (builder, graceful, handler, tls) =
            (Arc::clone(&builder), graceful.watcher(), handler.clone(), listener.tls.clone());
        let name = listener.name;
        tasks.spawn(async move {
            match tls {
                None => connection(&builder, graceful, TokioIo::new(stream), handler).await,
                Some(acceptor) => match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(tls_stream)) => connection(&builder, graceful, TokioIo::new(tls_stream), handler).await,
                    Ok(Err(e)) => tracing::debug!(listener = name, %peer, error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!(listener = name, %peer, "TLS handshake timed out"),
                },
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(grace, graceful.shutdown()).await.is_err() {
        tracing::warn!(?grace, "connections still open after the grace period; closing them");
    }
}

async fn connection<I, H, F, B>(builder: &auto::Builder<TokioExecutor>, watcher: Watcher, io: TokioIo<I>, handler: H)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Fn(Request<Incoming>) -> F + Send + Sync + 'static,
    F: Future<Output = Result<Response<B>, Infallible>> + Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let conn = builder.serve_connection(io, service_fn(handler)).into_owned();
    if let Err(e) = watcher.watch(conn).await {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}
