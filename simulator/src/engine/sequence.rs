//! One request as the engine tracks it.

use std::sync::Arc;
use std::time::Duration;

use super::prefix_cache::{BlockHash, BlockId};
use super::{SeqId, SeqSpec, SimTime};
use crate::sampling::FinishReason;

#[derive(Debug)]
pub(super) struct Sequence {
    pub id: SeqId,
    /// Shared with the caller (and with other requests for the same prompt): never copied.
    prompt: Arc<[u32]>,
    pub prompt_len: u32,
    /// The tokens the model will produce; the first `generated` of them follow the prompt.
    output: Vec<u32>,
    pub generated: u32,
    /// Tokens whose KV is in this sequence's blocks. Drops to zero on preemption.
    pub num_computed: u32,
    pub blocks: Vec<BlockId>,
    /// Chained hashes of every full block of prompt + generated tokens.
    pub hashes: Vec<BlockHash>,
    /// How many leading blocks are registered in the prefix cache.
    pub registered: usize,
    /// Prompt tokens served from the prefix cache at first admission.
    pub cached_tokens: Option<u32>,
    /// The start of the step that first admitted it.
    pub first_scheduled: Option<SimTime>,
    /// Prefill tokens actually run through the model, recomputation after preemption included.
    pub prefill_computed: u32,
    /// Not scheduled before this time (fault injection: stalls and slow tokens).
    pub ready_at: SimTime,
    pub token_interval: Duration,
    pub finish_reason: FinishReason,
    /// Tokens scheduled in the step being executed.
    pub scheduled: u32,
}

impl Sequence {
    pub fn new(id: SeqId, spec: SeqSpec, block_size: u32) -> Self {
        let prompt_len = spec.prompt.len() as u32;
        let full_blocks = (prompt_len / block_size.max(1)) as usize;
        let hashes = match spec.prompt_hashes {
            Some(h) if h.len() == full_blocks => h.to_vec(),
            _ => Vec::with_capacity(full_blocks + 1),
        };
        let mut seq = Self {
            id,
            prompt: spec.prompt,
            prompt_len,
            output: spec.output,
            generated: 0,
            num_computed: 0,
            blocks: Vec::new(),
            hashes,
            registered: 0,
            cached_tokens: None,
            first_scheduled: None,
            prefill_computed: 0,
            ready_at: spec.ready_at,
            token_interval: spec.token_interval,
            finish_reason: spec.finish_reason,
            scheduled: 0,
        };
        seq.extend_hashes(block_size);
        seq
    }

    /// Prompt plus generated tokens.
    pub fn len(&self) -> u32 {
        self.prompt_len + self.generated
    }

    pub fn output_len(&self) -> u32 {
        self.output.len() as u32
    }

    /// Tokens still to run through the model before the next token can be sampled.
    pub fn remaining(&self) -> u32 {
        self.len().saturating_sub(self.num_computed)
    }

    /// A decode: the prompt is done and only the last sampled token is left to run.
    pub fn is_decode(&self) -> bool {
        self.generated > 0 && self.remaining() == 1
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

    /// The token ids of full block `index`.
    pub fn block_tokens(&self, index: usize, block_size: u32) -> Vec<u32> {
        let bs = block_size as usize;
        let start = index * bs;
        if start + bs <= self.prompt.len() {
            self.prompt[start..start + bs].to_vec()
        } else {
            (start..start + bs).map(|i| self.token(i)).collect()
        }
    }

    fn token(&self, i: usize) -> u32 {
        let p = self.prompt_len as usize;
        if i < p { self.prompt[i] } else { self.output.get(i - p).copied().unwrap_or(0) }
    }

    fn extend_hashes(&mut self, block_size: u32) {
        let bs = block_size.max(1) as usize;
        let len = self.len() as usize;
        while (self.hashes.len() + 1) * bs <= len {
            let start = self.hashes.len() * bs;
            let parent = self.hashes.last().copied();
            let h = if start + bs <= self.prompt.len() {
                BlockHash::chain(parent, &self.prompt[start..start + bs])
            } else {
                let block: Vec<u32> = (start..start + bs).map(|i| self.token(i)).collect();
                BlockHash::chain(parent, &block)
            };
            self.hashes.push(h);
        }
    }
}
