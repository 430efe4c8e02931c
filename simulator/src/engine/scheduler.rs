//! Continuous batching, one step at a time, after vLLM v1's scheduler. Each step spends a token
//! budget (`max_batched_tokens`) in this order:
//!
//! 1. decodes: every running sequence whose prompt is done takes one token;
//! 2. chunked prefill: running sequences part-way through their prompt take the next chunk;
//! 3. admission: waiting sequences in arrival order, while the budget, the batch slots
//!    (`max_running`) and KV blocks for their uncached prompt last; the first that does not fit
//!    stops admission (first come, first served).
//!
//! A running sequence that cannot get a block preempts the most recently admitted one, whose
//! blocks go back to the pool (still cached) and which later resumes by recomputing, mostly from
//! its own cached blocks. Nothing is admitted in a step that preempted.
//!
//! Full blocks enter the prefix cache when they are scheduled, not when the step ends: vLLM v1's
//! `allocate_slots` caches them at once, and the forward pass writes every new token's KV before
//! attention reads it. So two requests of one group admitted in the same step share the prefix:
//! the second computes only its own suffix.

use std::collections::VecDeque;

use super::latency::BatchShape;
use super::prefix_cache::BlockPool;
use super::sequence::Sequence;
use super::{EngineConfig, EngineEvent, SeqId, SimTime};

#[derive(Debug)]
pub(super) struct Scheduler {
    config: EngineConfig,
    pub waiting: VecDeque<Sequence>,
    /// In admission order: the last one is the newest, the first to be preempted.
    pub running: Vec<Sequence>,
    pub pool: BlockPool,
    pub prefix_queries: u64,
    pub prefix_hits: u64,
    pub preemptions: u64,
    pub prefill_computed: u64,
}

impl Scheduler {
    pub fn new(config: EngineConfig) -> Self {
        Self {
            pool: BlockPool::new(config.kv_blocks),
            config,
            waiting: VecDeque::new(),
            running: Vec::new(),
            prefix_queries: 0,
            prefix_hits: 0,
            preemptions: 0,
            prefill_computed: 0,
        }
    }

    /// Decides what runs in the step starting at `now`, allocating its KV blocks.
    pub fn schedule(&mut self, now: SimTime) -> BatchShape {
        let mut budget = self.config.max_batched_tokens;
        let mut preempted = false;
        for decodes in [true, false] {
            let mut i = 0;
            while i < self.running.len() && budget > 0 {
                let seq = &self.running[i];
                if seq.ready_at > now || seq.remaining() == 0 || seq.scheduled > 0 || seq.is_decode() != decodes {
                    i += 1;
                    continue;
                }
                let n = seq.remaining().min(budget);
                if self.reserve(i, n, &mut budget, &mut preempted) {
                    i += 1;
                }
            }
        }
        if !preempted {
            self.admit(now, &mut budget);
        }

        let mut shape = BatchShape::default();
        for seq in self.running.iter().filter(|s| s.scheduled > 0) {
            shape.num_seqs += 1;
            if seq.is_decode() {
                shape.decode_seqs += 1;
                shape.decode_context_tokens += u64::from(seq.len());
            } else {
                shape.prefill_tokens += seq.scheduled;
            }
        }
        self.prefill_computed += u64::from(shape.prefill_tokens);
        shape
    }

    /// Allocates blocks for `n` more tokens of running sequence `i`, preempting the newest
    /// sequences as needed. False if `i` itself was preempted.
    fn reserve(&mut self, i: usize, n: u32, budget: &mut u32, preempted: &mut bool) -> bool {
        let bs = self.config.block_size;
        while self.running[i].blocks_needed(n, bs) > self.pool.num_free() {
            let victim = self.running.len() - 1;
            *budget += self.running[victim].scheduled;
            self.preempt(victim);
            *preempted = true;
            if victim == i {
                return false;
            }
        }
        let need = self.running[i].blocks_needed(n, bs);
        self.allocate_into(i, need);
        self.running[i].scheduled = n;
        self.register_scheduled(i);
        *budget -= n;
        true
    }

