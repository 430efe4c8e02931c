//! Paged KV blocks with vLLM-style automatic prefix caching.
//!
//! Every full block of a sequence's tokens gets a chained hash (the parent block's hash folded
//! with the block's token ids), so equal hashes mean equal prefixes. A computed full block is
//! registered under its hash; when its last user releases it, it goes to the tail of the free
//! queue *with its contents kept*. A later request whose prefix hashes match takes it back out
//! (a cache hit); a new allocation takes the head of the queue, the least recently freed block,
//! and only then forgets its hash (eviction). So the cache is bounded by KV capacity and evicts
//! LRU, as in vLLM's `BlockPool` + `FreeKVCacheBlockQueue`.

use std::collections::BTreeMap;

use super::kv_events::{self, KvCacheEvent};

type HashIndex = sluice_routing::BlockHashMap<BlockId>;

/// Index of a physical KV block.
pub type BlockId = u32;

/// Chained hash of a full block and everything before it (shared with the gateway's routing).
pub use sluice_routing::BlockHash;

#[derive(Debug)]
pub struct BlockPool {
    ref_count: Vec<u32>,
    hash_of: Vec<Option<BlockHash>>,
    /// Position in the free queue, for blocks that are free.
    free_stamp: Vec<Option<u64>>,
    /// The free queue: stamp order is release order, so the first entry is the LRU block.
    free: BTreeMap<u64, BlockId>,
    next_stamp: u64,
    cached: HashIndex,
    /// Stored and removed blocks since the last [`BlockPool::take_events`], when recording.
    events: Option<Vec<KvCacheEvent>>,
}

impl BlockPool {
    pub fn new(num_blocks: u32) -> Self {
        let n = num_blocks as usize;
        let mut pool = Self {
            ref_count: vec![0; n],
            hash_of: vec![None; n],
            free_stamp: vec![None; n],
            free: BTreeMap::new(),
            next_stamp: 0,
            cached: HashIndex::default(),
            events: None,
        };
        for id in 0..num_blocks {
            pool.push_free(id);
        }
        pool
    }

    pub fn num_blocks(&self) -> u32 {
        self.ref_count.len() as u32
    }

    pub fn num_free(&self) -> u32 {
        self.free.len() as u32
    }

    /// Fraction of blocks held by running sequences (cached-but-free blocks count as free, as in
    /// vLLM's `kv_cache_usage_perc`).
    pub fn usage(&self) -> f64 {
        let total = self.num_blocks();
        if total == 0 {
            return 0.0;
        }
        f64::from(total - self.num_free()) / f64::from(total)
    }

