//! The baseline policies: what a pool does without any knowledge of prefixes.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::choice::{eligible, route_lowest};
use crate::{Candidate, Decision, RequestSummary, RoutingPolicy};

/// The `n`th routable candidate (modulo their number) in the order of their ids, not of the
/// host's rotating list: a counter walking a list that itself rotates would skip candidates.
/// Policies never pick an unhealthy worker, so an all-unhealthy pool abstains.
fn nth_routable(candidates: &[Candidate], n: u64) -> Decision {
    let mut routable: Vec<&Candidate> = candidates.iter().filter(|c| c.is_routable()).collect();
    if routable.is_empty() {
        return Decision::Abstain;
    }
    routable.sort_unstable_by_key(|c| c.id);
    let pick = (n % routable.len() as u64) as usize;
    routable.get(pick).map_or(Decision::Abstain, |c| Decision::Route(c.id))
}

/// Uniformly random among routable candidates, from a seeded SplitMix64 stream (deterministic
/// for a seed when called from one thread).
#[derive(Debug)]
pub struct RandomPolicy {
    state: AtomicU64,
}

impl RandomPolicy {
    pub fn new(seed: u64) -> Self {
        Self { state: AtomicU64::new(seed) }
    }

    fn next(&self) -> u64 {
        let s = self.state.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
        let mut z = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

impl RoutingPolicy for RandomPolicy {
    fn name(&self) -> &str {
        "random"
    }

    fn choose(&self, _request: &RequestSummary<'_>, candidates: &[Candidate]) -> Decision {
        nth_routable(candidates, self.next())
    }
}

/// Each routable candidate in turn.
#[derive(Debug, Default)]
pub struct RoundRobinPolicy {
    next: AtomicU64,
}

impl RoundRobinPolicy {
    pub fn new() -> Self {
        Self::default()
    }
}

impl RoutingPolicy for RoundRobinPolicy {
    fn name(&self) -> &str {
        "round-robin"
    }

    fn choose(&self, _request: &RequestSummary<'_>, candidates: &[Candidate]) -> Decision {
        nth_routable(candidates, self.next.fetch_add(1, Ordering::Relaxed))
    }
}

/// Load-only routing after llm-d's queue and KV-utilisation scorers: each candidate scores
/// `queue_weight · waiting / max waiting + kv_weight · kv usage` from its scraped metrics, and
/// the lowest score wins. The gateway's own in-flight count breaks ties (and stands in for the
/// queue when a candidate has not been scraped yet); remaining ties go to the first in the
/// host's (rotating) order.
#[derive(Debug)]
pub struct LeastLoadedPolicy {
    pub queue_weight: f64,
    pub kv_weight: f64,
}

impl Default for LeastLoadedPolicy {
    fn default() -> Self {
        Self { queue_weight: 1.0, kv_weight: 1.0 }
    }
}

impl LeastLoadedPolicy {
    pub fn new() -> Self {
        Self::default()
    }

    fn queue_of(c: &Candidate) -> f64 {
        c.stats.metrics.map_or(f64::from(c.stats.in_flight_requests), |m| f64::from(m.waiting))
    }
}

impl RoutingPolicy for LeastLoadedPolicy {
    fn name(&self) -> &str {
        "least-loaded"
    }

    fn choose(&self, _request: &RequestSummary<'_>, candidates: &[Candidate]) -> Decision {
        let pool = eligible(candidates);
        let max_queue = pool.iter().map(|c| Self::queue_of(c)).fold(0.0_f64, f64::max);
        route_lowest(&pool, |c| {
            let queue = if max_queue > 0.0 { Self::queue_of(c) / max_queue } else { 0.0 };
            let kv = c.stats.metrics.map_or(0.0, |m| m.kv_usage.clamp(0.0, 1.0));
            self.queue_weight * queue + self.kv_weight * kv
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CandidateId, CandidateStats, EngineMetrics, Health, PrefixOverlap};

    fn request() -> RequestSummary<'static> {
        RequestSummary { model: "m", prompt_tokens: 10, block_size: 16, block_hashes: &[], max_output_tokens: None }
    }

    fn cand(id: u32, waiting: u32, kv: f64) -> Candidate {
        Candidate {
            id: CandidateId(id),
            stats: CandidateStats {
                metrics: Some(EngineMetrics { waiting, kv_usage: kv, ..EngineMetrics::default() }),
                ..CandidateStats::default()
            },
            overlap: PrefixOverlap::default(),
        }
    }

    #[test]
    fn round_robin_cycles_and_skips_unhealthy() {
        let p = RoundRobinPolicy::new();
        let mut cs = vec![cand(0, 0, 0.0), cand(1, 0, 0.0), cand(2, 0, 0.0)];
        cs[1].stats.health = Health::Unhealthy;
        // The host rotates its list; the cycle follows the ids regardless.
        let picks: Vec<_> = (0..4)
            .map(|k| {
                cs.rotate_left(k % 3);
                p.choose(&request(), &cs)
            })
            .collect();
        let ids = [0, 2, 0, 2].map(|i| Decision::Route(CandidateId(i)));
        assert_eq!(picks, ids);
        cs[0].stats.health = Health::Unhealthy;
        cs[2].stats.health = Health::Unhealthy;
        assert_eq!(p.choose(&request(), &cs), Decision::Abstain);
        assert_eq!(p.choose(&request(), &[]), Decision::Abstain);
    }

    #[test]
    fn random_is_seeded_and_spreads() {
        let cs: Vec<_> = (0..4).map(|i| cand(i, 0, 0.0)).collect();
        let run = |seed| {
            let p = RandomPolicy::new(seed);
            (0..400).map(|_| p.choose(&request(), &cs)).collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
        for i in 0..4 {
            let n = run(7).iter().filter(|d| **d == Decision::Route(CandidateId(i))).count();
            assert!((60..140).contains(&n), "candidate {i} picked {n} times");
        }
    }

    #[test]
    fn least_loaded_prefers_short_queues_and_free_kv() {
        let p = LeastLoadedPolicy::new();
        let cs = [cand(0, 5, 0.2), cand(1, 0, 0.9), cand(2, 1, 0.1)];
        assert_eq!(p.choose(&request(), &cs), Decision::Route(CandidateId(2)));
        let idle = [cand(1, 0, 0.0), cand(0, 0, 0.0)];
        assert_eq!(p.choose(&request(), &idle), Decision::Route(CandidateId(1)), "ties: the first in host order");
    }
}
