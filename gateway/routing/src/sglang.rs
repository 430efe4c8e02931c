//! SGLang's router (`sglang-router`, policy `cache_aware`), reproduced for comparison. It keeps an
//! approximate tree of the prompts it sent to each worker (here: the same blocks in a
//! [`PrefixIndex`] of its own) and its own count of requests in flight:
//! - when the load is imbalanced (the busiest worker has more than `balance_abs_threshold` more
//!   requests than the idlest and more than `balance_rel_threshold` times as many), the idlest;
//! - otherwise, when the longest match covers more than `cache_threshold` of the prompt, the
//!   worker with that match;
//! - otherwise the worker whose tree is smallest, to spread new prefixes.

use std::sync::Mutex;
use std::time::Duration;

use crate::choice::{eligible, lowest};
use crate::index::PrefixIndex;
use crate::{Candidate, Decision, RequestSummary, RoutingPolicy};

#[derive(Debug)]
pub struct SglangCacheAware {
    pub cache_threshold: f64,
    pub balance_abs_threshold: u32,
    pub balance_rel_threshold: f64,
    tree: Mutex<PrefixIndex>,
}

/// Blocks the trees may hold, per worker (sglang-router bounds its trees by size and evicts
/// the least recently used leaves).
pub const SGLANG_TREE_BLOCKS_PER_WORKER: usize = 40_000;

impl SglangCacheAware {
    /// sglang-router's defaults: cache threshold 0.3, balance thresholds 64 and 1.5.
    pub fn new(workers: u32) -> Self {
        let capacity = SGLANG_TREE_BLOCKS_PER_WORKER * workers.max(1) as usize;
        Self {
            cache_threshold: 0.3,
            balance_abs_threshold: 64,
            balance_rel_threshold: 1.5,
            tree: Mutex::new(PrefixIndex::new(capacity, Duration::MAX)),
        }
    }
}

impl RoutingPolicy for SglangCacheAware {
    fn name(&self) -> &str {
        "sglang-cache-aware"
    }

    fn choose(&self, request: &RequestSummary<'_>, candidates: &[Candidate]) -> Decision {
        let pool = eligible(candidates);
        if pool.is_empty() {
            return Decision::Abstain;
        }
        let load = |c: &Candidate| c.stats.in_flight_requests;
        let (lo, hi) = pool.iter().map(|c| load(c)).fold((u32::MAX, 0), |(lo, hi), l| (lo.min(l), hi.max(l)));
        let mut tree = self.tree.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let imbalanced = hi.saturating_sub(lo) > self.balance_abs_threshold
            && f64::from(hi) > self.balance_rel_threshold * f64::from(lo);
        let chosen = if imbalanced {
            lowest(&pool, |c| f64::from(load(c)))
        } else {
            let mut matched = vec![0u32; candidates.iter().map(|c| c.id.0 as usize + 1).max().unwrap_or(0)];
            tree.overlaps(request.block_hashes, Duration::ZERO, &mut matched);
            let of = |c: &Candidate| matched.get(c.id.0 as usize).copied().unwrap_or(0);
            let best = pool.iter().map(|c| of(c)).max().unwrap_or(0);
            let rate = f64::from(best) / request.block_hashes.len().max(1) as f64;
            if best > 0 && rate > self.cache_threshold {
                lowest(&pool, |c| -f64::from(of(c)))
            } else {
                lowest(&pool, |c| tree.exact_blocks(c.id.0) as f64)
            }
        };
        let Some(c) = chosen else { return Decision::Abstain };
        tree.stored(c.id.0, request.block_hashes);
        Decision::Route(c.id)
    }
}
