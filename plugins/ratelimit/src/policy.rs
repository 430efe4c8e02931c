//! The policy, apart from the bindings so it can be tested natively: which limits a request
//! takes, what a refusal says, which headers a response carries, what a response used.

// Not HashMap: its RandomState seeds itself from `wasi:random`, which the host does not give
// plugins (the instance traps at the first map it builds).
use std::collections::BTreeMap;

use serde::Deserialize;
use sluice_sdk::limits::{Decision, LimitKind, OnSettle, StandingAmount, StandingLimit};
use sluice_sdk::types::{Api, Header, RequestInfo};

/// A minute, the period of the per-minute limits.
const MINUTE_MS: u64 = 60_000;

/// One scope's limits; the same fields as a tenant's stored limits.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Rates {
    pub requests_per_minute: Option<u64>,
    pub tokens_per_minute: Option<u64>,
    pub max_concurrency: Option<u64>,
    pub monthly_token_budget: Option<u64>,
}

impl Rates {
    /// These limits, each one not set taken from `fallback`.
    pub fn or(&self, fallback: &Rates) -> Rates {
        Rates {
            requests_per_minute: self.requests_per_minute.or(fallback.requests_per_minute),
            tokens_per_minute: self.tokens_per_minute.or(fallback.tokens_per_minute),
            max_concurrency: self.max_concurrency.or(fallback.max_concurrency),
            monthly_token_budget: self.monthly_token_budget.or(fallback.monthly_token_budget),
        }
    }
}

/// The binding's config (`[plugins.config]` of a `ratelimit` binding).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Completion tokens reserved for a request that sets no `max_tokens`.
    pub default_max_tokens: u64,
    /// What a cached prompt token counts for, against tokens per minute and the budget.
    pub cached_token_weight: f64,
    /// Requests that may arrive at once: this many seconds' worth of the per-minute rate.
    pub burst_seconds: f64,
    /// How long a concurrency slot outlives a replica that died holding it.
    pub concurrency_lease_seconds: u64,
    /// Limits for every API key, each on its own, where the key's stored limits do not set them.
    pub per_key: Rates,
    /// Limits for every tenant × model pair, where the tenant's stored limits for the model do
    /// not set them.
    pub per_model: Rates,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            default_max_tokens: 1024,
            cached_token_weight: 1.0,
            burst_seconds: 0.5,
            concurrency_lease_seconds: 900,
            per_key: Rates::default(),
            per_model: Rates::default(),
        }
    }
}

impl Settings {
    /// `cached_token_weight` in percent, as `limits.acquire` takes it.
    pub fn cached_percent(&self) -> u32 {
        (self.cached_token_weight.clamp(0.0, 10.0) * 100.0).round() as u32
    }

    /// The binding's JSON config; the defaults where it is empty or does not parse (the
    /// gateway validates the config before binding, so that is a config it did not write).
    pub fn parse(json: &str) -> Settings {
        serde_json::from_str(json).unwrap_or_default()
    }
}

/// A tenant's settings as the host gives them (`config.tenant`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct TenantLimits {
    pub limits: Rates,
    /// The stored limits of the tenant's keys that have any, by the key id requests carry.
    pub keys: BTreeMap<String, Rates>,
    /// The tenant's stored limits per model, for models that have any.
    pub models: BTreeMap<String, Rates>,
    pub usage: StoredUsage,
}

/// What the store has counted for the tenant, every replica included: the budget's memory
/// across restarts (the `limits` counters may be younger than the month).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct StoredUsage {
    /// Tokens used this calendar month (UTC), as last written to the store.
    pub month_tokens: Option<u64>,
}

impl TenantLimits {
    pub fn parse(json: &str) -> TenantLimits {
        serde_json::from_str(json).unwrap_or_default()
    }
}

