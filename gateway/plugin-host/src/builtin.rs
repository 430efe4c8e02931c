//! The built-in plugins, built from `plugins/` for `wasm32-wasip2` by this crate's build script
//! and embedded in the binary.

/// The `router` plugin: the available endpoint with the fewest requests in flight.
pub const ROUTER: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/router.wasm"));

/// The `ratelimit` plugin: the tenants' stored limits (requests and tokens per minute,
/// concurrency, monthly token budget) through the `limits` capability.
pub const RATELIMIT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/ratelimit.wasm"));

/// Names accepted as `builtin:<name>`.
pub const NAMES: &[&str] = &["router", "ratelimit"];

pub fn component(name: &str) -> Option<&'static [u8]> {
    match name {
        "router" => Some(ROUTER),
        "ratelimit" => Some(RATELIMIT),
        _ => None,
    }
}
