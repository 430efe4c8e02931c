//! Upstream workers: pools of endpoints, their clients, and their health.

mod client;
mod endpoint;
pub mod health;
mod pool;

pub use client::{HttpClient, UpstreamClient, outbound_client};
pub use endpoint::{Endpoint, FailureKind, InFlightGuard};
pub use pool::{Pool, Upstreams};