    fn admit(&mut self, now: SimTime, budget: &mut u32) {
        let bs = self.config.block_size;
        while *budget > 0 && self.running.len() < self.config.max_running as usize {
            let Some(seq) = self.waiting.front() else {
                break;
            };
            // At least one prompt token is always computed, so a full hit stops a block short.
            let max_hit = ((seq.len().saturating_sub(1)) / bs) as usize;
            let hits = self.pool.lookup(&seq.hashes[..max_hit.min(seq.hashes.len())]);
            let computed = hits.len() as u32 * bs;
            let n = if seq.ready_at <= now { seq.len().saturating_sub(computed).min(*budget) } else { 0 };
            // Admit only if the whole uncached part fits in the free blocks (the cached blocks
            // it takes back out of the free queue do not count as free any more).
            let uncached_blocks = seq.len().div_ceil(bs).saturating_sub(hits.len() as u32);
            if uncached_blocks + self.pool.count_free(&hits) > self.pool.num_free() {
                break;
            }
            let new_blocks = (computed + n).div_ceil(bs) - hits.len() as u32;
            let Some(mut seq) = self.waiting.pop_front() else {
                break;
            };
            for &b in &hits {
                self.pool.acquire(b);
            }
            seq.registered = hits.len();
            seq.blocks = hits;
            seq.num_computed = computed;
            if seq.cached_tokens.is_none() {
                seq.cached_tokens = Some(computed);
                seq.first_scheduled = Some(now);
                self.prefix_queries += u64::from(seq.len());
                self.prefix_hits += u64::from(computed);
            }
            seq.scheduled = n;
            *budget -= n;
            self.running.push(seq);
            let last = self.running.len() - 1;
            self.allocate_into(last, new_blocks);
            self.register_scheduled(last);
        }
    }

    /// Registers the full blocks that running sequence `i` will hold once its scheduled tokens
    /// are computed, announcing them when KV events are recorded.
    fn register_scheduled(&mut self, i: usize) {
        let bs = self.config.block_size;
        let seq = &mut self.running[i];
        let upto = seq.num_computed + seq.scheduled;
        while seq.registered < seq.hashes.len() && (seq.registered as u32 + 1) * bs <= upto {
            let b = seq.registered;
            if let Some(&block) = seq.blocks.get(b)
                && self.pool.register(block, seq.hashes[b])
                && self.pool.records_events()
            {
                let parent = b.checked_sub(1).map(|p| seq.hashes[p]);
                self.pool.stored(parent, seq.hashes[b], &seq.block_tokens(b, bs), bs);
            }
            seq.registered += 1;
        }
    }

    /// Applies the step's results at `end`: computed tokens, one sampled token per sequence that
    /// caught up, finished sequences freed.
    pub fn update(&mut self, end: SimTime, events: &mut Vec<EngineEvent>) {
        let bs = self.config.block_size;
        let mut any_finished = false;
        for seq in &mut self.running {
            if seq.scheduled == 0 {
                continue;
            }
            let n = std::mem::take(&mut seq.scheduled);
            if !seq.is_decode() {
                seq.prefill_computed += n;
            }
            seq.num_computed += n;
            if seq.remaining() > 0 {
                continue; // chunked prefill not done yet
            }
            if let Some((token, index)) = seq.sample(bs) {
                events.push(EngineEvent::Token { id: seq.id, token, index, at: end });
                seq.ready_at = end + seq.token_interval;
            }
            if seq.is_finished() {
                any_finished = true;
                events.push(EngineEvent::Finished {
                    id: seq.id,
                    reason: seq.finish_reason,
                    prompt_tokens: seq.prompt_len,
                    cached_tokens: seq.cached_tokens.unwrap_or(0),
                    completion_tokens: seq.generated,
                    prefill_computed: seq.prefill_computed,
                    first_scheduled: seq.first_scheduled.unwrap_or(end),
                    at: end,
                });
            }
        }
        if any_finished {
            let pool = &mut self.pool;
            self.running.retain(|seq| {
                if seq.is_finished() {
                    pool.release(&seq.blocks);
                    false
                } else {
                    true
                }
            });
        }
    }

    /// Removes a sequence wherever it is, freeing its blocks. False if it was not there.
    pub fn abort(&mut self, id: SeqId) -> bool {
        if let Some(i) = self.running.iter().position(|s| s.id == id) {
            let seq = self.running.remove(i);
            self.pool.release(&seq.blocks);
            return true;
        }
        if let Some(i) = self.waiting.iter().position(|s| s.id == id) {
            self.waiting.remove(i);
            return true;
        }
        false
    }

    /// The earliest time a sequence that is waiting on a fault delay becomes schedulable.
    pub fn next_ready_at(&self, now: SimTime) -> Option<SimTime> {
        self.running.iter().chain(self.waiting.iter()).map(|s| s.ready_at).filter(|&t| t > now).min()
    }

    fn preempt(&mut self, index: usize) {
        let mut seq = self.running.remove(index);
        // Blocks registered for tokens scheduled in this very step hold nothing yet.
        let computed = (seq.num_computed / self.config.block_size) as usize;
        for b in computed..seq.registered {
            if let Some(&block) = seq.blocks.get(b) {
                self.pool.unregister(block);
            }
        }
        self.pool.release(&seq.blocks);
        seq.reset();
        self.preemptions += 1;
        self.waiting.push_front(seq);
    }

    fn allocate_into(&mut self, index: usize, count: u32) {
        for _ in 0..count {
            // Callers checked `num_free` first, so this never runs dry.
            if let Some(b) = self.pool.allocate() {
                self.running[index].blocks.push(b);
            }
        }
    }
}
