//! What every policy does around its score: which candidates it may pick, and how ties go.

use crate::{Candidate, Decision, Health};

/// The healthy candidates, or the degraded ones when none is healthy; never an unhealthy one.
pub(crate) fn eligible(candidates: &[Candidate]) -> Vec<&Candidate> {
    let healthy: Vec<&Candidate> = candidates.iter().filter(|c| c.stats.health == Health::Healthy).collect();
    if healthy.is_empty() {
        candidates.iter().filter(|c| c.stats.health == Health::Degraded).collect()
    } else {
        healthy
    }
}

/// Scores within this of each other are equal: they come from sums of floats.
const EPSILON: f64 = 1e-9;

/// The candidate with the lowest `score`; ties go to fewer requests in flight, then to the first
/// in the host's order. The host rotates that order from request to request (the gateway's pool
/// and the simulator's harness both do), so equal workers share the load; a policy that rotated
/// as well would cancel the host's rotation out.
pub(crate) fn lowest<'a>(candidates: &[&'a Candidate], score: impl Fn(&Candidate) -> f64) -> Option<&'a Candidate> {
    let mut best: Option<(f64, u32, &Candidate)> = None;
    for &c in candidates {
        let s = score(c);
        let f = c.stats.in_flight_requests;
        let better = match best {
            None => true,
            Some((bs, bf, _)) => s < bs - EPSILON || ((s - bs).abs() <= EPSILON && f < bf),
        };
        if better {
            best = Some((s, f, c));
        }
    }
    best.map(|(_, _, c)| c)
}

/// [`lowest`] as a decision.
pub(crate) fn route_lowest(candidates: &[&Candidate], score: impl Fn(&Candidate) -> f64) -> Decision {
    lowest(candidates, score).map_or(Decision::Abstain, |c| Decision::Route(c.id))
}

/// Tokens of the prompt the candidate would have to compute.
pub(crate) fn uncached_tokens(prompt_tokens: u32, c: &Candidate) -> u64 {
    u64::from(prompt_tokens.saturating_sub(c.overlap.tokens))
}
