//! Standing limits: what a plugin promised (`limits.acquire-standing`) to take for every request
//! of a tenant, API key and model while the tenant's settings stay the same. The host keeps the
//! promise per binding and takes those limits itself, without a plugin call; a refusal, a
//! settings change or an unknown request goes to the plugin as usual. A rate limiter then costs
//! a plugin call per tenant, key and model per settings change, not one per request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::Ask;
use crate::bindings::types::{Api, RequestInfo};

/// Plans one binding remembers; past it they are forgotten and made again by the plugin.
const MAX_PLANS: usize = 10_000;

/// What a standing limit takes from each request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Amount {
    Units(u64),
    /// The prompt estimate plus `max_tokens`, or plus this many when the request sets none.
    Reservation(u64),
}

/// The request facts a plan depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestShape {
    /// Tenant, key and model: whose plan it is.
    pub plan_key: String,
    pub prompt_estimate: u64,
    pub max_tokens: Option<u64>,
    pub embeddings: bool,
    /// The tenant settings' generation when the call began: a plan made from settings that
    /// changed during the call is stale before it is kept.
    pub generation: u64,
}

impl RequestShape {
    pub fn of(info: &RequestInfo, generation: u64) -> Self {
        RequestShape {
            plan_key: plan_key(info),
            prompt_estimate: u64::from(info.summary.token_estimate),
            max_tokens: info.summary.max_tokens.map(u64::from),
            embeddings: matches!(info.api, Api::Embeddings),
            generation,
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

/// The key of a request's plan: tenant, key id and model, separated by a byte none of them holds.
pub fn plan_key(info: &RequestInfo) -> String {
    [info.tenant.as_str(), "\n", &info.key_id, "\n", &info.model].concat()
}

/// One promise: the limits (keys placed in their owner), what each takes, and how the answer's
/// headers are made.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub generation: u64,
    /// Each ask with its amount still to be worked out per request.
    pub asks: Vec<(Ask, Amount)>,
    pub cached_percent: u32,
    pub header_requests: Option<u32>,
    pub header_tokens: Option<u32>,
}

impl Plan {
    /// The asks for one request.
    pub fn asks_for(&self, shape: &RequestShape) -> Vec<Ask> {
        self.asks.iter().map(|(ask, amount)| Ask { amount: shape.amount(*amount), ..ask.clone() }).collect()
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
        Plan {
            generation,
            asks: vec![(ask.clone(), Amount::Reservation(16)), (ask, Amount::Units(1))],
            cached_percent: 100,
            header_requests: None,
            header_tokens: Some(0),
        }
    }

    #[test]
    fn each_request_works_out_its_reservation() {
        let chat = RequestShape::of(&info(Api::ChatCompletions, Some(50)), 1);
        assert_eq!(plan(1).asks_for(&chat).iter().map(|a| a.amount).collect::<Vec<_>>(), [150, 1]);
        let unbounded = RequestShape::of(&info(Api::Completions, None), 1);
        assert_eq!(unbounded.amount(Amount::Reservation(16)), 116);
        let embeddings = RequestShape::of(&info(Api::Embeddings, Some(50)), 1);
        assert_eq!(embeddings.amount(Amount::Reservation(16)), 100, "no completion");
    }

    #[test]
    fn a_plan_holds_only_for_its_settings_and_its_tenant_key_and_model() {
        let standing = Standing::default();
        let key = plan_key(&info(Api::ChatCompletions, None));
        standing.remember(key.clone(), plan(3));
        assert!(standing.get(&key, 3).is_some());
        assert!(standing.get(&key, 4).is_none(), "the settings changed since");
        let mut other = info(Api::ChatCompletions, None);
        other.model = "mistral".into();
        assert!(standing.get(&plan_key(&other), 3).is_none());
        other.model = "llama".into();
        other.key_id = "k2".into();
        assert!(standing.get(&plan_key(&other), 3).is_none());
    }
}
