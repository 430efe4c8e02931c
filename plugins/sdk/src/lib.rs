//! Write Sluice policy plugins in Rust.
//!
//! A plugin is a type implementing [`Plugin`], whose hooks all default to "no opinion", and one
//! [`export_plugin!`] line naming the hooks it implements. Only those hooks are exported from the
//! component, so the gateway skips the others at no cost.
//!
//! ```ignore
//! use sluice_sdk::{Plugin, export_plugin};
//! use sluice_sdk::types::{Candidate, RouteDecision, RouteRequest};
//!
//! struct First;
//!
//! impl Plugin for First {
//!     fn route(_request: RouteRequest, candidates: Vec<Candidate>) -> RouteDecision {
//!         candidates.first().map_or(RouteDecision::Abstain, |c| RouteDecision::Route(c.id))
//!     }
//! }
//!
//! export_plugin!(First => [route]);
//! ```
//!
//! Host capabilities ([`log`], [`clock`], [`counters`], [`limits`], [`cache`], [`response_cache`], [`config`], [`metrics`],
//! [`embeddings`], [`http`]) work only when the plugin's binding grants them; a component that
//! uses one it is not granted is refused when the gateway loads it. The contract itself is
//! `plugins/wit/policy.wit` (`sluice:policy@0.2.0`); `docs/plugins.md` explains each hook. A
//! component built with an earlier SDK, against `sluice:policy@0.1.0`, keeps running unchanged;
//! rebuilding it with this one is what lets it see 0.2.0's additions (the `responses` and
//! `messages` APIs, the route hook's new fields).

/// The raw bindings of the imports (types and host capabilities).
#[doc(hidden)]
#[allow(unsafe_code, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "host",
        path: "../wit",
        generate_unused_types: true,
        additional_derives: [PartialEq],
    });
}

macro_rules! hook_world {
    ($module:ident, $world:literal, $macro_name:literal, $path:literal) => {
        #[doc(hidden)]
        #[allow(unsafe_code, clippy::all)]
        pub mod $module {
            wit_bindgen::generate!({
                world: $world,
                path: "../wit",
                with: {
                    "sluice:policy/types@0.2.0": crate::bindings::sluice::policy::types,
                    "sluice:policy/log@0.2.0": crate::bindings::sluice::policy::log,
                    "sluice:policy/clock@0.2.0": crate::bindings::sluice::policy::clock,
                    "sluice:policy/counters@0.2.0": crate::bindings::sluice::policy::counters,
                    "sluice:policy/limits@0.2.0": crate::bindings::sluice::policy::limits,
                    "sluice:policy/cache@0.2.0": crate::bindings::sluice::policy::cache,
                    "sluice:policy/response-cache@0.2.0": crate::bindings::sluice::policy::response_cache,
                    "sluice:policy/config@0.2.0": crate::bindings::sluice::policy::config,
                    "sluice:policy/metrics@0.2.0": crate::bindings::sluice::policy::metrics,
                    "sluice:policy/embeddings@0.2.0": crate::bindings::sluice::policy::embeddings,
                    "sluice:policy/http@0.2.0": crate::bindings::sluice::policy::http,
                },
                pub_export_macro: true,
                export_macro_name: $macro_name,
                default_bindings_module: $path,
            });
        }
    };
}

hook_world!(on_request_hook, "on-request-hook", "export", "sluice_sdk::on_request_hook");
hook_world!(route_hook, "route-hook", "export", "sluice_sdk::route_hook");
hook_world!(on_response_headers_hook, "on-response-headers-hook", "export", "sluice_sdk::on_response_headers_hook");
hook_world!(on_response_chunk_hook, "on-response-chunk-hook", "export", "sluice_sdk::on_response_chunk_hook");
hook_world!(on_response_done_hook, "on-response-done-hook", "export", "sluice_sdk::on_response_done_hook");

mod capabilities;
pub use capabilities::{cache, clock, config, counters, embeddings, http, limits, log, metrics, response_cache};

/// The data the hooks exchange with the gateway.
pub mod types {
    pub use crate::bindings::sluice::policy::types::*;
}

use types::{
    Body, Candidate, ChunkDecision, Headers, RequestDecision, RequestInfo, ResponseChanges, ResponseChunk,
    ResponseDone, RouteDecision, RouteRequest,
};

