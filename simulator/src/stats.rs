//! Counters the handle reads synchronously (`SimHandle::stats`), shared by the driver and the
//! request handlers without locks.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::engine::EngineStats;
use crate::lag::LagHistogram;

/// A snapshot of one worker.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SimStats {
    /// Sequences in the engine's running batch.
    pub running: u32,
    /// Sequences queued for admission.
    pub waiting: u32,
    /// KV blocks in use / total blocks, 0..=1.
    pub kv_usage: f64,
    /// Inference requests (chat, completions, embeddings) that reached the worker, failed ones
    /// included. Health checks, `/metrics` and `/v1/models` are not counted.
    pub requests_received: u64,
    /// Requests answered with an error status (4xx or 5xx, injected faults included).
    pub requests_failed: u64,
    /// Generations that ran to their end.
    pub requests_completed: u64,
    /// Generations cancelled because the client went away (or the stream was cut).
    pub requests_aborted: u64,
    pub prompt_tokens: u64,
    /// Prompt tokens served from the prefix cache.
    pub cached_tokens: u64,
    pub generation_tokens: u64,
    pub preemptions: u64,
}

#[derive(Debug, Default)]
pub(crate) struct StatsCell {
    running: AtomicU32,
    waiting: AtomicU32,
    kv_usage_bits: AtomicU64,
    pub requests_received: AtomicU64,
    pub requests_failed: AtomicU64,
    pub requests_completed: AtomicU64,
    pub requests_aborted: AtomicU64,
    pub prompt_tokens: AtomicU64,
    pub cached_tokens: AtomicU64,
    pub generation_tokens: AtomicU64,
    preemptions: AtomicU64,
    /// Real-time driver: how late each step's tokens went out.
    pub step_lag: LagHistogram,
}

pub(crate) fn bump(counter: &AtomicU64, by: u64) {
    counter.fetch_add(by, Ordering::Relaxed);
}

impl StatsCell {
    pub fn publish_engine(&self, s: &EngineStats) {
        self.running.store(s.running, Ordering::Relaxed);
        self.waiting.store(s.waiting, Ordering::Relaxed);
        self.kv_usage_bits.store(s.kv_usage.to_bits(), Ordering::Relaxed);
        self.preemptions.store(s.preemptions, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> SimStats {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        SimStats {
            running: self.running.load(Ordering::Relaxed),
            waiting: self.waiting.load(Ordering::Relaxed),
            kv_usage: f64::from_bits(self.kv_usage_bits.load(Ordering::Relaxed)),
            requests_received: get(&self.requests_received),
            requests_failed: get(&self.requests_failed),
            requests_completed: get(&self.requests_completed),
            requests_aborted: get(&self.requests_aborted),
            prompt_tokens: get(&self.prompt_tokens),
            cached_tokens: get(&self.cached_tokens),
            generation_tokens: get(&self.generation_tokens),
            preemptions: get(&self.preemptions),
        }
    }
}
