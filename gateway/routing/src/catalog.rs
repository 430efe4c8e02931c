//! Every policy by its name, as `sluice-sim bench-routing --policies` and the `router` plugin's
//! configuration name them.

use std::time::Duration;

use crate::RoutingPolicy;
use crate::dynamo::DynamoCost;
use crate::llmd::{LlmdScorer, LlmdSticky};
use crate::policies::{LeastLoadedPolicy, RandomPolicy, RoundRobinPolicy};
use crate::predicted::PredictedTtft;
use crate::sglang::SglangCacheAware;

/// The names [`by_name`] knows, in the order reports list them.
pub const POLICY_NAMES: [&str; 9] = [
    "random",
    "round-robin",
    "least-loaded",
    "llmd-approx",
    "llmd-precise",
    "llmd-sticky",
    "sglang-cache-aware",
    "dynamo-cost",
    "sluice",
];

/// What the comparison policies are calibrated with, as their projects' setup steps would
/// measure it. Sluice's own policy reads none of it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PoolFacts {
    pub workers: u32,
    /// KV cache blocks per worker (Dynamo turns a usage fraction into blocks with it).
    pub kv_capacity_blocks: u32,
    /// One worker's peak prefill throughput (llm-d's calibration script measures it).
    pub peak_prefill_tokens_per_s: f64,
}

/// The policy called `name`, seeded where it draws random numbers; `None` for an unknown name.
pub fn by_name(name: &str, seed: u64, pool: &PoolFacts) -> Option<Box<dyn RoutingPolicy>> {
    let policy: Box<dyn RoutingPolicy> = match name {
        "random" => Box::new(RandomPolicy::new(seed)),
        "round-robin" => Box::new(RoundRobinPolicy::new()),
        "least-loaded" => Box::new(LeastLoadedPolicy::new()),
        "llmd-approx" => Box::new(LlmdScorer::approx(pool.workers)),
        "llmd-precise" => Box::new(LlmdScorer::precise()),
        "llmd-sticky" => Box::new(LlmdSticky::new(pool.peak_prefill_tokens_per_s, LlmdSticky::DEFAULT_PENALTY)),
        "sglang-cache-aware" => Box::new(SglangCacheAware::new(pool.workers)),
        "dynamo-cost" => Box::new(DynamoCost::new(pool.kv_capacity_blocks)),
        "sluice" => Box::new(PredictedTtft::new()),
        _ => return None,
    };
    Some(policy)
}

