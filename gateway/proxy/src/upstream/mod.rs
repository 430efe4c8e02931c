//! Upstream workers: pools of endpoints, their clients, and their health.

mod client;
mod endpoint;
mod h1;
pub mod health;
mod pool;
pub mod wire;

pub use client::{HttpClient, SendError, UpstreamClient, outbound_client};
pub use endpoint::{Endpoint, FailureKind, InFlightGuard};
pub use h1::{BodyError, WorkerBody, WorkerResponse};
pub use pool::{Pool, Upstreams};
