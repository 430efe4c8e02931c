//! llm-d's routing, reproduced for comparison (the inference scheduler's scorers as published;
//! where a default is not published, the value used is named on the field).
//!
//! - [`LlmdScorer`]: weighted scorers, highest total wins. `llmd-approx` weighs prefix, queue and
//!   KV usage 1:1:1 with the prefix known only from the router's own routing history;
//!   `llmd-precise` weighs them 3:2:2 with the prefix from the engines' KV events, as llm-d
//!   shipped it in 2025.
//! - [`LlmdSticky`]: "sticky until saturated", llm-d's default since August 2026: among the
//!   workers holding the longest prefix, the one with the least uncached prefill in flight, unless
//!   its estimated TTFT exceeds the best cold worker's by more than a time penalty.

use std::sync::Mutex;
use std::time::Duration;

use crate::choice::{eligible, lowest, route_lowest, uncached_tokens};
use crate::index::PrefixIndex;
use crate::{Candidate, Decision, RequestSummary, RoutingPolicy};

/// Where a scorer learns which worker holds a prefix.
#[derive(Debug)]
enum PrefixSource {
    /// The host's overlap, from the engines' KV events.
    Precise,
    /// The router's own record of where it sent which blocks (llm-d's approximate prefix cache:
    /// an LRU per worker, no events).
    Approx(Mutex<PrefixIndex>),
}

/// llm-d's weighted scorers: prefix match, queue, free KV cache.
#[derive(Debug)]
pub struct LlmdScorer {
    name: &'static str,
    prefix_weight: f64,
    queue_weight: f64,
    kv_weight: f64,
    prefix: PrefixSource,
}

/// llm-d's approximate prefix cache remembers this many blocks per worker (its LRU capacity
/// per server).
pub const LLMD_APPROX_BLOCKS_PER_WORKER: usize = 31_250;

impl LlmdScorer {
    /// `llmd-precise`: KV-event prefix 3 : queue 2 : KV usage 2.
    pub fn precise() -> Self {
        Self::new("llmd-precise", (3.0, 2.0, 2.0), PrefixSource::Precise)
    }

    /// `llmd-approx`: prefix from routing history 1 : queue 1 : KV usage 1.
    pub fn approx(workers: u32) -> Self {
        let capacity = LLMD_APPROX_BLOCKS_PER_WORKER * workers.max(1) as usize;
        // Routing history does not expire: it is forgotten only by the LRU bound.
        let index = PrefixIndex::new(capacity, Duration::MAX);
        Self::new("llmd-approx", (1.0, 1.0, 1.0), PrefixSource::Approx(Mutex::new(index)))
    }

    fn new(name: &'static str, (p, q, k): (f64, f64, f64), prefix: PrefixSource) -> Self {
        Self { name, prefix_weight: p, queue_weight: q, kv_weight: k, prefix }
    }
}

fn waiting(c: &Candidate) -> f64 {
    c.stats.metrics.map_or(f64::from(c.stats.in_flight_requests), |m| f64::from(m.waiting))
}

impl RoutingPolicy for LlmdScorer {
    fn name(&self) -> &str {
        self.name
    }

    fn choose(&self, request: &RequestSummary<'_>, candidates: &[Candidate]) -> Decision {
        let pool = eligible(candidates);
        if pool.is_empty() {
            return Decision::Abstain;
        }
        let blocks = request.block_hashes.len().max(1) as f64;
        let mut approx = match &self.prefix {
            PrefixSource::Approx(index) => Some(index.lock().unwrap_or_else(std::sync::PoisonError::into_inner)),
            PrefixSource::Precise => None,
        };
        let mut matched = vec![0u32; candidates.iter().map(|c| c.id.0 as usize + 1).max().unwrap_or(0)];
        if let Some(index) = &approx {
            index.overlaps(request.block_hashes, Duration::ZERO, &mut matched);
        }
        let prefix_of = |c: &Candidate| match &approx {
            Some(_) => f64::from(matched.get(c.id.0 as usize).copied().unwrap_or(0)) / blocks,
            None => f64::from(c.overlap.blocks) / blocks,
        };
        let (min_q, max_q) =
            pool.iter().map(|c| waiting(c)).fold((f64::MAX, 0.0_f64), |(lo, hi), q| (lo.min(q), hi.max(q)));
        let queue_of = |c: &Candidate| if max_q > min_q { (max_q - waiting(c)) / (max_q - min_q) } else { 1.0 };
        let kv_of = |c: &Candidate| 1.0 - c.stats.metrics.map_or(0.0, |m| m.kv_usage.clamp(0.0, 1.0));
        // Highest total wins: the lowest negated total.
        let chosen = lowest(&pool, |c| {
            -(self.prefix_weight * prefix_of(c) + self.queue_weight * queue_of(c) + self.kv_weight * kv_of(c))
        });
        let Some(c) = chosen else { return Decision::Abstain };
        if let Some(index) = approx.as_mut() {
            index.stored(c.id.0, request.block_hashes);
        }
        Decision::Route(c.id)
    }
}

/// llm-d's "sticky until saturated".
#[derive(Debug)]
pub struct LlmdSticky {
    /// Prefill tokens per second one worker computes at its peak, from llm-d's calibration.
    peak_prefill_tokens_per_s: f64,
    /// How much longer the warm worker's estimated TTFT may be than the best cold worker's.
    /// llm-d's published default is not available offline; one second is our reading.
    penalty: Duration,
}

impl LlmdSticky {
    pub const DEFAULT_PENALTY: Duration = Duration::from_secs(1);

    pub fn new(peak_prefill_tokens_per_s: f64, penalty: Duration) -> Self {
        Self { peak_prefill_tokens_per_s: peak_prefill_tokens_per_s.max(1.0), penalty }
    }

    fn estimated_ttft_s(&self, request: &RequestSummary<'_>, c: &Candidate) -> f64 {
        let tokens = c.stats.in_flight_prefill_tokens + uncached_tokens(request.prompt_tokens, c);
        tokens as f64 / self.peak_prefill_tokens_per_s
    }
}

impl RoutingPolicy for LlmdSticky {
    fn name(&self) -> &str {
        "llmd-sticky"
    }

    fn choose(&self, request: &RequestSummary<'_>, candidates: &[Candidate]) -> Decision {
        let pool = eligible(candidates);
        let longest = pool.iter().map(|c| c.overlap.blocks).max().unwrap_or(0);
        let inflight = |c: &Candidate| c.stats.in_flight_prefill_tokens as f64;
        if longest == 0 {
            return route_lowest(&pool, inflight);
        }
        let (warm, cold): (Vec<&Candidate>, Vec<&Candidate>) = pool.iter().partition(|c| c.overlap.blocks == longest);
        let estimate = |c: &Candidate| self.estimated_ttft_s(request, c);
        let best_warm = lowest(&warm, inflight);
        let best_cold = lowest(&cold, estimate);
        match (best_warm, best_cold) {
            (Some(w), Some(c)) if estimate(w) > estimate(c) + self.penalty.as_secs_f64() => Decision::Route(c.id),
            (Some(w), _) => Decision::Route(w.id),
            (None, Some(c)) => Decision::Route(c.id),
            (None, None) => Decision::Abstain,
        }
    }
}
