//! The baseline policies: what a pool does without any knowledge of prefixes.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::{Candidate, Decision, RequestSummary, RoutingPolicy};

/// The routable candidates, falling back to all of them when none is routable would be wrong:
/// policies never pick an unhealthy worker, so an all-unhealthy pool abstains.
fn routable(candidates: &[Candidate]) -> impl Iterator<Item = &Candidate> {
    candidates.iter().filter(|c| c.is_routable())
}

fn nth_routable(candidates: &[Candidate], n: u64) -> Decision {
    let count = routable(candidates).count() as u64;
    if count == 0 {
        return Decision::Abstain;
    }
    let pick = (n % count) as usize;
    routable(candidates).nth(pick).map_or(Decision::Abstain, |c| Decision::Route(c.id))
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
/// queue when a candidate has not been scraped yet); remaining ties rotate so equal workers
/// share the load.
#[derive(Debug)]
pub struct LeastLoadedPolicy {
    pub queue_weight: f64,
    pub kv_weight: f64,
    rotation: AtomicU64,
}

impl Default for LeastLoadedPolicy {
    fn default() -> Self {
        Self { queue_weight: 1.0, kv_weight: 1.0, rotation: AtomicU64::new(0) }
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
        let max_queue = routable(candidates).map(Self::queue_of).fold(0.0_f64, f64::max);
        let n = candidates.len().max(1);
        let start = (self.rotation.fetch_add(1, Ordering::Relaxed) % n as u64) as usize;
        let mut best: Option<(f64, u32, &Candidate)> = None;
        for k in 0..candidates.len() {
            let c = &candidates[(start + k) % n];
            if !c.is_routable() {
                continue;
            }
            let queue = if max_queue > 0.0 { Self::queue_of(c) / max_queue } else { 0.0 };
            let kv = c.stats.metrics.map_or(0.0, |m| m.kv_usage.clamp(0.0, 1.0));
            let score = self.queue_weight * queue + self.kv_weight * kv;
            let in_flight = c.stats.in_flight_requests;
            let better = match best {
                None => true,
                Some((s, f, _)) => score < s - 1e-12 || ((score - s).abs() <= 1e-12 && in_flight < f),
            };
            if better {
                best = Some((score, in_flight, c));
            }
        }
        best.map_or(Decision::Abstain, |(_, _, c)| Decision::Route(c.id))
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
        let picks: Vec<_> = (0..4).map(|_| p.choose(&request(), &cs)).collect();
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
        let idle = [cand(0, 0, 0.0), cand(1, 0, 0.0)];
        let a = p.choose(&request(), &idle);
        let b = p.choose(&request(), &idle);
        assert_ne!(a, b, "ties rotate");
    }
}
