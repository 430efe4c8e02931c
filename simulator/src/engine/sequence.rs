//! One request as the engine tracks it.

use std::time::Duration;

use super::prefix_cache::{BlockHash, BlockId};
use super::{SeqId, SeqSpec, SimTime};
use crate::sampling::FinishReason;

#[derive(Debug)]
pub(super) struct Sequence {
    pub id: SeqId,
    /// Prompt followed by the tokens generated so far.
    pub tokens: Vec<u32>,
    pub prompt_len: u32,
    output: Vec<u32>,
    pub generated: u32,
    /// Tokens whose KV is in this sequence's blocks. Drops to zero on preemption.
    pub num_computed: u32,
    pub blocks: Vec<BlockId>,
    /// Chained hashes of every full block of `tokens`.
    pub hashes: Vec<BlockHash>,
    /// How many leading blocks are registered in the prefix cache.
    pub registered: usize,
    /// Prompt tokens served from the prefix cache at first admission.
    pub cached_tokens: Option<u32>,
    /// Not scheduled before this time (fault injection: stalls and slow tokens).
    pub ready_at: SimTime,
    pub token_interval: Duration,
    pub finish_reason: FinishReason,
    /// Tokens scheduled in the step being executed.
    pub scheduled: u32,
}

impl Sequence {
    pub fn new(id: SeqId, spec: SeqSpec, block_size: u32) -> Self {
        let mut seq = Self {
            id,
            prompt_len: spec.prompt.len() as u32,
            tokens: spec.prompt,
            output: spec.output,
            generated: 0,
            num_computed: 0,
            blocks: Vec::new(),
            hashes: Vec::new(),
            registered: 0,
            cached_tokens: None,
            ready_at: spec.ready_at,
            token_interval: spec.token_interval,
            finish_reason: spec.finish_reason,
            scheduled: 0,
        };
        seq.extend_hashes(block_size);
        seq
    }

    pub fn len(&self) -> u32 {
        self.tokens.len() as u32
    }

    pub fn output_len(&self) -> u32 {
        self.output.len() as u32
    }

    /// Tokens still to run through the model before the next token can be sampled.
    pub fn remaining(&self) -> u32 {
        self.len().saturating_sub(self.num_computed)
    }

    /// Blocks to allocate so `new_tokens` more tokens fit.
    pub fn blocks_needed(&self, new_tokens: u32, block_size: u32) -> u32 {
        (self.num_computed + new_tokens).div_ceil(block_size).saturating_sub(self.blocks.len() as u32)
    }

    pub fn is_finished(&self) -> bool {
        self.generated >= self.output_len()
    }

    /// Appends the next output token, returning it and its index.
    pub fn sample(&mut self, block_size: u32) -> Option<(u32, u32)> {
        let token = *self.output.get(self.generated as usize)?;
        let index = self.generated;
        self.generated += 1;
        self.tokens.push(token);
        self.extend_hashes(block_size);
        Some((token, index))
    }

    /// Forgets computed state, as vLLM's recompute preemption does.
    pub fn reset(&mut self) {
        self.num_computed = 0;
        self.blocks.clear();
        self.registered = 0;
        self.scheduled = 0;
    }

    fn extend_hashes(&mut self, block_size: u32) {
        let bs = block_size as usize;
        while (self.hashes.len() + 1) * bs <= self.tokens.len() {
            let start = self.hashes.len() * bs;
            let parent = self.hashes.last().copied();
            self.hashes.push(BlockHash::chain(parent, &self.tokens[start..start + bs]));
        }
    }
}
