//! The tenant's own limits that the gateway enforces by itself: which models it may call and
//! how many requests it may have in flight on this replica. Request and token rates, which
//! need counters shared by every replica, belong to the rate-limit plugins.

use sluice_store_model::Limits;

use crate::error::GatewayError;
use crate::tenants::{ConcurrencyPermit, KeyEntry};

pub fn run(key: Option<&KeyEntry>, model: &str) -> Result<ConcurrencyPermit, GatewayError> {
    let tenant = &key.ok_or_else(|| GatewayError::Internal("admission before authentication".into()))?.tenant;
    if !tenant.allows_model(model) {
        return Err(GatewayError::ModelNotAllowed(model.chars().take(256).collect()));
    }
    tenant.admit().ok_or(GatewayError::ConcurrencyLimit { limit: limit_of(&tenant.limits) })
}

fn limit_of(limits: &Limits) -> u64 {
    limits.max_concurrency.unwrap_or(u64::MAX)
}
