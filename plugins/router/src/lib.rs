//! The built-in `router` plugin: the available endpoint with the fewest requests in flight.
//!
//! Healthy candidates first, degraded ones only when no healthy one is left, unhealthy ones
//! never. Ties go to the first candidate in the host's order; the host rotates that order from
//! request to request, so equal endpoints share the load without the plugin keeping state.
//! With no candidate left it abstains and the host decides. The routing issue replaces this with
//! a prefix- and load-aware score.

use sluice_sdk::Plugin;
#[cfg(target_arch = "wasm32")]
use sluice_sdk::export_plugin;
use sluice_sdk::types::{Candidate, Health, RouteDecision, RouteRequest};

pub struct Router;

impl Plugin for Router {
    fn route(_request: RouteRequest, candidates: Vec<Candidate>) -> RouteDecision {
        choose(&candidates)
    }
}

// Exported only when building the component: export names such as
// `sluice:policy/route@0.1.0#route` are not valid symbols for a native shared library, and the
// native build exists for the unit tests below.
#[cfg(target_arch = "wasm32")]
export_plugin!(Router => [route]);

/// The decision, separate from the bindings so it can be tested natively.
pub fn choose(candidates: &[Candidate]) -> RouteDecision {
    let least = |health: Health| {
        candidates
            .iter()
            .filter(|c| c.stats.health == health)
            .min_by_key(|c| c.stats.in_flight_requests)
            .map(|c| RouteDecision::Route(c.id))
    };
    least(Health::Healthy).or_else(|| least(Health::Degraded)).unwrap_or(RouteDecision::Abstain)
}

#[cfg(test)]
mod tests {
    use sluice_sdk::types::{CandidateStats, PrefixOverlap};

    use super::*;

    fn candidate(id: u32, in_flight: u32, health: Health) -> Candidate {
        Candidate {
            id,
            stats: CandidateStats { in_flight_requests: in_flight, in_flight_prefill_tokens: 0, metrics: None, health },
            overlap: PrefixOverlap { blocks: 0, tokens: 0 },
        }
    }

    #[test]
    fn least_in_flight_healthy_first_then_degraded() {
        let c = [candidate(0, 3, Health::Healthy), candidate(1, 1, Health::Healthy), candidate(2, 0, Health::Degraded)];
        assert_eq!(choose(&c), RouteDecision::Route(1));
        let c = [candidate(0, 3, Health::Unhealthy), candidate(1, 5, Health::Degraded)];
        assert_eq!(choose(&c), RouteDecision::Route(1));
        assert_eq!(choose(&[candidate(0, 0, Health::Unhealthy)]), RouteDecision::Abstain);
        assert_eq!(choose(&[]), RouteDecision::Abstain);
    }

    #[test]
    fn ties_go_to_the_first_in_host_order() {
        let c = [candidate(4, 1, Health::Healthy), candidate(2, 1, Health::Healthy)];
        assert_eq!(choose(&c), RouteDecision::Route(4));
    }
}
