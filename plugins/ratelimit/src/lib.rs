//! The built-in `ratelimit` plugin: every tenant's stored limits, enforced across replicas.
//!
//! For each request it asks the host's `limits` capability for, all or none:
//! - requests per minute: a GCRA rate, a burst of `burst_seconds` worth of requests (at least 1);
//! - tokens per minute: a GCRA rate with a burst of a whole minute's tokens, taking the prompt
//!   estimate plus `max_tokens` (or `default_max_tokens`), settled to the real usage when the
//!   response ends;
//! - concurrent requests: slots given back when the response ends, however it ends;
//! - the monthly token budget: the calendar month (UTC), reserved and settled like tokens;
//!
//! per tenant (from its stored limits) and, when the binding's config sets them, per API key
//! and per tenant × model. Over a limit it answers `429` in the OpenAI error shape
//! (`rate_limit_exceeded`, or `insufficient_quota` for the budget) with `Retry-After`; the
//! `x-ratelimit-*` headers go on every answer a limit applied to. The policy — which limits,
//! what counts, which headers — lives here; the host keeps the counters, exact across replicas.

pub mod policy;

#[cfg(target_arch = "wasm32")]
mod component {
    use sluice_sdk::limits::{self, StateScope};
    use sluice_sdk::types::{
        Body, Headers, LocalResponse, Outcome, RequestDecision, RequestInfo, ResponseChanges, ResponseDone,
    };
    use sluice_sdk::{Plugin, config, export_plugin, metrics};

    use crate::policy::{self, Plan, Settings, TenantLimits};

    pub struct RateLimit;

    /// The binding's config, parsed once per instance (an instance serves one binding).
    fn settings() -> &'static Settings {
        static SETTINGS: std::sync::OnceLock<Settings> = std::sync::OnceLock::new();
        SETTINGS.get_or_init(|| Settings::parse(&config::binding()))
    }

    fn tenant_limits(tenant: &str) -> TenantLimits {
        config::tenant(tenant).map(|json| TenantLimits::parse(&json)).unwrap_or_default()
    }

    fn local(response: policy::Answer) -> RequestDecision {
        RequestDecision::Respond(LocalResponse {
            status: response.status,
            headers: response.headers,
            body: response.body,
        })
    }

    impl Plugin for RateLimit {
        fn on_request(request: RequestInfo, _headers: &Headers, _body: &Body) -> RequestDecision {
            let settings = settings();
            let tenant = tenant_limits(&request.tenant);
            if let Some(answer) = policy::budget_spent(&tenant) {
                metrics::counter_add("refusals", "tenant_budget", 1);
                return local(answer);
            }
            let Plan { limits, labels } = policy::plan(settings, &tenant, &request);
            if limits.is_empty() {
                return RequestDecision::Continue;
            }
            match limits::acquire(StateScope::Tenant, &limits) {
                Ok(decision) if decision.granted => RequestDecision::Continue,
                Ok(decision) => {
                    let label = decision.refused_by.and_then(|i| labels.get(i as usize));
                    metrics::counter_add("refusals", label.map_or("unknown", policy::Label::metric), 1);
                    local(policy::refusal(&limits, &labels, &decision))
                }
                Err(limits::Error::Unavailable) => local(policy::unavailable()),
                Err(limits::Error::Invalid) => local(policy::invalid()),
            }
        }

        fn on_response_headers(request: RequestInfo, _status: u16, _headers: &Headers) -> ResponseChanges {
            let settings = settings();
            let headers = match limits::last_decision() {
                Some(decision) => {
                    let Plan { limits, labels } = policy::plan(settings, &tenant_limits(&request.tenant), &request);
                    policy::headers(&limits, &labels, &decision)
                }
                None => Vec::new(),
            };
            ResponseChanges { set_headers: headers, remove_headers: Vec::new() }
        }

        fn on_response_done(request: RequestInfo, done: ResponseDone) {
            let settings = settings();
            match policy::actual_tokens(settings, &request, &done) {
                Some(actual) => limits::settle(actual),
                // Refused or failed before any work: the tokens were not used.
                None if done.outcome != Outcome::Cancelled => limits::settle(0),
                // Cancelled with nothing measured: the reservation stands (the host frees the
                // slot when the request ends).
                None => {}
            }
        }
    }

    export_plugin!(RateLimit => [on_request, on_response_headers, on_response_done]);
}