/// A policy plugin. Every hook has a default that changes nothing, so implement only the ones
/// you export with [`export_plugin!`]. Hooks are associated functions: an instance may serve
/// one request (`per-request` isolation) or many (`reuse`), so keep no state you rely on in
/// statics; use [`counters`] or [`cache`] keyed by `request.request_id` to carry state between
/// the hooks of one request.
pub trait Plugin {
    /// After authentication and parsing, before routing.
    fn on_request(request: RequestInfo, headers: &Headers, body: &Body) -> RequestDecision {
        let _ = (request, headers, body);
        RequestDecision::Continue
    }

    /// Picks a worker; [`RouteDecision::Abstain`] leaves the choice to the host.
    fn route(request: RouteRequest, candidates: Vec<Candidate>) -> RouteDecision {
        let _ = (request, candidates);
        RouteDecision::Abstain
    }

    /// When the worker's response headers arrive.
    fn on_response_headers(request: RequestInfo, status: u16, headers: &Headers) -> ResponseChanges {
        let _ = (request, status, headers);
        ResponseChanges { set_headers: Vec::new(), remove_headers: Vec::new() }
    }

    /// Each event of a successful stream, and the whole body of a successful answer that is
    /// not streamed, before the client gets it. It runs inside the stream for every token, so
    /// keep it cheap; a plugin exporting it may not use [`http`] or [`embeddings`].
    fn on_response_chunk(request: RequestInfo, chunk: ResponseChunk) -> ChunkDecision {
        let _ = (request, chunk);
        ChunkDecision::Forward
    }

    /// After the response is complete or abandoned.
    fn on_response_done(request: RequestInfo, done: ResponseDone) {
        let _ = (request, done);
    }
}

impl<P: Plugin> on_request_hook::exports::sluice::policy::on_request::Guest for P {
    fn on_request(request: RequestInfo, headers: &Headers, body: &Body) -> RequestDecision {
        <P as Plugin>::on_request(request, headers, body)
    }
}

impl<P: Plugin> route_hook::exports::sluice::policy::route::Guest for P {
    fn route(request: RouteRequest, candidates: Vec<Candidate>) -> RouteDecision {
        <P as Plugin>::route(request, candidates)
    }
}

impl<P: Plugin> on_response_headers_hook::exports::sluice::policy::on_response_headers::Guest for P {
    fn on_response_headers(request: RequestInfo, status: u16, headers: &Headers) -> ResponseChanges {
        <P as Plugin>::on_response_headers(request, status, headers)
    }
}

impl<P: Plugin> on_response_chunk_hook::exports::sluice::policy::on_response_chunk::Guest for P {
    fn on_response_chunk(request: RequestInfo, chunk: ResponseChunk) -> ChunkDecision {
        <P as Plugin>::on_response_chunk(request, chunk)
    }
}

impl<P: Plugin> on_response_done_hook::exports::sluice::policy::on_response_done::Guest for P {
    fn on_response_done(request: RequestInfo, done: ResponseDone) {
        <P as Plugin>::on_response_done(request, done)
    }
}

/// Exports a [`Plugin`]'s hooks from the component: `export_plugin!(MyPlugin => [on_request,
/// on_response_done]);`. Hooks: `on_request`, `route`, `on_response_headers`,
/// `on_response_chunk`, `on_response_done`. Use it once, at the crate root. A crate that is also built natively (for
/// unit tests of its logic) gates it with `#[cfg(target_arch = "wasm32")]`: the export names are
/// not valid native symbols.
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ident => [$($hook:ident),+ $(,)?]) => {
        $( $crate::__export_hook!($hook, $plugin); )+
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __export_hook {
    (on_request, $plugin:ident) => {
        $crate::on_request_hook::export!($plugin);
    };
    (route, $plugin:ident) => {
        $crate::route_hook::export!($plugin);
    };
    (on_response_headers, $plugin:ident) => {
        $crate::on_response_headers_hook::export!($plugin);
    };
    (on_response_chunk, $plugin:ident) => {
        $crate::on_response_chunk_hook::export!($plugin);
    };
    (on_response_done, $plugin:ident) => {
        $crate::on_response_done_hook::export!($plugin);
    };
}