/// Tenants' parsed settings, kept by an instance between requests: the host hands the settings
/// over as JSON on every call, and parsing them costs more than comparing them.
#[derive(Debug, Default)]
pub struct TenantCache {
    // Not a `HashMap`: its random seed is a WASI import the sandbox does not grant.
    by_tenant: BTreeMap<String, (String, std::rc::Rc<TenantLimits>)>,
}

/// Tenants one instance remembers; past it the cache starts over.
const CACHED_TENANTS: usize = 1024;

impl TenantCache {
    /// `tenant`'s settings parsed from `json`, parsed again only when `json` changed.
    pub fn get(&mut self, tenant: &str, json: String) -> std::rc::Rc<TenantLimits> {
        if let Some((seen, parsed)) = self.by_tenant.get(tenant)
            && *seen == json
        {
            return std::rc::Rc::clone(parsed);
        }
        if self.by_tenant.len() >= CACHED_TENANTS {
            self.by_tenant.clear();
        }
        let parsed = std::rc::Rc::new(TenantLimits::parse(&json));
        self.by_tenant.insert(tenant.to_owned(), (json, std::rc::Rc::clone(&parsed)));
        parsed
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dimension {
    Requests,
    Tokens,
    Concurrency,
    Budget,
}

impl Label {
    /// The label of `sluice_plugin_custom_total{name="refusals"}`: scope and dimension, one of
    /// twelve short words.
    pub fn metric(&self) -> &'static str {
        match (self.scope, self.dimension) {
            ("tenant", Dimension::Requests) => "tenant_requests",
            ("tenant", Dimension::Tokens) => "tenant_tokens",
            ("tenant", Dimension::Concurrency) => "tenant_concurrency",
            ("tenant", Dimension::Budget) => "tenant_budget",
            ("key", Dimension::Requests) => "key_requests",
            ("key", Dimension::Tokens) => "key_tokens",
            ("key", Dimension::Concurrency) => "key_concurrency",
            ("key", Dimension::Budget) => "key_budget",
            (_, Dimension::Requests) => "model_requests",
            (_, Dimension::Tokens) => "model_tokens",
            (_, Dimension::Concurrency) => "model_concurrency",
            (_, Dimension::Budget) => "model_budget",
        }
    }
}

/// What a limit in the plan is, for messages and headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Label {
    pub scope: &'static str,
    pub dimension: Dimension,
}

/// The limits one request takes, and what each one is.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Plan {
    pub limits: Vec<StandingLimit>,
    pub labels: Vec<Label>,
}

/// The tokens a request is reserved before it runs: its prompt estimate and the completion it
/// may ask for (the summary's `max_tokens`, which for Responses is `max_output_tokens`). Every
/// API but embeddings generates text.
pub fn reservation(settings: &Settings, request: &RequestInfo) -> u64 {
    let completion = match request.api {
        Api::Embeddings => 0,
        Api::ChatCompletions | Api::Completions | Api::Responses | Api::Messages => {
            request.summary.max_tokens.map_or(settings.default_max_tokens, u64::from)
        }
    };
    u64::from(request.summary.token_estimate).saturating_add(completion)
}

