//! A plugin built against `sluice:policy@0.1.0` (`plugins/wit-0.1.0/`), standing for one built
//! with the SDK of that version and never rebuilt: the host's tests check that it still loads,
//! that its capability imports reach the host, and that it sees the values 0.1.0 defines. Its
//! bindings are generated as that SDK generated them (one world per hook, sharing the types
//! and capabilities of the `host` world), not through today's SDK.
//!
//! - on-request: logs a line at `info` and reserves 1 of counter `seen` (limit 1,000,000 per
//!   minute). Then, when the request has header `x-v01-api`, it denies with 418 and
//!   `api=<the request's api, as its WIT case name>`; with `x-v01-count`, 418 and
//!   `count=<counter seen after the reservation>`; with `x-v01-config`, 418 and
//!   `config=<the binding's config JSON>`; otherwise it continues.
//! - route: the candidate with the highest id; abstains when there is none.

/// The types and capabilities of 0.1.0's `host` world, shared by the hook worlds below.
#[allow(unsafe_code, clippy::all)]
mod bindings {
    wit_bindgen::generate!({
        world: "host",
        path: "../wit-0.1.0",
        generate_unused_types: true,
    });
}

macro_rules! hook_world {
    ($module:ident, $world:literal, $path:literal) => {
        #[allow(unsafe_code, clippy::all)]
        mod $module {
            wit_bindgen::generate!({
                world: $world,
                path: "../wit-0.1.0",
                with: {
                    "sluice:policy/types@0.1.0": crate::bindings::sluice::policy::types,
                    "sluice:policy/log@0.1.0": crate::bindings::sluice::policy::log,
                    "sluice:policy/clock@0.1.0": crate::bindings::sluice::policy::clock,
                    "sluice:policy/counters@0.1.0": crate::bindings::sluice::policy::counters,
                    "sluice:policy/limits@0.1.0": crate::bindings::sluice::policy::limits,
                    "sluice:policy/cache@0.1.0": crate::bindings::sluice::policy::cache,
                    "sluice:policy/response-cache@0.1.0": crate::bindings::sluice::policy::response_cache,
                    "sluice:policy/config@0.1.0": crate::bindings::sluice::policy::config,
                    "sluice:policy/metrics@0.1.0": crate::bindings::sluice::policy::metrics,
                    "sluice:policy/embeddings@0.1.0": crate::bindings::sluice::policy::embeddings,
                    "sluice:policy/http@0.1.0": crate::bindings::sluice::policy::http,
                },
                default_bindings_module: $path,
            });
        }
    };
}

hook_world!(on_request_hook, "on-request-hook", "crate::on_request_hook");
hook_world!(route_hook, "route-hook", "crate::route_hook");

use bindings::sluice::policy::types::{
    Api, Body, Candidate, Denial, Headers, RequestDecision, RequestInfo, RouteDecision, RouteRequest,
};
use bindings::sluice::policy::{config, counters, log};

struct V01Guest;

/// The WIT case name of an `api` value, as 0.1.0 defines the enum.
fn api_name(api: Api) -> &'static str {
    match api {
        Api::ChatCompletions => "chat-completions",
        Api::Completions => "completions",
        Api::Embeddings => "embeddings",
    }
}

fn teapot(message: String) -> RequestDecision {
    RequestDecision::Deny(Denial { status: 418, message })
}

impl on_request_hook::exports::sluice::policy::on_request::Guest for V01Guest {
    fn on_request(request: RequestInfo, headers: &Headers, _body: &Body) -> RequestDecision {
        log::log(log::Level::Info, &format!("v0.1 guest saw request {}", request.request_id));
        counters::reserve("seen", 1, 1_000_000, 60_000);
        if headers.get("x-v01-api").is_some() {
            teapot(format!("api={}", api_name(request.api)))
        } else if headers.get("x-v01-count").is_some() {
            teapot(format!("count={}", counters::get("seen")))
        } else if headers.get("x-v01-config").is_some() {
            teapot(format!("config={}", config::binding()))
        } else {
            RequestDecision::Continue
        }
    }
}

impl route_hook::exports::sluice::policy::route::Guest for V01Guest {
    fn route(_request: RouteRequest, candidates: Vec<Candidate>) -> RouteDecision {
        candidates.iter().map(|c| c.id).max().map_or(RouteDecision::Abstain, RouteDecision::Route)
    }
}

/// The hooks' exports. Only for wasm32: the export names (`sluice:policy/route@0.1.0#route`) are
/// not valid native symbols, and the native build (`cargo test --workspace` in plugins/) only
/// type-checks.
#[cfg(target_arch = "wasm32")]
#[expect(unsafe_code, reason = "the export glue wit-bindgen generates, expanded here")]
mod exports {
    use super::V01Guest;

    crate::on_request_hook::export!(V01Guest);
    crate::route_hook::export!(V01Guest);
}