/// How long a routing guess stands in for the engine's KV events by default: long enough for a
/// worker to compute a long prompt and report it, short enough that a wrong guess fades fast.
pub const DEFAULT_SPECULATIVE_TTL: Duration = Duration::from_secs(10);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        BlockHash, Candidate, CandidateId, CandidateStats, Decision, EngineMetrics, Health, PrefixOverlap,
        RequestSummary,
    };

    const FACTS: PoolFacts = PoolFacts { workers: 3, kv_capacity_blocks: 1_000, peak_prefill_tokens_per_s: 10_000.0 };
    const HASHES: [BlockHash; 8] = [
        BlockHash(1),
        BlockHash(2),
        BlockHash(3),
        BlockHash(4),
        BlockHash(5),
        BlockHash(6),
        BlockHash(7),
        BlockHash(8),
    ];

    fn request() -> RequestSummary<'static> {
        RequestSummary {
            model: "m",
            prompt_tokens: 8 * 64,
            block_size: 64,
            block_hashes: &HASHES,
            max_output_tokens: None,
        }
    }

    /// A candidate holding `blocks` of the prompt, with `queued` prefill tokens in flight.
    fn cand(id: u32, blocks: u32, queued: u64, kv: f64) -> Candidate {
        Candidate {
            id: CandidateId(id),
            stats: CandidateStats {
                in_flight_requests: (queued / 64) as u32,
                in_flight_prefill_tokens: queued,
                metrics: Some(EngineMetrics { kv_usage: kv, ..EngineMetrics::default() }),
                health: Health::Healthy,
            },
            overlap: PrefixOverlap { blocks, tokens: blocks * 64 },
        }
    }

    fn pick(name: &str, cs: &[Candidate]) -> Decision {
        by_name(name, 1, &FACTS).map_or(Decision::Abstain, |p| p.choose(&request(), cs))
    }

    #[test]
    fn every_name_builds_its_policy_and_none_picks_the_unhealthy() {
        for name in POLICY_NAMES {
            let p = by_name(name, 1, &FACTS).unwrap_or_else(|| panic!("{name}"));
            assert_eq!(p.name(), name);
            let mut cs = [cand(0, 8, 0, 0.0), cand(1, 0, 0, 0.0)];
            cs[0].stats.health = Health::Unhealthy;
            for _ in 0..4 {
                assert_eq!(p.choose(&request(), &cs), Decision::Route(CandidateId(1)), "{name}");
            }
            cs[1].stats.health = Health::Unhealthy;
            assert_eq!(p.choose(&request(), &cs), Decision::Abstain, "{name}");
            assert_eq!(p.choose(&request(), &[]), Decision::Abstain, "{name}");
        }
        assert!(by_name("nope", 1, &FACTS).is_none());
    }

    #[test]
    fn sluice_stays_warm_until_the_queue_costs_more_than_a_recompute() {
        let prompt = 8 * 64;
        // The warm worker's queue is shorter than a recompute elsewhere: stay.
        let cs = [cand(0, 6, 400, 0.5), cand(1, 0, 0, 0.1)];
        assert_eq!(pick("sluice", &cs), Decision::Route(CandidateId(0)));
        // Its queue now costs more than computing the whole prompt on the idle worker: copy.
        let cs = [cand(0, 6, 2 * prompt + 64, 0.5), cand(1, 0, 0, 0.1)];
        assert_eq!(pick("sluice", &cs), Decision::Route(CandidateId(1)));
        // Among holders of the longest prefix, the least prefill ahead.
        let cs = [cand(0, 6, 300, 0.1), cand(1, 6, 100, 0.1), cand(2, 3, 0, 0.1)];
        assert_eq!(pick("sluice", &cs), Decision::Route(CandidateId(1)));
        // A new prefix avoids crowded memory before it looks at queues.
        let cs = [cand(0, 0, 0, 0.9), cand(1, 0, 128, 0.3), cand(2, 0, 64, 0.6)];
        assert_eq!(pick("sluice", &cs), Decision::Route(CandidateId(1)));
        // With memory to spare, or about as full, the queue decides.
        let cs = [cand(0, 0, 512, 0.1), cand(1, 0, 0, 0.45)];
        assert_eq!(pick("sluice", &cs), Decision::Route(CandidateId(1)));
        let cs = [cand(0, 0, 256, 0.801), cand(1, 0, 64, 0.805)];
        assert_eq!(pick("sluice", &cs), Decision::Route(CandidateId(1)));
        // Requests the engine could not admit yet make a worker crowded whatever its memory.
        let mut cs = [cand(0, 0, 0, 0.1), cand(1, 0, 256, 0.2)];
        cs[0].stats.metrics = Some(EngineMetrics { waiting: 2, kv_usage: 0.1, ..EngineMetrics::default() });
        assert_eq!(pick("sluice", &cs), Decision::Route(CandidateId(1)));
    }

    #[test]
    fn llmd_scorers_weigh_prefix_queue_and_memory() {
        let mut cs = [cand(0, 8, 0, 0.5), cand(1, 0, 0, 0.0)];
        cs[0].stats.metrics = Some(EngineMetrics { waiting: 4, kv_usage: 0.5, ..EngineMetrics::default() });
        // Precise 3:2:2: a full prefix match (3) outweighs a longer queue and fuller cache (2 + 1).
        assert_eq!(pick("llmd-precise", &cs), Decision::Route(CandidateId(0)));
        // Approximate: knows only where it sent the prompt before. The first pick ignores the
        // host's overlap; the same prompt then follows it.
        let p = by_name("llmd-approx", 1, &FACTS).unwrap();
        let idle = [cand(0, 0, 0, 0.2), cand(1, 0, 0, 0.2), cand(2, 0, 0, 0.2)];
        let first = p.choose(&request(), &idle);
        for _ in 0..5 {
            assert_eq!(p.choose(&request(), &idle), first);
        }
    }

    #[test]
    fn llmd_sticky_releases_after_its_penalty() {
        // 10,000 tokens/s and a one-second penalty: warm with 5,000 queued stays.
        let cs = [cand(0, 8, 5_000, 0.0), cand(1, 0, 0, 0.0)];
        assert_eq!(pick("llmd-sticky", &cs), Decision::Route(CandidateId(0)));
        // 0.5 s + 0 vs 0.0512 s: within a second. With 20,000 queued (2 s) it lets go.
        let cs = [cand(0, 8, 20_000, 0.0), cand(1, 0, 0, 0.0)];
        assert_eq!(pick("llmd-sticky", &cs), Decision::Route(CandidateId(1)));
    }

    #[test]
    fn sglang_balances_when_imbalanced_and_follows_its_tree_otherwise() {
        let p = by_name("sglang-cache-aware", 1, &FACTS).unwrap();
        let idle = [cand(0, 0, 0, 0.0), cand(1, 0, 0, 0.0)];
        let first = p.choose(&request(), &idle);
        assert_eq!(p.choose(&request(), &idle), first, "the tree's match wins when balanced");
        let Decision::Route(CandidateId(w)) = first else { panic!("{first:?}") };
        let mut busy = idle;
        busy[w as usize].stats.in_flight_requests = 200;
        busy[1 - w as usize].stats.in_flight_requests = 10;
        assert_eq!(p.choose(&request(), &busy), Decision::Route(CandidateId(1 - w)), "imbalance wins");
    }

    #[test]
    fn dynamo_costs_prefill_and_memory_in_blocks() {
        // Worker 0 holds the prompt but its cache is full; worker 1 is cold and empty.
        let cs = [cand(0, 8, 0, 0.9), cand(1, 0, 0, 0.0)];
        assert_eq!(
            pick("dynamo-cost", &cs),
            Decision::Route(CandidateId(1)),
            "900 blocks in use outweigh 8 to compute"
        );
        let cs = [cand(0, 8, 0, 0.1), cand(1, 0, 0, 0.1)];
        assert_eq!(pick("dynamo-cost", &cs), Decision::Route(CandidateId(0)));
    }
}
