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
//! per tenant (from its stored limits), per API key (the key's stored limits, else the binding's
//! `per_key`) and per tenant × model (the tenant's stored limits for the model, else the
//! binding's `per_model`). Over a limit it answers `429` in the OpenAI error shape
//! (`rate_limit_exceeded`, or `insufficient_quota` for the budget) with `Retry-After`; the
//! `x-ratelimit-*` headers go on every answer a limit applied to. It exports `on-request` only:
//! the host settles the holds with the tokens the request used when it ends. The policy — which
//! limits, what counts, which limit the headers show — lives here; the host keeps the counters,
//! exact across replicas, and renders the headers.

pub mod policy;

#[cfg(target_arch = "wasm32")]
mod component {
    use std::rc::Rc;

    use sluice_sdk::limits::{self, StateScope};
    use sluice_sdk::types::{Body, Headers, LocalResponse, RequestDecision, RequestInfo};
    use sluice_sdk::{Plugin, config, export_plugin, log, metrics};

    use crate::policy::{self, Plan, Settings, TenantCache, TenantLimits};

    pub struct RateLimit;

    /// The binding's config, parsed once per instance (an instance serves one binding).
    fn settings() -> &'static Settings {
        static SETTINGS: std::sync::OnceLock<Settings> = std::sync::OnceLock::new();
        SETTINGS.get_or_init(|| Settings::parse(&config::binding()))
    }

    thread_local! {
        static TENANTS: std::cell::RefCell<TenantCache> = std::cell::RefCell::default();
    }

    fn tenant_limits(tenant: &str) -> Rc<TenantLimits> {
        match config::tenant(tenant) {
            Some(json) => TENANTS.with_borrow_mut(|cache| cache.get(tenant, json)),
            None => Rc::default(),
        }
    }

    /// The `x-ratelimit-*` headers, rendered by the host from the decision.
    fn set_headers(labels: &[policy::Label], decision: &limits::Decision) {
        let (requests, tokens) = policy::header_indexes(labels, decision);
        if let Err(problem) = limits::set_ratelimit_headers(requests, tokens) {
            log::log(log::Level::Warn, &format!("x-ratelimit headers refused: {problem}"));
        }
    }

    fn local(response: policy::Answer) -> RequestDecision {
        RequestDecision::Respond(LocalResponse {
            status: response.status,
            headers: response.headers,
            body: response.body,
        })
    }

    impl Plugin for RateLimit {
        // The only hook: the host settles what the request took with the tokens it used when it
        // ends, and adds the `x-ratelimit-*` headers to its answer.
        fn on_request(request: RequestInfo, _headers: &Headers, _body: &Body) -> RequestDecision {
            let settings = settings();
            let tenant = tenant_limits(&request.tenant);
            if let Some(answer) = policy::budget_spent(&tenant) {
                metrics::counter_add("refusals", "tenant_budget", 1);
                return local(answer);
            }
            let plan = policy::plan(settings, &tenant, &request);
            if plan.limits.is_empty() {
                // A promise of nothing, so the host stops calling for this tenant, key and
                // model until their settings change. Whatever the host answers, nothing limits
                // this request.
                let _ = limits::acquire_standing(StateScope::Tenant, &[], settings.cached_percent(), None, None);
                return RequestDecision::Continue;
            }
            // A promise the host keeps for this tenant, key and model until the tenant's settings
            // change: this hook then runs again only to refuse.
            let (requests, tokens) = policy::standing_header_indexes(&plan);
            let Plan { limits, labels } = &plan;
            match limits::acquire_standing(StateScope::Tenant, limits, settings.cached_percent(), requests, tokens) {
                Ok(decision) if decision.granted => RequestDecision::Continue,
                Ok(decision) => {
                    // On a refusal the headers show the limits with the least left.
                    set_headers(labels, &decision);
                    let label = decision.refused_by.and_then(|i| labels.get(i as usize));
                    metrics::counter_add("refusals", label.map_or("unknown", policy::Label::metric), 1);
                    local(policy::refusal(limits, labels, &decision, policy::reservation(settings, &request)))
                }
                Err(limits::Error::Unavailable) => local(policy::unavailable()),
                Err(limits::Error::Invalid) => local(policy::invalid()),
            }
        }
    }

    export_plugin!(RateLimit => [on_request]);
}
