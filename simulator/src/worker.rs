//! Starting, observing and stopping one simulated worker.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::SimConfig;
use crate::driver;
use crate::error::SimError;
use crate::faults::Faults;
use crate::kv_log::{KvEventLog, KvEventsConfig};
use crate::lag::StepLag;
use crate::metrics::Metrics;
use crate::server::{self, App, Shutdown};
use crate::stats::{SimStats, StatsCell};

/// Entry point: `SimWorker::start(config, listener)`.
#[derive(Debug)]
pub struct SimWorker;

impl SimWorker {
    /// Serves `config` on `listener` until [`SimHandle::shutdown`] (or the last handle is
    /// dropped). Bind to `127.0.0.1:0` in tests and read the port from [`SimHandle::addr`].
    pub async fn start(config: SimConfig, listener: TcpListener) -> Result<SimHandle, SimError> {
        config.validate()?;
        let addr = listener.local_addr()?;
        let metrics = Arc::new(Metrics::new(config.flavor, config.default_model(), &config.engine)?);
        let stats = Arc::new(StatsCell::default());
        let tasks = TaskTracker::new();
        let connections = TaskTracker::new();
        let engine_stop = CancellationToken::new();
        let shutdown = Shutdown { graceful: CancellationToken::new(), force: CancellationToken::new() };

        // Zero-delay workers have no engine, hence no cache to report on.
        let kv_log = if config.kv_events.enabled && !config.zero_delay {
            // The publish delay is an injected delay like the others: `speedup` compresses it.
            let events =
                KvEventsConfig { publish_delay: config.compress(config.kv_events.publish_delay), ..config.kv_events };
            let (log, delayed) = KvEventLog::new(&events);
            if let Some(delayed) = delayed {
                tasks.spawn(delayed.run(engine_stop.clone()));
            }
            Some(log)
        } else {
            None
        };
        let engine = if config.zero_delay {
            None
        } else {
            let (client, driver) = driver::new(&config, stats.clone(), metrics.clone(), kv_log.clone());
            tasks.spawn(driver.run(engine_stop.clone()));
            Some(client)
        };
        let grace = config.shutdown_grace;
        let app = Arc::new(App::new(config, engine, stats, metrics, kv_log));
        let accept = tasks.spawn(server::accept_loop(listener, app.clone(), shutdown.clone(), connections.clone()));
        tracing::info!(%addr, models = ?app.config.models, zero_delay = app.config.zero_delay, "simulated worker listening");
        Ok(SimHandle {
            inner: Arc::new(Inner {
                addr,
                app,
                tasks,
                connections,
                accept: Mutex::new(Some(accept)),
                shutdown,
                engine_stop,
                grace,
            }),
        })
    }
}

/// A running worker. Cheap to clone; all clones control the same worker.
#[derive(Debug, Clone)]
pub struct SimHandle {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    addr: SocketAddr,
    app: Arc<App>,
    tasks: TaskTracker,
    connections: TaskTracker,
    accept: Mutex<Option<JoinHandle<()>>>,
    shutdown: Shutdown,
    engine_stop: CancellationToken,
    grace: std::time::Duration,
}

impl Drop for Inner {
    /// A worker nobody can reach any more stops instead of lingering until the runtime ends.
    fn drop(&mut self) {
        self.app.close_streams();
        self.shutdown.graceful.cancel();
        self.shutdown.force.cancel();
        self.engine_stop.cancel();
    }
}

impl SimHandle {
    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// `http://IP:PORT`, without a trailing slash.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.inner.addr)
    }

    pub fn stats(&self) -> SimStats {
        self.inner.app.stats.snapshot()
    }

    /// How late the engine's steps delivered their tokens against the worker's own clock.
    pub fn step_lag(&self) -> StepLag {
        self.inner.app.stats.step_lag.summary()
    }

    /// Replaces the faults for requests arriving from now on.
    pub fn set_faults(&self, faults: Faults) {
        self.inner.app.faults.set(faults);
    }

    pub fn faults(&self) -> Faults {
        self.inner.app.faults.get()
    }

    /// The sequence number of the newest published KV event batch (0 with KV events off).
    pub fn kv_events_head(&self) -> u64 {
        self.inner.app.kv_events.as_ref().map_or(0, |log| log.head())
    }

    /// The `/metrics` text, without going through HTTP.
    pub fn metrics_text(&self) -> String {
        String::from_utf8_lossy(&self.inner.app.metrics.render()).into_owned()
    }

    /// Stops accepting, lets in-flight requests finish for up to `shutdown_grace`, then cuts
    /// the rest, stops the engine and waits for every task.
    pub async fn shutdown(self) {
        let inner = &self.inner;
        inner.shutdown.graceful.cancel();
        // Event subscriptions never end by themselves; in-flight generations get the grace.
        inner.app.close_streams();
        let accept = match inner.accept.lock() {
            Ok(mut guard) => guard.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        if let Some(accept) = accept {
            let _ = accept.await;
        }
        inner.connections.close();
        if tokio::time::timeout(inner.grace, inner.connections.wait()).await.is_err() {
            tracing::warn!("in-flight requests outlived the shutdown grace period; closing them");
            inner.shutdown.force.cancel();
            inner.connections.wait().await;
        }
        inner.engine_stop.cancel();
        inner.tasks.close();
        inner.tasks.wait().await;
    }
}