    /// Every hash in the prefix cache index.
    pub fn cached_hashes(&self) -> impl Iterator<Item = BlockHash> + '_ {
        self.cached.keys().copied()
    }

    /// How many leading blocks of `hashes` are cached (a lookup without taking them).
    pub fn cached_prefix_len(&self, hashes: &[BlockHash]) -> usize {
        hashes.iter().take_while(|h| self.cached.contains_key(h)).count()
    }

    /// The blocks holding the longest cached prefix of `hashes`.
    pub fn lookup(&self, hashes: &[BlockHash]) -> Vec<BlockId> {
        hashes.iter().map_while(|h| self.cached.get(h).copied()).collect()
    }

    /// How many of `blocks` sit in the free queue (taking them shrinks what can be allocated).
    pub fn count_free(&self, blocks: &[BlockId]) -> u32 {
        blocks.iter().filter(|&&b| self.free_stamp[b as usize].is_some()).count() as u32
    }

    /// Takes a reference on a cached block found by [`BlockPool::lookup`].
    pub fn acquire(&mut self, block: BlockId) {
        let i = block as usize;
        if let Some(stamp) = self.free_stamp[i].take() {
            self.free.remove(&stamp);
        }
        self.ref_count[i] += 1;
    }

    /// A fresh block from the head of the free queue, evicting whatever it cached.
    pub fn allocate(&mut self) -> Option<BlockId> {
        let (_, block) = self.free.pop_first()?;
        let i = block as usize;
        self.free_stamp[i] = None;
        if let Some(h) = self.hash_of[i].take()
            && self.cached.get(&h) == Some(&block)
        {
            self.cached.remove(&h);
            if let Some(events) = &mut self.events {
                kv_events::push(events, KvCacheEvent::removed(h));
            }
        }
        self.ref_count[i] = 1;
        Some(block)
    }

    /// Drops one reference on each block. Released in reverse so a sequence's tail blocks
    /// (least likely to be shared) are evicted before its head.
    pub fn release(&mut self, blocks: &[BlockId]) {
        for &block in blocks.iter().rev() {
            let i = block as usize;
            self.ref_count[i] = self.ref_count[i].saturating_sub(1);
            if self.ref_count[i] == 0 && self.free_stamp[i].is_none() {
                self.push_free(block);
            }
        }
    }

    /// Registers a computed full block under its hash. A prefix computed twice concurrently keeps
    /// the first copy in the index; the second block simply is not findable (and, since it can
    /// never be evicted from the index either, publishes no event). True if it was registered.
    pub fn register(&mut self, block: BlockId, hash: BlockHash) -> bool {
        let i = block as usize;
        if self.hash_of[i].is_some() {
            return false;
        }
        if let std::collections::hash_map::Entry::Vacant(e) = self.cached.entry(hash) {
            e.insert(block);
            self.hash_of[i] = Some(hash);
            return true;
        }
        false
    }

    /// Takes a registered block back out of the index (its contents were never computed: the
    /// sequence that scheduled it was preempted in the same step). Announced as removed.
    pub fn unregister(&mut self, block: BlockId) {
        let i = block as usize;
        if let Some(h) = self.hash_of[i].take()
            && self.cached.get(&h) == Some(&block)
        {
            self.cached.remove(&h);
            if let Some(events) = &mut self.events {
                kv_events::push(events, KvCacheEvent::removed(h));
            }
        }
    }

    /// Starts recording [`KvCacheEvent`]s (off by default: the virtual-time benchmark reads the
    /// cache directly and should not pay for them).
    pub fn record_events(&mut self) {
        self.events.get_or_insert_with(Vec::new);
    }

    pub fn records_events(&self) -> bool {
        self.events.is_some()
    }

    /// Records that a block registered by [`BlockPool::register`] holds `tokens`.
    pub fn stored(&mut self, parent: Option<BlockHash>, hash: BlockHash, tokens: &[u32], block_size: u32) {
        if let Some(events) = &mut self.events {
            kv_events::push(events, KvCacheEvent::stored(parent, hash, tokens, block_size));
        }
    }

    /// The events recorded since the last call.
    pub fn take_events(&mut self) -> Vec<KvCacheEvent> {
        self.events.as_mut().map(std::mem::take).unwrap_or_default()
    }

    fn push_free(&mut self, block: BlockId) {
        let stamp = self.next_stamp;
        self.next_stamp += 1;
        self.free.insert(stamp, block);
        self.free_stamp[block as usize] = Some(stamp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chained_hashes_depend_on_the_whole_prefix() {
        let a = BlockHash::chain(None, &[1, 2]);
        let b = BlockHash::chain(None, &[9, 9]);
        assert_ne!(BlockHash::chain(Some(a), &[3]), BlockHash::chain(Some(b), &[3]));
        assert_eq!(a, BlockHash::chain(None, &[1, 2]));
    }

    #[test]
    fn freed_blocks_stay_cached_until_evicted_lru() {
        let mut pool = BlockPool::new(3);
        let h: Vec<BlockHash> = (0..3).map(BlockHash).collect();
        let blocks: Vec<BlockId> = (0..2).map(|_| pool.allocate().unwrap()).collect();
        pool.register(blocks[0], h[0]);
        pool.register(blocks[1], h[1]);
        assert!((pool.usage() - 2.0 / 3.0).abs() < 1e-9);
        pool.release(&blocks);
        assert_eq!(pool.num_free(), 3);
        assert_eq!(pool.usage(), 0.0);
        assert_eq!(pool.lookup(&h), blocks, "both still cached after release");

        // Allocation takes the never-used block first, then the LRU one: blocks[1] was released
        // first (reverse order), so it is evicted before blocks[0].
        let fresh = pool.allocate().unwrap();
        assert!(!blocks.contains(&fresh));
        assert_eq!(pool.allocate(), Some(blocks[1]));
        assert_eq!(pool.lookup(&h), vec![blocks[0]]);
    }

    #[test]
    fn acquiring_a_cached_block_removes_it_from_the_free_queue() {
        let mut pool = BlockPool::new(2);
        let b = pool.allocate().unwrap();
        pool.register(b, BlockHash(7));
        pool.release(&[b]);
        assert_eq!(pool.count_free(&[b]), 1);
        pool.acquire(b);
        assert_eq!(pool.num_free(), 1);
        assert_ne!(pool.allocate(), Some(b));
        assert_eq!(pool.allocate(), None, "pool exhausted");
    }
}
