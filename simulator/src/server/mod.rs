//! The OpenAI-compatible HTTP front (and Anthropic's Messages API): routes, thin handlers, the
//! accept loop.

mod agents;
mod chat;
mod completions;
mod embeddings;
mod generate;
mod http;
mod kv_events;
mod listener;
mod stream;
mod tool_call;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use ::http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use sluice_openai::response::ModelList;

pub(crate) use listener::{Shutdown, accept_loop};

use self::http::{ApiError, Body, bytes_response, json_response};
use crate::config::SimConfig;
use crate::driver::EngineClient;
use crate::faults::{FaultState, Faults};
use crate::hash;
use crate::kv_log::KvEventLog;
use crate::metrics::Metrics;
use crate::stats::{StatsCell, bump};
use crate::tokenizer::Tokenizer;

/// Everything a request handler needs, shared by all connections of one worker.
#[derive(Debug)]
pub(crate) struct App {
    pub config: SimConfig,
    pub tokenizer: Tokenizer,
    /// `None` in zero-delay mode.
    pub engine: Option<EngineClient>,
    pub faults: FaultState,
    pub stats: Arc<StatsCell>,
    pub metrics: Arc<Metrics>,
    /// `None` when KV events are off (or in zero-delay mode).
    pub kv_events: Option<Arc<KvEventLog>>,
    /// The Responses answers this worker stored, which only it can continue.
    pub responses: Arc<agents::StoredResponses>,
    models: Vec<Arc<str>>,
    next_id: AtomicU64,
    /// Makes this worker's response ids its own: workers that share a seed (the tests') must
    /// still never name two responses alike.
    instance: u64,
}

/// Fields every response object repeats.
#[derive(Debug, Clone)]
pub(crate) struct ResponseMeta {
    pub id: String,
    pub created: u64,
    pub model: String,
}

impl App {
    pub fn new(
        config: SimConfig,
        engine: Option<EngineClient>,
        stats: Arc<StatsCell>,
        metrics: Arc<Metrics>,
        kv_events: Option<Arc<KvEventLog>>,
    ) -> Self {
        Self {
            tokenizer: Tokenizer::new(),
            faults: FaultState::new(config.faults, config.seed),
            models: config.models.iter().map(|m| Arc::from(m.as_str())).collect(),
            config,
            engine,
            stats,
            metrics,
            kv_events,
            responses: Arc::default(),
            next_id: AtomicU64::new(0),
            instance: rand::random(),
        }
    }

    /// Ends long-lived streams that would otherwise hold shutdown up.
    pub fn close_streams(&self) {
        if let Some(log) = &self.kv_events {
            log.close();
        }
    }

    fn check_model(&self, model: &str) -> Result<(), ApiError> {
        if self.config.serves(model) { Ok(()) } else { Err(ApiError::ModelNotFound(model.to_owned())) }
    }

    /// Interned name for labels (avoids an allocation per request).
    fn model_name(&self, model: &str) -> Arc<str> {
        self.models.iter().find(|m| &***m == model).cloned().unwrap_or_else(|| Arc::from(model))
    }

    /// The faults for this request, failing it now if the error dice say so.
    fn roll_faults(&self) -> Result<Faults, ApiError> {
        let faults = self.faults.get();
        if self.faults.roll_error(&faults) {
            return Err(ApiError::InjectedFault);
        }
        Ok(faults)
    }

    fn meta(&self, prefix: &str, model: &str) -> ResponseMeta {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        ResponseMeta {
            id: format!("{prefix}-{:016x}", hash::combine(self.config.seed, n)),
            created: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
            model: model.to_owned(),
        }
    }

    /// A Responses answer's fields: its id is `resp_` and 32 hex digits, like vLLM's
    /// (`resp_<uuid hex>`), unique to this worker.
    fn response_meta(&self, model: &str) -> ResponseMeta {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        ResponseMeta {
            id: format!("resp_{:016x}{:016x}", self.instance, hash::combine(self.config.seed, n)),
            created: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
            model: model.to_owned(),
        }
    }
}

const INFERENCE_PATHS: [&str; 5] =
    ["/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses", "/v1/messages"];

/// The route table.
pub(crate) async fn route(app: Arc<App>, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_owned();
    let inference = INFERENCE_PATHS.contains(&path.as_str());
    if inference {
        bump(&app.stats.requests_received, 1);
    }
    let (parts, body) = req.into_parts();
    let result = match (&parts.method, path.as_str()) {
        (&Method::POST, "/v1/chat/completions") => chat::chat_handler(app.clone(), body).await,
        (&Method::POST, "/v1/completions") => completions::completions_handler(app.clone(), body).await,
        (&Method::POST, "/v1/embeddings") => embeddings::embeddings_handler(app.clone(), body).await,
        (&Method::POST, "/v1/responses") => agents::responses_handler(app.clone(), body).await,
        (&Method::POST, "/v1/messages") => agents::messages_handler(app.clone(), body).await,
        (&Method::GET, "/v1/models") => {
            Ok(json_response(&ModelList::new(app.config.models.iter().cloned(), "sluice-sim")))
        }
        (&Method::GET, "/health") => Ok(bytes_response(StatusCode::OK, "text/plain", "")),
        // `trtllm-serve` serves Prometheus text at `/prometheus/metrics` (its `/metrics` is JSON
        // iteration stats); every flavor answers both so scrapers need no per-flavor path.
        (&Method::GET, "/metrics" | "/prometheus/metrics") => {
            Ok(bytes_response(StatusCode::OK, "text/plain; version=0.0.4", app.metrics.render()))
        }
        (&Method::GET, "/kv_events") => kv_events::kv_events_handler(&app, &parts),
        (_, "/v1/models" | "/health" | "/metrics" | "/prometheus/metrics" | "/kv_events") => {
            Err(ApiError::MethodNotAllowed)
        }
        (_, p) if INFERENCE_PATHS.contains(&p) => Err(ApiError::MethodNotAllowed),
        _ => Err(ApiError::RouteNotFound),
    };
    result.unwrap_or_else(|e| {
        if inference {
            bump(&app.stats.requests_failed, 1);
        }
        tracing::debug!(path, error = %e, kind = e.label(), "request failed");
        e.into_response()
    })
}
