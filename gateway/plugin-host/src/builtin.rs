//! The built-in plugins, built from `plugins/` for `wasm32-wasip2` by this crate's build script
//! and embedded in the binary.

/// The `router` plugin: the available endpoint with the fewest requests in flight.
pub const ROUTER: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/router.wasm"));

/// Names accepted as `builtin:<name>`.
pub const NAMES: &[&str] = &["router"];

pub fn component(name: &str) -> Option<&'static [u8]> {
    match name {
        "router" => Some(ROUTER),
        _ => None,
    }
}