/// The limits a request takes: the tenant's; its key's (the key's stored limits, each one not
/// set taken from the binding's `per_key`); its model's (the tenant's stored limits for the
/// model, each one not set taken from `per_model`).
pub fn plan(settings: &Settings, tenant: &TenantLimits, request: &RequestInfo) -> Plan {
    // Worked out per request by the host: the prompt estimate plus max_tokens (or the default).
    let tokens = StandingAmount::Reservation(settings.default_max_tokens);
    let one = StandingAmount::Units(1);
    let mut plan = Plan::default();
    let key = tenant.keys.get(&request.key_id).map_or_else(|| settings.per_key.clone(), |k| k.or(&settings.per_key));
    let model =
        tenant.models.get(&request.model).map_or_else(|| settings.per_model.clone(), |m| m.or(&settings.per_model));
    let scopes = [
        ("tenant", &tenant.limits, "t".to_owned()),
        ("key", &key, ["k/", &request.key_id].concat()),
        ("model", &model, ["m/", &request.model].concat()),
    ];
    for (scope, rates, prefix) in scopes {
        let mut push = |dimension, limit| {
            plan.limits.push(limit);
            plan.labels.push(Label { scope, dimension });
        };
        if let Some(rpm) = rates.requests_per_minute {
            let burst = ((rpm as f64 * settings.burst_seconds / 60.0).floor() as u64).max(1);
            push(
                Dimension::Requests,
                limit(&prefix, "rpm", LimitKind::Rate, one, rpm, MINUTE_MS, burst, OnSettle::Keep),
            );
        }
        if let Some(tpm) = rates.tokens_per_minute {
            push(
                Dimension::Tokens,
                limit(&prefix, "tpm", LimitKind::Rate, tokens, tpm, MINUTE_MS, tpm, OnSettle::Tokens),
            );
        }
        if let Some(max) = rates.max_concurrency {
            let lease = settings.concurrency_lease_seconds.max(1).saturating_mul(1000);
            push(
                Dimension::Concurrency,
                limit(&prefix, "conc", LimitKind::Slots, one, max, lease, 0, OnSettle::GiveBack),
            );
        }
        if let Some(budget) = rates.monthly_token_budget {
            push(Dimension::Budget, limit(&prefix, "month", LimitKind::Month, tokens, budget, 0, 0, OnSettle::Tokens));
        }
    }
    plan
}

#[allow(clippy::too_many_arguments)]
fn limit(
    prefix: &str,
    name: &str,
    kind: LimitKind,
    amount: StandingAmount,
    limit: u64,
    period_ms: u64,
    burst: u64,
    on_settle: OnSettle,
) -> StandingLimit {
    // Concatenated, not `format!`ed: this runs for every limit of every request.
    StandingLimit { key: [prefix, "/", name].concat(), kind, amount, limit, period_ms, burst, on_settle }
}

/// A local answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<Header>,
    pub body: Vec<u8>,
}

fn header(name: &str, value: String) -> Header {
    Header { name: name.to_owned(), value }
}

fn error_body(message: &str, kind: &str, code: &str) -> Vec<u8> {
    let body = serde_json::json!({ "error": { "message": message, "type": kind, "param": null, "code": code } });
    body.to_string().into_bytes()
}

/// A duration as OpenAI writes `x-ratelimit-reset-*`: `20ms`, `1.5s`, `6m0s`, `1h2m3s`.
pub fn duration(ms: u64) -> String {
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let (h, m, s, frac) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
    let seconds =
        if frac == 0 { format!("{s}s") } else { format!("{s}.{}s", format!("{frac:03}").trim_end_matches('0')) };
    match (h, m) {
        (0, 0) => seconds,
        (0, m) => format!("{m}m{seconds}"),
        (h, m) => format!("{h}h{m}m{seconds}"),
    }
}

/// Which of the plan's limits the `x-ratelimit-*` headers show on answers that pass: for
/// requests and for tokens, the lowest limit of each (tenant, key or model).
pub fn standing_header_indexes(plan: &Plan) -> (Option<u32>, Option<u32>) {
    let lowest = |dimension: Dimension| {
        plan.limits
            .iter()
            .zip(&plan.labels)
            .enumerate()
            .filter(|(_, (_, label))| label.dimension == dimension)
            .min_by_key(|(_, (limit, _))| limit.limit)
            .and_then(|(i, _)| u32::try_from(i).ok())
    };
    (lowest(Dimension::Requests), lowest(Dimension::Tokens))
}

