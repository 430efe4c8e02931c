//! Sluice's listeners and lifecycle.
//!
//! [`Sluice::build`] turns a validated [`Config`] into a ready-to-serve application;
//! [`Sluice::start`] binds the data and admin listeners and returns a [`Running`] handle whose
//! [`Running::shutdown`] stops accepting and drains in-flight streams up to the grace period.
//! `main.rs`, `sluice demo` and the tests all start Sluice through this one path.
//! [`Running::reload`] (and `POST /admin/api/reload`) re-reads the config file named with
//! [`Sluice::with_config_file`]; see [`reload`].

mod admin;
pub mod autoscale;
mod builtins;
mod cache_purge;
mod connections;
mod fd_limit;
mod health;
mod listener;
mod live;
mod plugin_sync;
mod protocol_errors;
pub mod reload;
mod reload_plugins;
mod store;
pub mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sluice_config::Config;
use sluice_metrics::{Metrics, MetricsError, RecordSink};
use sluice_proxy::{BuildError, Gateway};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admin::{Admin, Console};
use crate::autoscale::Autoscaler;
use crate::connections::ConnectionBudget;
use crate::listener::{Listener, ListenerLimits};
use crate::reload::{ConfigSource, Reloader, TlsSource};
use crate::store::StoreRuntime;
use crate::tls::ReloadingCert;
pub use reload::ReloadError;
use sluice_admin::AdminState;
pub use sluice_admin::ReloadReport;
use sluice_live::LiveHub;
use sluice_store::Backend;
use sluice_store::model::BackendKind;

