//! The built-in `router` plugin: Sluice's routing policy, `sluice-routing`'s `PredictedTtft`
//! (`sluice` in `sluice-sim bench-routing`), in a thin shell that converts the contract's types.
//! The routing benchmark runs this very component (`sluice-sim bench-routing --policies sluice`).
//!
//! The policy stays on the worker holding the longest cached prefix until its queue costs more
//! than computing the prompt again elsewhere, and places new prefixes on the least crowded
//! workers; healthy candidates first, degraded ones only when no healthy one is left, unhealthy
//! ones never. With no prefix or load signal from the host it picks the fewest requests in
//! flight, ties to the first in the host's order (which the host rotates). With no candidate
//! left it abstains and the host decides.

use sluice_routing::{
    BlockHash, Candidate as RCandidate, CandidateId, CandidateStats as RStats, Decision, EngineMetrics as RMetrics,
    Health as RHealth, PredictedTtft, PrefixOverlap as ROverlap, RequestSummary, RoutingPolicy,
};
use sluice_sdk::Plugin;
#[cfg(target_arch = "wasm32")]
use sluice_sdk::export_plugin;
use sluice_sdk::types::{Candidate, Health, RouteDecision, RouteRequest};

/// Stateless: ties go to the first candidate in the host's order, which the host rotates.
static POLICY: PredictedTtft = PredictedTtft::new();

pub struct Router;

impl Plugin for Router {
    fn route(request: RouteRequest, candidates: Vec<Candidate>) -> RouteDecision {
        choose(&request, &candidates)
    }
}

// Exported only when building the component: export names such as
// `sluice:policy/route@0.2.0#route` are not valid symbols for a native shared library, and the
// native build exists for the unit tests below.
#[cfg(target_arch = "wasm32")]
export_plugin!(Router => [route]);

/// The decision, separate from the bindings so it can be tested natively. The policy reads
/// neither the request's tenant, API and session nor the age of the candidates' metrics
/// (`sluice-routing` has no place for them): it routes a request the same whatever its API.
pub fn choose(request: &RouteRequest, candidates: &[Candidate]) -> RouteDecision {
    let hashes: Vec<BlockHash> = request.block_hashes.iter().map(|&h| BlockHash(h)).collect();
    let summary = RequestSummary {
        model: &request.model,
        prompt_tokens: request.prompt_tokens,
        block_size: request.block_size,
        block_hashes: &hashes,
        max_output_tokens: request.max_output_tokens,
    };
    let candidates: Vec<RCandidate> = candidates.iter().map(candidate).collect();
    match POLICY.choose(&summary, &candidates) {
        Decision::Route(CandidateId(id)) => RouteDecision::Route(id),
        Decision::Abstain => RouteDecision::Abstain,
    }
}

fn candidate(c: &Candidate) -> RCandidate {
    RCandidate {
        id: CandidateId(c.id),
        stats: RStats {
            in_flight_requests: c.stats.in_flight_requests,
            in_flight_prefill_tokens: c.stats.in_flight_prefill_tokens,
            metrics: c.stats.metrics.map(|m| RMetrics {
                running: m.running,
                waiting: m.waiting,
                kv_usage: m.kv_usage,
                prefix_cache_hit_rate: m.prefix_cache_hit_rate,
            }),
            health: match c.stats.health {
                Health::Healthy => RHealth::Healthy,
                Health::Degraded => RHealth::Degraded,
                Health::Unhealthy => RHealth::Unhealthy,
            },
        },
        overlap: ROverlap { blocks: c.overlap.blocks, tokens: c.overlap.tokens },
    }
}

#[cfg(test)]
mod tests {
    use sluice_sdk::types::{Api, CandidateStats, EngineMetrics, PrefixOverlap};

    use super::*;

    fn request(prompt_tokens: u32, blocks: usize) -> RouteRequest {
        RouteRequest {
            tenant: "t".to_owned(),
            model: "m".to_owned(),
            api: Api::ChatCompletions,
            session: None,
            prompt_tokens,
            block_size: 16,
            block_hashes: (0..blocks as u64).collect(),
            max_output_tokens: None,
        }
    }

    fn candidate(id: u32, in_flight: u32, health: Health) -> Candidate {
        Candidate {
            id,
            stats: CandidateStats { in_flight_requests: in_flight, in_flight_prefill_tokens: 0, metrics: None, health },
            overlap: PrefixOverlap { blocks: 0, tokens: 0 },
        }
    }

    #[test]
    fn without_prefix_or_load_signals_least_in_flight_healthy_first_then_degraded() {
        let r = request(100, 0);
        let c = [candidate(0, 3, Health::Healthy), candidate(1, 1, Health::Healthy), candidate(2, 0, Health::Degraded)];
        assert_eq!(choose(&r, &c), RouteDecision::Route(1));
        let c = [candidate(0, 3, Health::Unhealthy), candidate(1, 5, Health::Degraded)];
        assert_eq!(choose(&r, &c), RouteDecision::Route(1));
        assert_eq!(choose(&r, &[candidate(0, 0, Health::Unhealthy)]), RouteDecision::Abstain);
        assert_eq!(choose(&r, &[]), RouteDecision::Abstain);
    }

    #[test]
    fn every_api_is_routed_alike() {
        let c = [candidate(0, 3, Health::Healthy), candidate(1, 1, Health::Healthy)];
        for api in [Api::ChatCompletions, Api::Completions, Api::Embeddings, Api::Responses, Api::Messages] {
            let r = RouteRequest { api, session: Some("s".to_owned()), ..request(100, 0) };
            assert_eq!(choose(&r, &c), RouteDecision::Route(1), "{api:?}");
        }
    }

    #[test]
    fn follows_the_cached_prefix_until_its_queue_costs_a_recompute() {
        let r = request(640, 40);
        let mut warm = candidate(0, 4, Health::Healthy);
        warm.overlap = PrefixOverlap { blocks: 30, tokens: 480 };
        warm.stats.in_flight_prefill_tokens = 300;
        let metrics =
            |kv_usage| Some(EngineMetrics { running: 0, waiting: 0, kv_usage, prefix_cache_hit_rate: 0.0, age_ms: 0 });
        warm.stats.metrics = metrics(0.5);
        let mut cold = candidate(1, 0, Health::Healthy);
        cold.stats.metrics = metrics(0.1);
        assert_eq!(choose(&r, &[warm.clone(), cold.clone()]), RouteDecision::Route(0));
        warm.stats.in_flight_prefill_tokens = 2_000;
        assert_eq!(choose(&r, &[warm, cold]), RouteDecision::Route(1));
    }
}