/// Which of the plan's limits the `x-ratelimit-*` headers show on a refusal, for requests and for tokens:
/// of the limits of each, the one with the least left (tenant, key or model). The host renders
/// the headers from the decision (`limits.set-ratelimit-headers`).
pub fn header_indexes(labels: &[Label], decision: &Decision) -> (Option<u32>, Option<u32>) {
    let tightest = |dimension: Dimension| {
        labels
            .iter()
            .zip(&decision.states)
            .enumerate()
            .filter(|(_, (label, _))| label.dimension == dimension)
            .min_by_key(|(_, (_, state))| state.remaining)
            .and_then(|(i, _)| u32::try_from(i).ok())
    };
    (tightest(Dimension::Requests), tightest(Dimension::Tokens))
}

/// The answer to a request over a limit; the host adds the `x-ratelimit-*` headers.
pub fn refusal(limits: &[StandingLimit], labels: &[Label], decision: &Decision, tokens: u64) -> Answer {
    let index = decision.refused_by.map_or(0, |i| i as usize);
    let (Some(limit), Some(label)) = (limits.get(index), labels.get(index)) else {
        return Answer {
            status: 429,
            headers: Vec::new(),
            body: error_body("Rate limit reached.", "rate_limit_exceeded", "rate_limit_exceeded"),
        };
    };
    let scope = match label.scope {
        "tenant" => "this organization",
        "key" => "this API key",
        _ => "this model",
    };
    let wait = decision.retry_after_ms;
    let try_again = wait.map_or_else(String::new, |ms| format!(" Please try again in {}.", duration(ms)));
    let (message, kind, code) = match (label.dimension, wait) {
        (Dimension::Budget, _) => (
            format!(
                "You exceeded the monthly token budget of {scope} ({} tokens); it renews on the first of next month (UTC).",
                limit.limit
            ),
            "insufficient_quota",
            "insufficient_quota",
        ),
        (Dimension::Tokens, None) => (
            format!(
                "Request too large: its prompt and max_tokens need about {} tokens, over the tokens-per-minute limit of {scope} ({}). Lower max_tokens or the prompt.",
                tokens, limit.limit
            ),
            "rate_limit_exceeded",
            "request_too_large",
        ),
        (Dimension::Tokens, Some(_)) => (
            format!(
                "Rate limit reached for tokens per minute of {scope}: limit {}, requested {}.{try_again}",
                limit.limit, tokens
            ),
            "rate_limit_exceeded",
            "rate_limit_exceeded",
        ),
        (Dimension::Requests, _) => (
            format!("Rate limit reached for requests per minute of {scope}: limit {}.{try_again}", limit.limit),
            "rate_limit_exceeded",
            "rate_limit_exceeded",
        ),
        (Dimension::Concurrency, _) => (
            format!("Too many concurrent requests for {scope}: limit {}.{try_again}", limit.limit),
            "rate_limit_exceeded",
            "concurrency_limit_exceeded",
        ),
    };
    let mut headers = vec![header("content-type", "application/json".to_owned())];
    let retry_after_ms = match (label.dimension, wait) {
        (_, Some(ms)) => Some(ms),
        (Dimension::Budget, None) => decision.states.get(index).map(|s| s.reset_ms),
        _ => None,
    };
    if let Some(ms) = retry_after_ms {
        headers.push(header("retry-after", ms.div_ceil(1000).max(1).to_string()));
        headers.push(header("retry-after-ms", ms.to_string()));
    }
    Answer { status: 429, headers, body: error_body(&message, kind, code) }
}

/// The refusal for a tenant whose stored usage has already spent its monthly budget, if so.
/// The counter of this month's tokens cannot see usage from before it existed (a restart, a
/// Redis that lost its data); the store can, a flush interval late.
pub fn budget_spent(tenant: &TenantLimits) -> Option<Answer> {
    let budget = tenant.limits.monthly_token_budget?;
    let used = tenant.usage.month_tokens?;
    (used >= budget).then(|| {
        let message = format!(
            "You exceeded the monthly token budget of this organization ({budget} tokens; {used} used); it renews on the first of next month (UTC)."
        );
        Answer {
            status: 429,
            headers: vec![header("content-type", "application/json".to_owned())],
            body: error_body(&message, "insufficient_quota", "insufficient_quota"),
        }
    })
}

