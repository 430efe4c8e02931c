//! Upstream workers: pools of endpoints, their clients, and their health.

mod client;
mod endpoint;
pub mod health;
mod pool;

pub use client::{HttpClient, UpstreamClient};
pub use endpoint::{Endpoint, FailureKind, InFlightGuard};
pub use pool::{Pool, Upstreams};
