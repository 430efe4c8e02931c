//! Accepting connections: HTTP/1.1 and HTTP/2 prior knowledge on one port, every task tracked.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{App, route};

/// Runs hyper's background tasks (HTTP/2 streams) on the worker's tracker, so shutdown waits
/// for them too.
#[derive(Clone)]
struct TrackedExecutor(TaskTracker);

impl<F> hyper::rt::Executor<F> for TrackedExecutor
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, fut: F) {
        self.0.spawn(fut);
    }
}

/// Tokens that end a worker's connections.
#[derive(Debug, Clone)]
pub(crate) struct Shutdown {
    /// Stop accepting; ask open connections to finish their requests and close.
    pub graceful: CancellationToken,
    /// Close whatever is still open.
    pub force: CancellationToken,
}

pub(crate) async fn accept_loop(listener: TcpListener, app: Arc<App>, shutdown: Shutdown, connections: TaskTracker) {
    let builder = Arc::new(auto::Builder::new(TrackedExecutor(connections.clone())));
    loop {
        let stream = tokio::select! {
            biased;
            () = shutdown.graceful.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(e) => {
                    // Usually EMFILE/ENFILE: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let (builder, app, shutdown) = (builder.clone(), app.clone(), shutdown.clone());
        connections.spawn(async move {
            let service = service_fn(move |req| {
                let app = app.clone();
                async move { Ok::<_, Infallible>(route(app, req).await) }
            });
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                res = conn.as_mut() => {
                    if let Err(e) = res {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                }
                () = shutdown.graceful.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    tokio::select! {
                        _ = conn.as_mut() => {}
                        () = shutdown.force.cancelled() => {}
                    }
                }
            }
        });
    }
}