/// The shared limits are unreachable and the gateway is set to fail closed.
pub fn unavailable() -> Answer {
    Answer {
        status: 503,
        headers: vec![header("content-type", "application/json".to_owned()), header("retry-after", "1".to_owned())],
        body: error_body(
            "Rate limits cannot be checked right now; please retry.",
            "service_unavailable",
            "rate_limits_unavailable",
        ),
    }
}

/// The host refused the limits as asked: a configuration this plugin cannot serve (a model
/// name too long for a key, say).
pub fn invalid() -> Answer {
    Answer {
        status: 500,
        headers: vec![header("content-type", "application/json".to_owned())],
        body: error_body(
            "The rate limiter could not apply this request's limits.",
            "internal_error",
            "rate_limits_invalid",
        ),
    }
}

#[cfg(test)]
mod tests {
    use sluice_sdk::limits::LimitState;
    use sluice_sdk::types::BodySummary;

    use super::*;

    fn request(max_tokens: Option<u32>) -> RequestInfo {
        RequestInfo {
            request_id: "r".into(),
            tenant: "acme".into(),
            key_id: "abcd".into(),
            model: "llama".into(),
            api: Api::ChatCompletions,
            summary: BodySummary {
                message_count: 1,
                token_estimate: 100,
                stream: true,
                max_tokens,
                temperature: None,
                user: None,
            },
        }
    }

    fn tenant(rates: Rates) -> TenantLimits {
        TenantLimits { limits: rates, ..TenantLimits::default() }
    }

    #[test]
    fn a_tenant_without_limits_takes_none() {
        assert!(plan(&Settings::default(), &TenantLimits::default(), &request(None)).limits.is_empty());
    }

    #[test]
    fn stored_limits_become_one_all_or_none_ask() {
        let rates = Rates {
            requests_per_minute: Some(600),
            tokens_per_minute: Some(10_000),
            max_concurrency: Some(4),
            monthly_token_budget: Some(1_000_000),
        };
        let p = plan(&Settings::default(), &tenant(rates), &request(Some(50)));
        let keys: Vec<&str> = p.limits.iter().map(|l| l.key.as_str()).collect();
        assert_eq!(keys, ["t/rpm", "t/tpm", "t/conc", "t/month"]);
        assert_eq!(p.limits[0].burst, 5, "half a second of 600/min");
        assert_eq!(p.limits[1].amount, StandingAmount::Reservation(1024), "the host adds the prompt estimate");
        assert_eq!(reservation(&Settings::default(), &request(Some(50))), 150, "prompt estimate plus max_tokens");
        assert_eq!(p.limits[1].burst, 10_000);
        assert_eq!(p.limits[3].kind, LimitKind::Month);
        assert_eq!(
            plan(
                &Settings::default(),
                &tenant(Rates { requests_per_minute: Some(10), ..Rates::default() }),
                &request(None)
            )
            .limits[0]
                .burst,
            1
        );
    }

    #[test]
    fn per_key_and_per_model_limits_come_from_the_config() {
        let settings = Settings::parse(
            r#"{"per_key":{"requests_per_minute":60},"per_model":{"tokens_per_minute":500},"default_max_tokens":10}"#,
        );
        let p = plan(&settings, &TenantLimits::default(), &request(None));
        let keys: Vec<&str> = p.limits.iter().map(|l| l.key.as_str()).collect();
        assert_eq!(keys, ["k/abcd/rpm", "m/llama/tpm"]);
        assert_eq!(p.limits[1].amount, StandingAmount::Reservation(10));
        assert_eq!(reservation(&settings, &request(None)), 110);
    }

