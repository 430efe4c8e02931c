//! Standing limits: what a plugin promised (`limits.acquire-standing`) to take for every request
//! of a tenant, API key and model while the tenant's settings stay the same. The host keeps the
//! promise per binding and takes those limits itself, without a plugin call; a refusal, a
//! settings change or an unknown request goes to the plugin as usual. A rate limiter then costs
//! a plugin call per tenant, key and model per settings change, not one per request.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use http::{HeaderMap, HeaderValue};
use smallvec::SmallVec;

use super::headers;
use super::local::{Cells, Planned};
use super::{Ask, LimitState, Local};
use crate::bindings::types::{Api, RequestInfo};
use crate::metrics::LimitSeries;

/// Plans one binding remembers; past it they are forgotten and made again by the plugin.
const MAX_PLANS: usize = 10_000;

/// What a standing limit takes from each request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Amount {
    Units(u64),
    /// The prompt estimate plus `max_tokens`, or plus this many when the request sets none.
    Reservation(u64),
}

/// The request facts the amounts depend on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sizes {
    pub prompt_estimate: u64,
    pub max_tokens: Option<u64>,
    pub embeddings: bool,
}

impl Sizes {
    pub fn of(info: &RequestInfo) -> Self {
        Sizes {
            prompt_estimate: u64::from(info.summary.token_estimate),
            max_tokens: info.summary.max_tokens.map(u64::from),
            embeddings: matches!(info.api, Api::Embeddings),
        }
    }

    pub fn amount(&self, amount: Amount) -> u64 {
        match amount {
            Amount::Units(n) => n,
            Amount::Reservation(_) if self.embeddings => self.prompt_estimate,
            Amount::Reservation(default) => self.prompt_estimate.saturating_add(self.max_tokens.unwrap_or(default)),
        }
    }
}

/// The request facts a plan depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestShape {
    /// Tenant, key and model: whose plan it is.
    pub plan_key: String,
    pub sizes: Sizes,
    /// The tenant settings' generation when the call began: a plan made from settings that
    /// changed during the call is stale before it is kept.
    pub generation: u64,
}

impl RequestShape {
    pub fn of(info: &RequestInfo, generation: u64) -> Self {
        RequestShape { plan_key: plan_key(info), sizes: Sizes::of(info), generation }
    }
}

/// The key of a request's plan: tenant, key id and model, separated by a byte none of them holds.
pub fn plan_key(info: &RequestInfo) -> String {
    [info.tenant.as_str(), "\n", &info.key_id, "\n", &info.model].concat()
}

/// One promise: the limits (keys placed in their owner), what each takes, and how the answer's
/// headers are made; with what the host works out once for all the requests it serves.
#[derive(Debug)]
pub struct Plan {
    pub generation: u64,
    /// The limits, their `amount`s unset: what each takes is in `amounts`.
    pub asks: Vec<Ask>,
    pub amounts: Vec<Amount>,
    pub cached_percent: u32,
    pub header_requests: Option<u32>,
    pub header_tokens: Option<u32>,
    /// Where the limits live in this process's table (in-process backend only).
    cells: Cells,
    /// The `x-ratelimit-limit-*` values, which do not change while the plan holds.
    header_limits: [Option<HeaderValue>; 2],
    /// The metric series its grants update, resolved at the first.
    series: OnceLock<LimitSeries>,
}

impl Plan {
    /// A plan of `asks` with what each takes. Header indexes must be within `asks`.
    pub fn new(
        generation: u64,
        asks: Vec<(Ask, Amount)>,
        cached_percent: u32,
        header_requests: Option<u32>,
        header_tokens: Option<u32>,
    ) -> Self {
        let (asks, amounts): (Vec<Ask>, Vec<Amount>) = asks.into_iter().unzip();
        let limit = |i: Option<u32>| i.and_then(|i| asks.get(i as usize)).map(|a| HeaderValue::from(a.limit));
        Plan {
            generation,
            cells: Cells::new(asks.len()),
            header_limits: [limit(header_requests), limit(header_tokens)],
            asks,
            amounts,
            cached_percent,
            header_requests,
            header_tokens,
            series: OnceLock::new(),
        }
    }

    /// The asks for one request.
    pub fn asks_for(&self, sizes: &Sizes) -> Vec<Ask> {
        self.asks
            .iter()
            .zip(&self.amounts)
            .map(|(ask, amount)| Ask { amount: sizes.amount(*amount), ..ask.clone() })
            .collect()
    }

    /// Takes the plan's limits for one request from this process's state, through the cells
    /// the plan remembers: no key is built or hashed and nothing is copied.
    pub fn take_local(&self, local: &Local, sizes: &Sizes, now_us: u64) -> Planned {
        let amounts: SmallVec<[u64; 4]> = self.amounts.iter().map(|a| sizes.amount(*a)).collect();
        local.acquire_planned(&self.asks, &amounts, &self.cells, now_us)
    }

