//! Sluice's routing policy (`sluice`, the built-in `router` plugin's default): stay where the
//! prompt's prefix is cached until that worker's queue costs more than computing the prompt
//! again elsewhere; place new prefixes on the least crowded workers.
//!
//! A worker's prefill is first come, first served within its token budget, so a request waits
//! for the uncached prefill already queued there and then computes its own uncached tokens:
//! `prefill ahead = queued prefill + (prompt − tokens the worker holds)`. In a pool of like
//! workers that sum, in tokens, orders the workers as their predicted TTFTs do, with nothing to
//! calibrate.
//!
//! - **Warm**: among the workers holding the longest cached prefix, the one with the least
//!   prefill ahead. It keeps the request unless another worker's prefill ahead, plus a whole
//!   recompute of the prompt, is still less: affinity is bounded, and a hot prefix is copied to a
//!   second worker on purpose once its worker's queue is longer than a recompute.
//! - **Cold** (no worker holds any of it, or the warm worker is saturated): the least prefill
//!   ahead among the least crowded workers — crowding is the requests the engine has not been
//!   able to admit yet plus its KV usage above half, in 2% steps. A new prefix stays where it is
//!   placed, and every sibling that follows needs memory there; placing by queue alone piles
//!   prefixes on whichever worker drained first and ends in preemptions.

use crate::choice::{eligible, lowest, uncached_tokens};
use crate::{Candidate, Decision, RequestSummary, RoutingPolicy};

/// Stateless: ties go to the first candidate in the host's order, which the host rotates.
#[derive(Debug, Default)]
pub struct PredictedTtft;

impl PredictedTtft {
    pub const fn new() -> Self {
        Self
    }

    /// Prefill tokens ahead of this request's first token on `c`, its own included.
    pub fn prefill_ahead(request: &RequestSummary<'_>, c: &Candidate) -> u64 {
        c.stats.in_flight_prefill_tokens + uncached_tokens(request.prompt_tokens, c)
    }
}

/// Below this KV usage a worker's memory does not decide where a new prefix goes: its engine's
/// waiting requests and the prefill queue do. Above it, a new prefix and the requests that will follow it compete for the memory the
/// worker's running sequences still need to grow into. Chosen on the routing benchmark's
/// scenarios (prefix-heavy, multi-turn, no reuse): placing by memory from the first block on
/// unbalanced queues when memory was plentiful (TTFT p90 4.1 s against 0.6 s without reuse),
/// placing by queue alone piled prefixes onto whichever worker drained first.
const KV_WATERMARK: f64 = 0.5;

/// Above the watermark, KV usage is compared in steps of this size, so the queue decides between
/// workers whose memory is about as full: a scrape is a sample, not an exact figure.
const KV_STEP: f64 = 0.02;

fn kv_usage(c: &Candidate) -> f64 {
    c.stats.metrics.map_or(0.0, |m| m.kv_usage.clamp(0.0, 1.0))
}

impl RoutingPolicy for PredictedTtft {
    fn name(&self) -> &str {
        "sluice"
    }

    fn choose(&self, request: &RequestSummary<'_>, candidates: &[Candidate]) -> Decision {
        let pool = eligible(candidates);
        let ahead = |c: &Candidate| Self::prefill_ahead(request, c) as f64;
        let budget = f64::from(request.prompt_tokens.max(1));
        // Crowding first: requests the engine could not admit yet, and memory in steps above
        // the watermark; within a step the prefill ahead, as a fraction of one step.
        let crowding = |c: &Candidate| {
            let waiting = c.stats.metrics.map_or(0.0, |m| f64::from(m.waiting));
            waiting + ((kv_usage(c) - KV_WATERMARK).max(0.0) / KV_STEP).floor()
        };
        let cold_score = |c: &Candidate| crowding(c) + ahead(c) / (ahead(c) + budget);
        let cold = lowest(&pool, cold_score);
        let longest = pool.iter().map(|c| c.overlap.blocks).max().unwrap_or(0);
        let warm = if longest == 0 {
            None
        } else {
            let holders: Vec<&Candidate> = pool.iter().copied().filter(|c| c.overlap.blocks == longest).collect();
            lowest(&holders, ahead)
        };
        let chosen = match (warm, cold) {
            (Some(w), Some(c)) if ahead(w) > ahead(c) + budget => Some(c),
            (Some(w), _) => Some(w),
            (None, c) => c,
        };
        chosen.map_or(Decision::Abstain, |c| Decision::Route(c.id))
    }
}
