//! The built-in plugins, built from `plugins/` for `wasm32-wasip2` by this crate's build script
//! and embedded in the binary.

use crate::capability::{Capabilities, Capability};

/// The `router` plugin: `sluice-routing`'s `PredictedTtft` policy (`sluice`).
pub const ROUTER: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/router.wasm"));

/// The `ratelimit` plugin: the tenants' stored limits (requests and tokens per minute,
/// concurrency, monthly token budget) through the `limits` capability.
pub const RATELIMIT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/ratelimit.wasm"));

/// The `cache` plugin: which requests the response cache may answer, through the
/// `response-cache` capability. Bound only when configured.
pub const CACHE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/cache.wasm"));

/// Names accepted as `builtin:<name>`.
pub const NAMES: &[&str] = &["router", "ratelimit", "cache"];

/// What a built-in bound without a `capabilities` list is granted: what it needs.
pub fn capabilities(name: &str) -> Capabilities {
    match name {
        "ratelimit" => {
            [Capability::Limits, Capability::Config, Capability::Metrics, Capability::Log].into_iter().collect()
        }
        "cache" => [Capability::ResponseCache, Capability::Config, Capability::Log].into_iter().collect(),
        _ => Capabilities::none(),
    }
}

pub fn component(name: &str) -> Option<&'static [u8]> {
    match name {
        "router" => Some(ROUTER),
        "ratelimit" => Some(RATELIMIT),
        "cache" => Some(CACHE),
        _ => None,
    }
}
