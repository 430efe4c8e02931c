//! NVIDIA Dynamo's KV router cost, reproduced for comparison: per worker,
//! `overlap_weight × prefill blocks + decode blocks`, where the prefill blocks are the request's
//! uncached blocks plus the prefill already queued there, and the decode blocks are the KV blocks
//! in use plus the request's own; temperature 0, so the lowest cost wins. The prefix comes from
//! the engines' KV events.

use crate::choice::{eligible, route_lowest, uncached_tokens};
use crate::{Candidate, Decision, RequestSummary, RoutingPolicy};

#[derive(Debug)]
pub struct DynamoCost {
    /// `--router-kv-overlap-score-weight`, default 1.
    pub overlap_weight: f64,
    /// Blocks of KV cache per worker, to turn a scraped usage fraction into blocks.
    kv_capacity_blocks: f64,
}

impl DynamoCost {
    pub fn new(kv_capacity_blocks: u32) -> Self {
        Self { overlap_weight: 1.0, kv_capacity_blocks: f64::from(kv_capacity_blocks) }
    }
}

impl RoutingPolicy for DynamoCost {
    fn name(&self) -> &str {
        "dynamo-cost"
    }

    fn choose(&self, request: &RequestSummary<'_>, candidates: &[Candidate]) -> Decision {
        let bs = f64::from(request.block_size.max(1));
        let own_blocks = f64::from(request.prompt_tokens) / bs;
        route_lowest(&eligible(candidates), |c| {
            let prefill = (c.stats.in_flight_prefill_tokens + uncached_tokens(request.prompt_tokens, c)) as f64 / bs;
            let decode =
                c.stats.metrics.map_or(0.0, |m| m.kv_usage.clamp(0.0, 1.0)) * self.kv_capacity_blocks + own_blocks;
            self.overlap_weight * prefill + decode
        })
    }
}
