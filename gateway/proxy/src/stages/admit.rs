//! The one tenant limit the gateway enforces by itself: which models it may call. Rates,
//! concurrency and budgets, which must hold across every replica, are the `ratelimit` plugin's
//! (built in and bound by default), on the host's `limits` capability.

use crate::error::GatewayError;
use crate::tenants::KeyEntry;

pub fn run(key: Option<&KeyEntry>, model: &str) -> Result<(), GatewayError> {
    let tenant = &key.ok_or_else(|| GatewayError::Internal("admission before authentication".into()))?.tenant;
    if !tenant.allows_model(model) {
        return Err(GatewayError::ModelNotAllowed(model.chars().take(256).collect()));
    }
    Ok(())
}