    #[test]
    fn every_api_but_embeddings_reserves_its_completion() {
        let settings = Settings::parse(r#"{"default_max_tokens":10}"#);
        let with = |api, max_tokens| reservation(&settings, &RequestInfo { api, ..request(max_tokens) });
        for api in [Api::ChatCompletions, Api::Completions, Api::Responses, Api::Messages] {
            assert_eq!(with(api, Some(50)), 150, "{api:?}: prompt estimate plus max_tokens");
            assert_eq!(with(api, None), 110, "{api:?}: prompt estimate plus the default");
        }
        assert_eq!(with(Api::Embeddings, Some(50)), 100, "embeddings reserve their prompt only");
    }

    #[test]
    fn stored_key_and_model_limits_apply_to_their_key_and_model_only() {
        let tenant = TenantLimits::parse(
            r#"{"limits":{"requests_per_minute":600},
                "keys":{"abcd":{"requests_per_minute":5},"other":{"requests_per_minute":1}},
                "models":{"llama":{"tokens_per_minute":300},"qwen":{"max_concurrency":1}}}"#,
        );
        let p = plan(&Settings::default(), &tenant, &request(Some(10)));
        let keys: Vec<&str> = p.limits.iter().map(|l| l.key.as_str()).collect();
        assert_eq!(keys, ["t/rpm", "k/abcd/rpm", "m/llama/tpm"]);
        assert_eq!((p.limits[1].limit, p.limits[2].limit), (5, 300));
        assert_eq!(p.labels[1], Label { scope: "key", dimension: Dimension::Requests });
        assert_eq!(p.labels[2], Label { scope: "model", dimension: Dimension::Tokens });

        // Another key and another model of the same tenant: only the tenant's limit.
        let mut other = request(Some(10));
        other.key_id = "efgh".into();
        other.model = "mistral".into();
        let keys: Vec<String> = plan(&Settings::default(), &tenant, &other).limits.into_iter().map(|l| l.key).collect();
        assert_eq!(keys, ["t/rpm"]);
    }

    #[test]
    fn stored_limits_replace_the_bindings_one_by_one() {
        let settings = Settings::parse(
            r#"{"per_key":{"requests_per_minute":120,"max_concurrency":4},"per_model":{"tokens_per_minute":500}}"#,
        );
        let tenant = TenantLimits::parse(
            r#"{"keys":{"abcd":{"requests_per_minute":1200}},"models":{"llama":{"monthly_token_budget":9000}}}"#,
        );
        let p = plan(&settings, &tenant, &request(None));
        let limits: Vec<(&str, u64)> = p.limits.iter().map(|l| (l.key.as_str(), l.limit)).collect();
        assert_eq!(
            limits,
            [("k/abcd/rpm", 1200), ("k/abcd/conc", 4), ("m/llama/tpm", 500), ("m/llama/month", 9000)],
            "the key's own rpm, the binding's concurrency; the binding's tpm, the model's budget"
        );
    }

    #[test]
    fn the_cached_weight_becomes_a_percentage() {
        assert_eq!(Settings::default().cached_percent(), 100);
        assert_eq!(Settings { cached_token_weight: 0.25, ..Settings::default() }.cached_percent(), 25);
        assert_eq!(Settings { cached_token_weight: -1.0, ..Settings::default() }.cached_percent(), 0);
    }

