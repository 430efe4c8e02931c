//! A Responses request continuing a stored response (`previous_response_id`) goes to the
//! endpoint that made it, since only that worker holds it ([`crate::response_affinity`]): the
//! endpoint's index in the pool is returned for the forward stage, which then sends every
//! attempt there, bypassing the route plugins. A response nobody recorded (for this tenant), or
//! whose endpoint left the pool or is unavailable, leaves the request to the usual routing (and
//! the worker's own error, a 404, then reaches the client as it is).
//!
//! A Responses request whose answer is to be stored (`store` unset or `true`) leaves a
//! [`crate::response_affinity::PendingRecord`] in the exchange: the respond stage or the relay
//! records the answer's id and endpoint once it succeeded.

use std::sync::Arc;

use sluice_openai::Dialect;

use crate::exchange::Exchange;
use crate::response_affinity::{AffinityKey, FollowUp, ResponseAffinity};
use crate::stages::parse::ParsedRequest;
use crate::upstream::Pool;

/// The index in `pool` of the endpoint holding the request's previous response, when the
/// request must go there.
pub async fn run(
    affinity: &Arc<ResponseAffinity>,
    ex: &mut Exchange,
    pool: &Pool,
    parsed: &ParsedRequest,
) -> Option<usize> {
    let ParsedRequest::Agent(request) = parsed else { return None };
    if request.dialect != Dialect::Responses {
        return None;
    }
    let tenant = Arc::clone(&ex.key.as_ref()?.tenant);
    if request.store {
        ex.affinity = Some(affinity.pending(&tenant));
    }
    let previous = request.previous_response_id.as_deref()?;
    let holder = match AffinityKey::new(&tenant, previous) {
        Some(key) => affinity.lookup(&key).await,
        None => None,
    };
    let Some(holder) = holder else {
        affinity.metrics.followup(FollowUp::NotFound);
        tracing::debug!(request_id = ex.id(), previous, "no worker known for the previous response; routed as usual");
        return None;
    };
    let Some(index) = holder.index_in(pool).filter(|&i| pool.endpoints.get(i).is_some_and(|e| e.is_available())) else {
        affinity.metrics.followup(FollowUp::Unavailable);
        tracing::debug!(
            request_id = ex.id(), previous, endpoint = %holder.endpoint,
            "the previous response's worker is gone or unavailable; routed as usual"
        );
        return None;
    };
    affinity.metrics.followup(FollowUp::Pinned);
    tracing::debug!(
        request_id = ex.id(), previous, endpoint = %holder.endpoint,
        "sent to the worker holding the previous response (route plugins bypassed)"
    );
    Some(index)
}
