//! Upstream workers: pools of endpoints, their clients, and their health.

mod client;
mod endpoint;
pub mod engine_metrics;
mod error_body;
pub mod fair_queue;
mod h1;
pub mod health;
mod pool;
pub mod prefixes;

pub use client::{
    HttpClient, LARGE_REQUEST_BODY, LARGE_REQUEST_HEAD, RequestSize, SendError, UpstreamClient, outbound_client,
};
pub use endpoint::{Endpoint, FailureKind, InFlightGuard};
pub use error_body::wrap_error_body;
pub use fair_queue::{FairQueue, PoolPermit, QueueRejection};
pub use h1::{BodyError, WorkerBody, WorkerResponse};
pub use pool::{Pool, Upstreams};
