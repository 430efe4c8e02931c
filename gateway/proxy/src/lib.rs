//! Sluice's data plane.
//!
//! [`Gateway::handle`] takes an HTTP request for the OpenAI API and returns the response,
//! running the stages listed in [`pipeline`]. Everything the hot path reads is in memory:
//! tenants come from a [`tenants::Directory`] snapshot, endpoints and their live load from
//! [`upstream::Upstreams`].

pub mod body;
pub mod error;
pub mod exchange;
pub mod pipeline;
pub mod plugins;
pub mod relay;
pub mod stages;
pub mod tenants;
pub mod upstream;

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, header};
use http_body::Body;
use sluice_config::Config;
use sluice_metrics::{Metrics, RecordSink};
use sluice_openai::response::ModelList;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use body::ResponseBody;
pub use error::GatewayError;
pub use exchange::Sinks;

/// The data plane: shared, immutable apart from atomics and the tenant snapshot.
pub struct Gateway {
    pub directory: Arc<tenants::Directory>,
    pub upstreams: Arc<upstream::Upstreams>,
    /// The plugin host: its chain is read once per request.
    pub plugins: Arc<sluice_plugin_host::PluginHost>,
    pub metrics: Metrics,
    sinks: Sinks,
    max_body_bytes: usize,
    body_timeout: std::time::Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("invalid endpoint URL: {0}")]
    Endpoint(#[from] http::Error),
    #[error("plugins: {0}")]
    Plugins(#[from] sluice_plugin_host::HostError),
}

impl Gateway {
    /// Builds the data plane from config. `sinks` receive every finished request in addition to
    /// the Prometheus metrics.
    pub fn new(config: &Config, metrics: Metrics, sinks: Vec<Arc<dyn RecordSink>>) -> Result<Self, BuildError> {
        let upstreams = upstream::Upstreams::from_config(config, &metrics)?;
        let plugins = Arc::new(plugins::host(config, metrics.registry())?);
        let mut all: Vec<Arc<dyn RecordSink>> = vec![Arc::new(metrics.clone())];
        all.extend(sinks);
        Ok(Gateway {
            directory: Arc::new(tenants::Directory::new(tenants::TenantSnapshot::from_config(&config.tenants))),
            upstreams: Arc::new(upstreams),
            plugins,
            metrics,
            sinks: Sinks::new(all),
            max_body_bytes: config.server.max_body_bytes,
            body_timeout: config.server.request_body_timeout,
        })
    }

    pub async fn handle<B>(&self, request: Request<B>) -> Response<ResponseBody>
    where
        B: Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        pipeline::handle(self, request).await
    }

    /// Starts the active health checkers; they stop when `cancel` fires.
    pub fn spawn_health_checks(&self, tasks: &TaskTracker, cancel: &CancellationToken) {
        for pool in &self.upstreams.pools {
            tasks.spawn(upstream::health::run(Arc::clone(pool), cancel.clone()));
        }
    }

    fn models_response(&self, request_id: &HeaderValue) -> Response<ResponseBody> {
        let list = ModelList::new(self.upstreams.models().iter().map(|m| m.to_string()), "sluice");
        let body = serde_json::to_vec(&list).unwrap_or_default();
        let mut response = Response::new(ResponseBody::full(body));
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        response.headers_mut().insert("x-request-id", request_id.clone());
        response
    }
}
