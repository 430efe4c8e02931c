//! The iteration-level engine model: no I/O, no clock of its own.
//!
//! A driver calls [`Engine::step`] with the current time; the engine schedules a batch, asks its
//! [`LatencyModel`] how long the step takes and returns the step's duration with the tokens it
//! produced. The real-time driver (`crate::driver`) sleeps that long before delivering them; a
//! discrete-event driver can instead jump its virtual clock, with the same results.

pub mod kv_events;
pub mod latency;
pub mod prefix_cache;
mod scheduler;
mod sequence;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use latency::{BatchShape, LatencyModel};
use prefix_cache::BlockHash;
use scheduler::Scheduler;
use sequence::Sequence;

use crate::sampling::FinishReason;

/// Time since the driver's origin. Wall-clock in real-time mode, virtual otherwise.
pub type SimTime = Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeqId(pub u64);

/// Scheduler and KV cache sizing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineConfig {
    /// Most sequences running at once (vLLM `max_num_seqs`).
    pub max_running: u32,
    /// Token budget of one step (vLLM `max_num_batched_tokens`); longer prompts are chunked.
    pub max_batched_tokens: u32,
    /// KV cache capacity in blocks.
    pub kv_blocks: u32,
    /// Tokens per KV block.
    pub block_size: u32,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self { max_running: 256, max_batched_tokens: 8192, kv_blocks: 8192, block_size: 16 }
    }
}

/// A request handed to the engine.
#[derive(Debug, Clone)]
pub struct SeqSpec {
    /// Prompt token ids, shared (a workload reuses one allocation for every request of a prompt).
    pub prompt: Arc<[u32]>,
    /// Chained hashes of the prompt's full blocks at the engine's block size, if the caller has
    /// them already ([`sluice_routing::chain_block_hashes`]); computed on admission otherwise.
    pub prompt_hashes: Option<Arc<[BlockHash]>>,
    /// The tokens the simulated model will produce, in order; their number is the output length.
    pub output: Vec<u32>,
    pub finish_reason: FinishReason,
    /// Earliest time the sequence may be scheduled (a stalled first token).
    pub ready_at: SimTime,
    /// Pause after each output token before the sequence runs again (a slow worker).
    pub token_interval: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineEvent {
    Token {
        id: SeqId,
        token: u32,
        index: u32,
        at: SimTime,
    },
    Finished {
        id: SeqId,
        reason: FinishReason,
        prompt_tokens: u32,
        cached_tokens: u32,
        completion_tokens: u32,
        /// Prompt tokens run through the model, recomputation after preemption included.
        prefill_computed: u32,
        /// When the sequence was first scheduled (the end of its wait in the queue).
        first_scheduled: SimTime,
        at: SimTime,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    #[error("sequence {0:?} is already in the engine")]
    DuplicateId(SeqId),
    #[error("a request must generate at least one token")]
    EmptyOutput,
    #[error("request needs {needed} KV blocks but the cache holds {capacity}")]
    ExceedsKvCapacity { needed: u32, capacity: u32 },
}

/// One executed step.
#[derive(Debug, Clone)]
pub struct StepOutcome {
    pub duration: Duration,
    pub batch: BatchShape,
    /// Tokens and completions, all timed at the step's end.
    pub events: Vec<EngineEvent>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct EngineStats {
    pub running: u32,
    pub waiting: u32,
    pub kv_usage: f64,
    pub prefix_queries: u64,
    pub prefix_hits: u64,
    pub preemptions: u64,
    /// Prompt tokens run through the model so far (prefill and recomputation).
    pub prefill_computed: u64,
}

#[derive(Debug)]
pub struct Engine {
    config: EngineConfig,
    scheduler: Scheduler,
    latency: Box<dyn LatencyModel>,
    live: HashSet<SeqId>,
}

impl Engine {
    pub fn new(config: EngineConfig, latency: Box<dyn LatencyModel>) -> Self {
        Self { config, scheduler: Scheduler::new(config), latency, live: HashSet::new() }
    }

    /// Queues a request. Requests that could never fit in the KV cache are refused up front;
    /// otherwise they would preempt everything and then themselves, forever.
    pub fn add(&mut self, id: SeqId, spec: SeqSpec) -> Result<(), EngineError> {
        if spec.output.is_empty() {
            return Err(EngineError::EmptyOutput);
        }
        let total = (spec.prompt.len() + spec.output.len()) as u64;
        let needed = total.div_ceil(u64::from(self.config.block_size));
        if needed > u64::from(self.config.kv_blocks) {
            return Err(EngineError::ExceedsKvCapacity {
                needed: u32::try_from(needed).unwrap_or(u32::MAX),
                capacity: self.config.kv_blocks,
            });
        }
        if !self.live.insert(id) {
            return Err(EngineError::DuplicateId(id));
        }
        let seq = Sequence::new(id, spec, self.config.block_size);
        self.scheduler.waiting.push_back(seq);
        Ok(())
    }

    /// Removes a request (client gone). Its blocks return to the pool at once.
    pub fn abort(&mut self, id: SeqId) -> bool {
        self.live.remove(&id) && self.scheduler.abort(id)
    }

    /// Runs one step starting at `now`. `None` when nothing can run: the engine is idle, or
    /// every sequence waits on a fault delay (see [`Engine::next_ready_at`]).
    pub fn step(&mut self, now: SimTime) -> Option<StepOutcome> {
        let batch = self.scheduler.schedule(now);
        if batch.num_seqs == 0 {
            return None;
        }
        let duration = self.latency.step_time(&batch);
        let mut events = Vec::new();
        self.scheduler.update(now + duration, &mut events);
        for ev in &events {
            if let EngineEvent::Finished { id, .. } = ev {
                self.live.remove(id);
            }
        }
        Some(StepOutcome { duration, batch, events })
    }

    /// When a step returned `None` with work pending: the earliest time it can do something.
    pub fn next_ready_at(&self, now: SimTime) -> Option<SimTime> {
        self.scheduler.next_ready_at(now)
    }

    pub fn has_work(&self) -> bool {
        !self.scheduler.running.is_empty() || !self.scheduler.waiting.is_empty()
    }

    pub fn stats(&self) -> EngineStats {
        let s = &self.scheduler;
        EngineStats {
            running: s.running.len() as u32,
            waiting: s.waiting.len() as u32,
            kv_usage: s.pool.usage(),
            prefix_queries: s.prefix_queries,
            prefix_hits: s.prefix_hits,
            preemptions: s.preemptions,
            prefill_computed: s.prefill_computed,
        }
    }

    /// Starts recording KV cache events for [`Engine::take_kv_events`].
    pub fn record_kv_events(&mut self) {
        self.scheduler.pool.record_events();
    }

    /// Blocks stored in and evicted from the prefix cache since the last call, in order.
    pub fn take_kv_events(&mut self) -> Vec<kv_events::KvCacheEvent> {
        self.scheduler.pool.take_events()
    }

    /// Every block hash in the prefix cache (held or free-but-not-evicted).
    pub fn cached_block_hashes(&self) -> impl Iterator<Item = BlockHash> + '_ {
        self.scheduler.pool.cached_hashes()
    }

    /// How many leading blocks of `hashes` this engine's prefix cache holds right now (what a
    /// KV-event-fed index would know). Hashes must be at this engine's block size.
    pub fn cached_prefix_blocks(&self, hashes: &[BlockHash]) -> usize {
        self.scheduler.pool.cached_prefix_len(hashes)
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }
}

#[cfg(test)]
mod tests;