/// The longest `start` waits for Redis (shared rate limits) before serving without it.
const REDIS_CONNECT_AT_START: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {error}")]
    Bind { addr: SocketAddr, error: std::io::Error },
    #[error("TLS: {0}")]
    Tls(String),
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    #[error(transparent)]
    Build(#[from] BuildError),
    #[error("reading listener address: {0}")]
    LocalAddr(std::io::Error),
    #[error("store: {0}")]
    Store(#[from] sluice_store::StoreError),
}

/// A built, not yet listening, Sluice.
pub struct Sluice {
    config: Arc<Config>,
    gateway: Arc<Gateway>,
    tls: Option<TlsAcceptor>,
    tls_source: TlsSource,
    /// How often `[server.tls]` files are checked for a new certificate; zero: only on reload.
    tls_watch: Duration,
    reloader: Arc<Reloader>,
    /// The pools' autoscaling signal, recomputed on the data plane's tracker.
    autoscaler: Arc<Autoscaler>,
    /// With a store: the snapshot watcher, usage writer, admin API, live view and dashboard.
    stateful: Option<Stateful>,
}

struct Stateful {
    store: StoreRuntime,
    live: Arc<LiveHub>,
    api: axum::Router,
    auth: Arc<sluice_admin::AdminAuth>,
    backend: BackendKind,
}

impl Sluice {
    pub fn build(config: Config) -> Result<Self, ServerError> {
        Self::build_with(config, Vec::new(), None)
    }

    /// Like [`Sluice::build`], with extra record sinks and a TLS acceptor that overrides the
    /// configured certificate (tests and the demo use in-memory certificates).
    pub fn build_with(
        config: Config,
        sinks: Vec<Arc<dyn RecordSink>>,
        tls: Option<TlsAcceptor>,
    ) -> Result<Self, ServerError> {
        Self::build_judged(config, sinks, tls, None)
    }

    /// [`Sluice::build_with`], the autoscaling signal judging requests against `slos` (the
    /// store's; without one it follows the engines alone).
    fn build_judged(
        config: Config,
        mut sinks: Vec<Arc<dyn RecordSink>>,
        tls: Option<TlsAcceptor>,
        slos: Option<Arc<sluice_store::slo::Slos>>,
    ) -> Result<Self, ServerError> {
        let autoscaler = Autoscaler::new(slos, config.autoscaling);
        sinks.push(Arc::clone(&autoscaler) as Arc<dyn RecordSink>);
        let (tls, tls_source) = match (tls, &config.server.tls) {
            (Some(tls), _) => (Some(tls), TlsSource::Given),
            (None, Some(files)) => {
                let cert = ReloadingCert::open(files)?;
                (Some(cert.acceptor()?), TlsSource::Files(cert))
            }
            (None, None) => (None, TlsSource::None),
        };
        let metrics = Metrics::new()?;
        let gateway = Arc::new(Gateway::new(&config, metrics, sinks)?);
        let config = Arc::new(config);
        let reloader = Arc::new(Reloader::new(Arc::clone(&config), Arc::clone(&gateway), None, tls_source.clone()));
        Ok(Sluice {
            config,
            gateway,
            tls,
            tls_source,
            tls_watch: tls::DEFAULT_WATCH_INTERVAL,
            reloader,
            autoscaler,
            stateful: None,
        })
    }

    /// Reloads (`SIGHUP`, `POST /admin/api/reload`, [`Running::reload`]) read the config from
    /// `path` as `sluice serve` does at start ([`Config::load`]: the file, then `SLUICE__*`
    /// variables). Without it a reload is refused.
    #[must_use]
    pub fn with_config_file(self, path: Option<PathBuf>) -> Self {
        self.with_config_source(Arc::new(move || Config::load(path.as_deref())))
    }

    /// Reloads read the config from `source`.
    #[must_use]
    pub fn with_config_source(self, source: ConfigSource) -> Self {
        self.reloader.set_source(source);
        self
    }

    /// How often `[server.tls]` certificate files are read for changes
    /// ([`tls::DEFAULT_WATCH_INTERVAL`] by default); zero reads them only on reload.
    #[must_use]
    pub fn with_tls_watch_interval(mut self, interval: Duration) -> Self {
        self.tls_watch = interval;
        self
    }

    /// Sluice with its store: the config's tenants and pools are imported into `store`, the
    /// gateway serves the store's snapshot (reloaded on every change, from any replica), usage
    /// is written back, and the admin listener serves the admin API, the live view and the
    /// dashboard.
    pub async fn build_with_store(
        config: Config,
        store: Arc<dyn Backend>,
        sinks: Vec<Arc<dyn RecordSink>>,
        tls: Option<TlsAcceptor>,
    ) -> Result<Self, ServerError> {
        let mut runtime = StoreRuntime::prepare(Arc::clone(&store), &config).await?;
        let live = LiveHub::new(live::SloLookupFromTable(Arc::clone(&runtime.slos)));
        let mut sinks = sinks;
        sinks.push(Arc::clone(&runtime.usage) as Arc<dyn RecordSink>);
        sinks.push(Arc::clone(&live) as Arc<dyn RecordSink>);
        let mut sluice = Self::build_judged(config, sinks, tls, Some(Arc::clone(&runtime.slos)))?;
        runtime.attach(&sluice.gateway, &sluice.config).await?;
        sluice.reloader = Arc::new(Reloader::new(
            Arc::clone(&sluice.config),
            Arc::clone(&sluice.gateway),
            runtime.reload_handle(),
            sluice.tls_source.clone(),
        ));
        let auth = Arc::new(admin::auth(&sluice.config.admin, &sluice.gateway.metrics));
        let state = AdminState {
            store: Arc::clone(&store),
            auth: Arc::clone(&auth),
            plugins: Arc::new(live::HostInspector(Arc::clone(&sluice.gateway))),
            changed: Arc::clone(&runtime.poke),
        };
        let hooks = sluice_admin::GatewayHooks {
            reload: Arc::clone(&sluice.reloader) as Arc<dyn sluice_admin::Reload>,
            cache: Arc::new(cache_purge::GatewayCache(Arc::clone(&sluice.gateway))),
        };
        let api = sluice_admin::gateway_router(state, hooks);
        let backend = store.kind();
        sluice.stateful = Some(Stateful { store: runtime, live, api, auth, backend });
        Ok(sluice)
    }

    pub fn gateway(&self) -> &Arc<Gateway> {
        &self.gateway
    }

    /// Binds the configured addresses and starts serving.
    pub async fn start(self) -> Result<Running, ServerError> {
        // Shared rate limits connect before the first request, so that a first connection
        // slower than a decision's timeout does not send the first decisions to the fallback.
        if let Some(shared) = self.gateway.plugins.services().limits.shared() {
            shared.connect(REDIS_CONNECT_AT_START).await;
        }
        let data = bind(self.config.server.listen).await?;
        let admin = bind(self.config.server.admin_listen).await?;
        self.start_on(data, admin)
    }

    /// Starts serving on listeners bound by the caller (tests bind port 0).
    pub fn start_on(self, data: TcpListener, admin: TcpListener) -> Result<Running, ServerError> {
        let data_addr = data.local_addr().map_err(ServerError::LocalAddr)?;
        let admin_addr = admin.local_addr().map_err(ServerError::LocalAddr)?;
        let cancel = CancellationToken::new();
        let tasks = TaskTracker::new();
        let grace = self.config.server.shutdown_grace;

        self.gateway.spawn_health_checks(&tasks, &cancel);
        tasks.spawn(Arc::clone(&self.autoscaler).run(Arc::clone(&self.gateway), cancel.clone()));
        if let TlsSource::Files(cert) = &self.tls_source
            && !self.tls_watch.is_zero()
        {
            tasks.spawn(Arc::clone(cert).watch(self.tls_watch, cancel.clone()));
        }
        // The watcher, usage writer and live ticker run on the admin plane's tracker: they must
        // outlive the data plane's drain so that the last requests are counted and written.
        let admin_cancel = CancellationToken::new();
        let admin_tasks = TaskTracker::new();
        let console = self.stateful.map(|mut stateful| {
            stateful.store.spawn(&admin_tasks, &admin_cancel, &admin_cancel, grace);
            let sources = live::sources(&self.gateway);
            admin_tasks.spawn(Arc::clone(&stateful.live).run(sources, admin_cancel.clone()));
            Console {
                api: stateful.api,
                live: stateful.live,
                auth: stateful.auth,
                health: Arc::clone(&stateful.store.health),
                backend: stateful.backend,
            }
        });

        // One readiness for both planes: the admin plane's `/readyz` and the data plane's
        // `/health` turn to 503 together when shutdown begins.
        let ready = Arc::new(AtomicBool::new(true));
        let gateway = Arc::clone(&self.gateway);
        let data_ready = Arc::clone(&ready);
        let data_handler = move |request: http::Request<hyper::body::Incoming>| {
            let gateway = Arc::clone(&gateway);
            let ready = Arc::clone(&data_ready);
            async move {
                if request.uri().path() == health::PATH {
                    return Ok(health::response(request.method(), ready.load(Ordering::Relaxed)));
                }
                Ok::<_, std::convert::Infallible>(gateway.handle(request).await)
            }
        };
        let limits = &self.config.server.connections;
        let admin_max = self.config.server.admin_max_connections;
        let nofile = fd_limit::raise_nofile();
        let max_connections = fd_limit::fit_connections(limits.max, admin_max, nofile);
        if max_connections < limits.max {
            tracing::warn!(
                nofile,
                configured = limits.max,
                max_connections,
                "server.max_connections lowered to fit the file-descriptor limit (two per connection: client and worker)"
            );
        }
        tracing::info!(
            nofile,
            max_connections,
            max_connections_per_ip = limits.max_per_ip.min(max_connections),
            "connection limits"
        );
        let data_limits = ListenerLimits {
            budget: ConnectionBudget::new(max_connections, limits.max_per_ip, self.gateway.metrics.connections("data")),
            header_read_timeout: limits.header_read_timeout,
            idle_timeout: limits.idle_timeout,
            http2_max_concurrent_streams: limits.http2_max_concurrent_streams,
            write_timeout: limits.write_timeout,
            metrics: self.gateway.metrics.clone(),
        };
        let listener = Listener { name: "data", tcp: data, tls: self.tls.clone(), limits: data_limits };
        tasks.spawn(listener::serve(listener, data_handler, cancel.clone(), tasks.clone(), grace));

        let admin_state = Arc::new(Admin { gateway: Arc::clone(&self.gateway), ready, console });
        let admin_handler = {
            let admin_state = Arc::clone(&admin_state);
            move |request| Arc::clone(&admin_state).handle(request)
        };
        // The admin plane outlives the data plane's drain so /metrics stays scrapeable.
        // Its own budget: a saturated data port leaves /healthz and /metrics reachable.
        let admin_limits = ListenerLimits {
            budget: ConnectionBudget::new(admin_max, admin_max, self.gateway.metrics.connections("admin")),
            header_read_timeout: limits.header_read_timeout,
            idle_timeout: limits.idle_timeout,
            http2_max_concurrent_streams: limits.http2_max_concurrent_streams,
            write_timeout: limits.write_timeout,
            metrics: self.gateway.metrics.clone(),
        };
        let listener = Listener { name: "admin", tcp: admin, tls: None, limits: admin_limits };
        admin_tasks.spawn(listener::serve(
            listener,
            admin_handler,
            admin_cancel.clone(),
            admin_tasks.clone(),
            Duration::from_secs(1),
        ));

        let scheme = if self.tls.is_some() { "https" } else { "http" };
        tracing::info!(%data_addr, %admin_addr, scheme, "sluice listening");
        Ok(Running {
            data_addr,
            admin_addr,
            tls: self.tls.is_some(),
            cancel,
            admin_cancel,
            tasks,
            admin_tasks,
            admin: admin_state,
            gateway: self.gateway,
            reloader: self.reloader,
            grace,
        })
    }
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, ServerError> {
    TcpListener::bind(addr).await.map_err(|error| ServerError::Bind { addr, error })
}

/// A serving Sluice.
pub struct Running {
    pub data_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    tls: bool,
    cancel: CancellationToken,
    admin_cancel: CancellationToken,
    /// The data listener, its connections and the health checkers.
    tasks: TaskTracker,
    admin_tasks: TaskTracker,
    admin: Arc<Admin>,
    gateway: Arc<Gateway>,
    reloader: Arc<Reloader>,
    grace: Duration,
}

impl Running {
    pub fn gateway(&self) -> &Arc<Gateway> {
        &self.gateway
    }

    /// Re-reads the config file and applies what can change without a restart (what
    /// `SIGHUP` and `POST /admin/api/reload` do); see [`reload`].
    pub async fn reload(&self) -> Result<ReloadReport, ReloadError> {
        self.reloader.reload().await
    }

    /// `http://127.0.0.1:PORT` or `https://…` for the data plane.
    pub fn base_url(&self) -> String {
        format!("{}://{}", if self.tls { "https" } else { "http" }, self.data_addr)
    }

    pub fn admin_url(&self) -> String {
        format!("http://{}", self.admin_addr)
    }

    /// Stops accepting, lets in-flight requests and streams finish for up to the configured
    /// grace period, then cuts what is left: open streams end with an SSE error event, and
    /// every request still running is recorded (its usage estimated where the worker's never
    /// came) before the usage writer's final flush.
    pub async fn shutdown(self) {
        self.admin.ready.store(false, Ordering::Relaxed);
        self.cancel.cancel();
        self.tasks.close();
        // The data listener bounds its own drain by `grace` and the cut streams' drain; the
        // margin covers task wake-ups. The admin plane (and with it the usage writer) is only
        // stopped after this, so the records of cut streams make its final flush.
        let drain = self.grace + listener::CUT_DRAIN + Duration::from_secs(1);
        if tokio::time::timeout(drain, self.tasks.wait()).await.is_err() {
            tracing::warn!("in-flight requests still running at the end of the grace period");
        }
        // Quota this replica leased and did not use goes back to Redis for the others.
        if let Some(shared) = self.gateway.plugins.services().limits.shared() {
            shared.return_leases().await;
        }
        self.admin_cancel.cancel();
        self.admin_tasks.close();
        // Long enough for the usage writer's final flush (it retries for up to the grace period).
        let _ = tokio::time::timeout(
            self.grace.max(Duration::from_secs(5)) + Duration::from_secs(1),
            self.admin_tasks.wait(),
        )
        .await;
        tracing::info!("sluice stopped");
    }
}