    /// The states of a decision's that its `x-ratelimit-*` headers show (requests, tokens).
    fn shown<'a>(&self, states: &'a [LimitState]) -> [Option<&'a LimitState>; 2] {
        [self.header_requests, self.header_tokens].map(|i| i.and_then(|i| states.get(i as usize)))
    }

    /// What a decision's `x-ratelimit-*` headers say is remaining (requests, tokens).
    pub fn remaining(&self, states: &[LimitState]) -> [Option<u64>; 2] {
        self.shown(states).map(|s| s.map(|s| s.remaining))
    }

    /// Writes a decision's `x-ratelimit-*` headers into an answer's `headers`, where it does not
    /// have them yet.
    pub fn write_headers(&self, states: &[LimitState], headers: &mut HeaderMap) {
        let [requests, tokens] = self.shown(states);
        headers::write(&self.header_limits, requests, tokens, headers);
    }

    /// The metric series of this plan's grants, resolved by `resolve` the first time.
    pub fn series(&self, resolve: impl FnOnce() -> LimitSeries) -> &LimitSeries {
        self.series.get_or_init(resolve)
    }
}

/// A binding's plans by tenant, key and model.
#[derive(Debug, Default)]
pub struct Standing {
    plans: Mutex<HashMap<String, Arc<Plan>, foldhash::fast::RandomState>>,
}

impl Standing {
    pub fn remember(&self, plan_key: String, plan: Plan) {
        let Ok(mut plans) = self.plans.lock() else { return };
        if plans.len() >= MAX_PLANS && !plans.contains_key(&plan_key) {
            plans.clear();
        }
        plans.insert(plan_key, Arc::new(plan));
    }

    /// The plan for `plan_key` if it was made under the current settings.
    pub fn get(&self, plan_key: &str, generation: u64) -> Option<Arc<Plan>> {
        let plans = self.plans.lock().ok()?;
        plans.get(plan_key).filter(|p| p.generation == generation).cloned()
    }

    /// The plan for `info`'s tenant, key and model, its key built in a buffer of the thread's
    /// (this runs for every request of a limited tenant).
    pub fn get_for(&self, info: &RequestInfo, generation: u64) -> Option<Arc<Plan>> {
        thread_local! {
            static KEY: RefCell<String> = const { RefCell::new(String::new()) };
        }
        KEY.with_borrow_mut(|key| {
            key.clear();
            for part in [info.tenant.as_str(), "\n", &info.key_id, "\n", &info.model] {
                key.push_str(part);
            }
            self.get(key, generation)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Kind, OnSettle};
    use super::*;
    use crate::bindings::types::BodySummary;

    fn info(api: Api, max_tokens: Option<u32>) -> RequestInfo {
        RequestInfo {
            request_id: "r".into(),
            tenant: "acme".into(),
            key_id: "k1".into(),
            model: "llama".into(),
            api,
            summary: BodySummary {
                message_count: 1,
                token_estimate: 100,
                stream: false,
                max_tokens,
                temperature: None,
                user: None,
            },
        }
    }

    fn plan(generation: u64) -> Plan {
        let ask = Ask {
            key: "p/t/tpm".into(),
            owner_len: 2,
            kind: Kind::Rate,
            amount: 0,
            limit: 1000,
            period_ms: 60_000,
            burst: 1000,
            on_settle: OnSettle::Tokens,
        };
        Plan::new(generation, vec![(ask.clone(), Amount::Reservation(16)), (ask, Amount::Units(1))], 100, None, Some(0))
    }

    #[test]
    fn each_request_works_out_its_reservation() {
        let chat = Sizes::of(&info(Api::ChatCompletions, Some(50)));
        assert_eq!(plan(1).asks_for(&chat).iter().map(|a| a.amount).collect::<Vec<_>>(), [150, 1]);
        let unbounded = Sizes::of(&info(Api::Completions, None));
        assert_eq!(unbounded.amount(Amount::Reservation(16)), 116);
        let embeddings = Sizes::of(&info(Api::Embeddings, Some(50)));
        assert_eq!(embeddings.amount(Amount::Reservation(16)), 100, "no completion");
    }

    #[test]
    fn a_plan_holds_only_for_its_settings_and_its_tenant_key_and_model() {
        let standing = Standing::default();
        let key = plan_key(&info(Api::ChatCompletions, None));
        standing.remember(key.clone(), plan(3));
        assert!(standing.get(&key, 3).is_some());
        assert!(standing.get_for(&info(Api::ChatCompletions, None), 3).is_some());
        assert!(standing.get(&key, 4).is_none(), "the settings changed since");
        let mut other = info(Api::ChatCompletions, None);
        other.model = "mistral".into();
        assert!(standing.get(&plan_key(&other), 3).is_none());
        other.model = "llama".into();
        other.key_id = "k2".into();
        assert!(standing.get(&plan_key(&other), 3).is_none());
    }
}
