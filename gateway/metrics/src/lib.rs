//! Measurement: the [`RequestRecord`] every request produces, the [`RecordSink`]s that consume
//! it, and the Prometheus families the gateway exports.
//!
//! Names follow the OpenTelemetry GenAI semantic conventions where one exists
//! (`gen_ai_server_time_to_first_token_seconds`, `gen_ai_server_time_per_output_token_seconds`,
//! `gen_ai_server_request_duration_seconds`, `gen_ai_client_token_usage`) and use `sluice_*`
//! otherwise. Every label is bounded by configuration: tenant, model, pool, endpoint, outcome,
//! token type — never keys, prompts, URLs or client-supplied strings.

mod families;
mod record;

pub use families::{
    ConnectionMetrics, EndpointMetrics, Metrics, MetricsError, PoolLoadMetrics, PoolQueueMetrics, PrefixIndexMetrics,
};
pub use record::{Api, CacheStatus, Estimated, Outcome, RecordSink, RequestRecord, UNKNOWN_LABEL};