    #[test]
    fn a_budget_the_store_counts_as_spent_refuses_before_any_counter() {
        let mut t = tenant(Rates { monthly_token_budget: Some(1_000), ..Rates::default() });
        assert!(budget_spent(&t).is_none(), "no stored usage yet");
        t.usage.month_tokens = Some(999);
        assert!(budget_spent(&t).is_none());
        t.usage.month_tokens = Some(1_000);
        let a = budget_spent(&t).unwrap_or_else(|| Answer { status: 0, headers: vec![], body: vec![] });
        assert_eq!(a.status, 429);
        let body: serde_json::Value = serde_json::from_slice(&a.body).unwrap_or_default();
        assert_eq!(body["error"]["type"], "insufficient_quota");
        let parsed =
            TenantLimits::parse(r#"{"name":"acme","limits":{"monthly_token_budget":5},"usage":{"month_tokens":7}}"#);
        assert!(budget_spent(&parsed).is_some());
    }

    #[test]
    fn durations_read_like_openais() {
        assert_eq!(duration(20), "20ms");
        assert_eq!(duration(1_500), "1.5s");
        assert_eq!(duration(360_000), "6m0s");
        assert_eq!(duration(3_723_000), "1h2m3s");
    }

    fn state(limit: u64, remaining: u64, reset_ms: u64) -> LimitState {
        LimitState { limit, remaining, reset_ms }
    }

    #[test]
    fn refusals_say_which_limit_and_when() {
        let rates = Rates { requests_per_minute: Some(60), monthly_token_budget: Some(1000), ..Rates::default() };
        let p = plan(&Settings::default(), &tenant(rates), &request(None));
        let decision = Decision {
            granted: false,
            refused_by: Some(0),
            retry_after_ms: Some(1_000),
            states: vec![state(60, 0, 1_000), state(1000, 900, 86_400_000)],
        };
        let a = refusal(&p.limits, &p.labels, &decision, 100);
        assert_eq!(a.status, 429);
        let get = |name: &str| a.headers.iter().find(|h| h.name == name).map(|h| h.value.clone());
        assert_eq!(get("retry-after").as_deref(), Some("1"));
        assert_eq!(get("retry-after-ms").as_deref(), Some("1000"));
        let body: serde_json::Value = serde_json::from_slice(&a.body).unwrap_or_default();
        assert_eq!(body["error"]["type"], "rate_limit_exceeded");

        let budget = Decision { refused_by: Some(1), retry_after_ms: Some(86_400_000), ..decision };
        let a = refusal(&p.limits, &p.labels, &budget, 100);
        let body: serde_json::Value = serde_json::from_slice(&a.body).unwrap_or_default();
        assert_eq!(body["error"]["type"], "insufficient_quota");
        assert_eq!(body["error"]["code"], "insufficient_quota");
    }

    #[test]
    fn the_headers_show_the_tightest_limit_of_each_kind() {
        let settings = Settings::parse(r#"{"per_key":{"requests_per_minute":60}}"#);
        let rates = Rates { requests_per_minute: Some(600), tokens_per_minute: Some(9_000), ..Rates::default() };
        let p = plan(&settings, &tenant(rates), &request(None));
        // Tenant rpm, tenant tpm, key rpm.
        let decision = Decision {
            granted: true,
            refused_by: None,
            retry_after_ms: None,
            states: vec![state(600, 40, 100), state(9_000, 8_000, 10), state(60, 3, 900)],
        };
        assert_eq!(header_indexes(&p.labels, &decision), (Some(2), Some(1)));
        assert_eq!(standing_header_indexes(&p), (Some(2), Some(1)), "the lowest limits");
        let only_tokens = plan(
            &Settings::default(),
            &tenant(Rates { tokens_per_minute: Some(5), ..Rates::default() }),
            &request(None),
        );
        let decision = Decision { states: vec![state(5, 5, 0)], ..decision };
        assert_eq!(header_indexes(&only_tokens.labels, &decision), (None, Some(0)));
    }

    #[test]
    fn tenant_settings_are_parsed_again_only_when_they_change() {
        let mut cache = TenantCache::default();
        let a = cache.get("acme", r#"{"limits":{"requests_per_minute":5}}"#.into());
        let b = cache.get("acme", r#"{"limits":{"requests_per_minute":5}}"#.into());
        assert!(std::rc::Rc::ptr_eq(&a, &b));
        let c = cache.get("acme", r#"{"limits":{"requests_per_minute":6}}"#.into());
        assert_eq!(c.limits.requests_per_minute, Some(6));
        assert_eq!(cache.get("other", "{}".into()).limits, Rates::default(), "each tenant its own");
    }
}
