//! Components built against `sluice:policy@0.1.0`, frozen in `plugins/wit-0.1.0/`, run beside
//! current ones.
//!
//! A component's imports and exports are matched by name and version, and its types must equal
//! the host's exactly, so 0.1.0 gets bindings of its own. Its capabilities have the current
//! ones' shapes: [`imports`] links them under 0.1.0's names, each converting its arguments and
//! calling the current implementation, so there is one implementation of every capability. Its
//! hooks are called with 0.1.0's types: [`convert`] converts the current values on the way in
//! (`responses` and `messages` reach a 0.1.0 component as `chat-completions`, as they always
//! did, and fields 0.1.0 lacks are left out) and the decisions on the way out.

pub mod convert;
mod imports;

pub use imports::add_host_to_linker;

wasmtime::component::bindgen!({
    path: "../../plugins/wit-0.1.0",
    world: "plugin",
    imports: {
        "sluice:policy/http.send": async | trappable,
        "sluice:policy/embeddings.embed": async | trappable,
        "sluice:policy/limits.acquire": async | trappable,
        "sluice:policy/limits.acquire-standing": async | trappable,
        "sluice:policy/limits.settle": async | trappable,
        "sluice:policy/limits.release": async | trappable,
        default: trappable,
    },
    with: {
        "sluice:policy/types.headers": crate::resources::HeadersResource,
        "sluice:policy/types.body": crate::resources::BodyResource,
    },
});

/// The hook exports called with `call_async` (see [`crate::bindings::asynchronous`]).
pub mod asynchronous {
    wasmtime::component::bindgen!({
        path: "../../plugins/wit-0.1.0",
        world: "plugin",
        exports: { default: async },
        with: {
            "sluice:policy/types": super::sluice::policy::types,
            "sluice:policy/log": super::sluice::policy::log,
            "sluice:policy/clock": super::sluice::policy::clock,
            "sluice:policy/counters": super::sluice::policy::counters,
            "sluice:policy/limits": super::sluice::policy::limits,
            "sluice:policy/cache": super::sluice::policy::cache,
            "sluice:policy/response-cache": super::sluice::policy::response_cache,
            "sluice:policy/config": super::sluice::policy::config,
            "sluice:policy/metrics": super::sluice::policy::metrics,
            "sluice:policy/embeddings": super::sluice::policy::embeddings,
            "sluice:policy/http": super::sluice::policy::http,
        },
    });

    pub use exports::sluice::policy::{on_request, on_response_chunk, on_response_done, on_response_headers, route};
}

pub use exports::sluice::policy::{on_request, on_response_chunk, on_response_done, on_response_headers, route};
pub use sluice::policy::types;
