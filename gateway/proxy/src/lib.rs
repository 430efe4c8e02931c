//! Sluice's data plane.
//!
//! [`Gateway::handle`] takes an HTTP request for the OpenAI API and returns the response,
//! running the stages listed in [`pipeline`]. Everything the hot path reads is in memory:
//! tenants come from a [`tenants::Directory`] snapshot, endpoints and their live load from
//! [`upstream::Upstreams`].

pub mod anthropic_errors;
pub mod body;
pub mod body_budget;
pub mod client_watch;
pub mod error;
pub mod exchange;
pub mod pipeline;
pub mod plugin_io;
pub mod plugins;
pub mod prompt_blocks;
pub mod redis_link;
pub mod relay;
pub mod response_affinity;
pub mod response_cache;
pub mod stages;
pub mod stream_cut;
pub mod tenants;
pub mod upstream;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{HeaderValue, Request, Response, header};
use http_body::Body;
use sluice_config::Config;
use sluice_metrics::{Metrics, RecordSink};
use sluice_openai::response::ModelList;
use sluice_store_model::StoreSnapshot;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use body::ResponseBody;
pub use error::GatewayError;
pub use exchange::{Sinks, X_REQUEST_ID};

/// The data plane: shared, immutable apart from atomics and the snapshots of tenants and
/// pools, which the store's watcher swaps.
pub struct Gateway {
    pub directory: Arc<tenants::Directory>,
    /// Shared with the plugins' embeddings transport, which uses the pools in service.
    upstreams: Arc<ArcSwap<upstream::Upstreams>>,
    /// Where pool health checkers run, once started; restarted when the pools change.
    health: Mutex<HealthTasks>,
    /// The plugin host: its chain is read once per request.
    pub plugins: Arc<sluice_plugin_host::PluginHost>,
    /// Answers the `cache` plugin (or any plugin granted `response-cache`) lets be reused.
    pub response_cache: Arc<response_cache::ResponseCache>,
    /// Which endpoint made each stored Responses answer, for the requests continuing them.
    pub response_affinity: Arc<response_affinity::ResponseAffinity>,
    pub metrics: Metrics,
    sinks: Sinks,
    max_body_bytes: usize,
    /// Request-body bytes all requests together may hold (`server.max_inflight_body_bytes`).
    body_budget: body_budget::BodyBudget,
    body_timeout: std::time::Duration,
    /// Tokens each tenant used this calendar month, as the store last counted them (for the
    /// monthly budgets, which must survive restarts).
    month_usage: ArcSwap<HashMap<String, u64>>,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("invalid endpoint URL: {0}")]
    Endpoint(#[from] http::Error),
    /// Not a `#[source]`: the message already carries the host's error, which an error chain
    /// printed with `{:#}` would otherwise repeat.
    #[error("plugins: {0}")]
    Plugins(sluice_plugin_host::HostError),
    #[error("registering the response cache's or the response affinity's metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

impl From<sluice_plugin_host::HostError> for BuildError {
    fn from(e: sluice_plugin_host::HostError) -> Self {
        BuildError::Plugins(e)
    }
}

/// Gives the plugins the tenants' settings (`config.tenant`): what the `ratelimit` plugin
/// enforces, with each tenant's tokens this month from `month_usage`.
fn publish_tenants(
    plugins: &sluice_plugin_host::PluginHost,
    tenants: &tenants::TenantSnapshot,
    month_usage: &HashMap<String, u64>,
) {
    let services = plugins.services();
    services.set_tenants(
        tenants
            .tenants()
            .iter()
            .map(|t| (t.name.to_string(), t.settings_json(month_usage.get(&*t.name).copied())))
            .collect(),
    );
    services
        .set_limited_tenants(tenants.tenants().iter().filter(|t| t.is_limited()).map(|t| t.name.to_string()).collect());
}

impl Gateway {
    /// Builds the data plane from config. `sinks` receive every finished request in addition to
    /// the Prometheus metrics.
    pub fn new(config: &Config, metrics: Metrics, sinks: Vec<Arc<dyn RecordSink>>) -> Result<Self, BuildError> {
        let upstreams = Arc::new(ArcSwap::from_pointee(upstream::Upstreams::from_config(config, &metrics)?));
        let plugins = Arc::new(plugins::host(config, metrics.registry())?);
        plugins.services().set_io(Arc::new(plugin_io::GatewayIo::new(Arc::clone(&upstreams))));
        let mut all: Vec<Arc<dyn RecordSink>> = vec![Arc::new(metrics.clone())];
        all.extend(sinks);
        let directory = tenants::TenantSnapshot::from_config(&config.tenants);
        publish_tenants(&plugins, &directory, &HashMap::new());
        let cache_metrics = response_cache::metrics::CacheMetrics::new(metrics.registry())?;
        let response_cache = Arc::new(response_cache::ResponseCache::new(config, cache_metrics));
        let affinity_metrics = response_affinity::AffinityMetrics::new(metrics.registry())?;
        let response_affinity = Arc::new(response_affinity::ResponseAffinity::new(config, affinity_metrics));
        Ok(Gateway {
            directory: Arc::new(tenants::Directory::new(directory)),
            upstreams,
            health: Mutex::new(HealthTasks::default()),
            plugins,
            response_cache,
            response_affinity,
            metrics,
            sinks: Sinks::new(all),
            max_body_bytes: config.server.max_body_bytes,
            body_budget: body_budget::BodyBudget::new(
                config.server.max_inflight_body_bytes,
                config.server.max_inflight_body_bytes_per_tenant,
            ),
            body_timeout: config.server.request_body_timeout,
            month_usage: ArcSwap::from_pointee(HashMap::new()),
        })
    }

    pub async fn handle<B>(&self, request: Request<B>) -> Response<ResponseBody>
    where
        B: Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        pipeline::handle(self, request).await
    }

    /// The pools in service now.
    pub fn upstreams(&self) -> Arc<upstream::Upstreams> {
        self.upstreams.load_full()
    }

    /// Starts the active health checkers and the engine metrics readers; they stop when `cancel`
    /// fires, and restart whenever the pools are replaced.
    pub fn spawn_health_checks(&self, tasks: &TaskTracker, cancel: &CancellationToken) {
        let Ok(mut health) = self.health.lock() else { return };
        health.tracker = Some((tasks.clone(), cancel.clone()));
        health.restart(&self.upstreams.load());
    }

    /// Serves from the store's snapshot from now on: its tenants and keys, and its pools
    /// (with the config's upstream settings). Returns what could not be applied.
    pub fn apply_store_snapshot(&self, snapshot: &StoreSnapshot, config: &Config) -> Vec<String> {
        let tenants = tenants::TenantSnapshot::from_store(snapshot);
        publish_tenants(&self.plugins, &tenants, &self.month_usage.load());
        self.directory.replace(tenants);
        let (upstreams, problems) =
            upstream::Upstreams::from_store(&snapshot.pools, config, &self.upstreams.load(), &self.metrics);
        let upstreams = Arc::new(upstreams);
        self.upstreams.store(Arc::clone(&upstreams));
        if let Ok(mut health) = self.health.lock() {
            health.restart(&upstreams);
        }
        problems
    }

    /// The tokens each tenant used this calendar month (UTC), as the store counts them: the
    /// plugins see them from now on (`usage.month_tokens` in the tenant's settings).
    pub fn set_month_usage(&self, usage: HashMap<String, u64>) {
        self.month_usage.store(Arc::new(usage));
        publish_tenants(&self.plugins, &self.directory.current(), &self.month_usage.load());
    }

    fn models_response(&self, request_id: &HeaderValue, tenant: &tenants::Tenant) -> Response<ResponseBody> {
        let models = self.upstreams.load().models();
        let list = ModelList::new(models.iter().filter(|m| tenant.allows_model(m)).map(|m| m.to_string()), "sluice");
        let body = serde_json::to_vec(&list).unwrap_or_default();
        let mut response = Response::new(ResponseBody::full(body));
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        response.headers_mut().insert(X_REQUEST_ID, request_id.clone());
        response
    }
}

/// The pool health checkers and engine metrics readers: two tasks per pool, all under one token
/// that a pool change cancels.
#[derive(Default)]
struct HealthTasks {
    tracker: Option<(TaskTracker, CancellationToken)>,
    current: Option<CancellationToken>,
}

impl HealthTasks {
    fn restart(&mut self, upstreams: &upstream::Upstreams) {
        let Some((tasks, parent)) = &self.tracker else { return };
        if let Some(old) = self.current.take() {
            old.cancel();
        }
        let token = parent.child_token();
        for pool in &upstreams.pools {
            tasks.spawn(upstream::health::run(Arc::clone(pool), token.clone()));
            tasks.spawn(upstream::engine_metrics::run(Arc::clone(pool), token.clone()));
        }
        self.current = Some(token);
    }
}
