//! The host's prefix index: which workers of a pool are believed to hold which prompt blocks.
//!
//! Two kinds of knowledge go in:
//! - **exact**, from the engine's own KV events (`stored`, `removed`, `cleared`): kept until the
//!   engine reports the block gone, or the index forgets it to stay within its bound;
//! - **speculative**, written by the host when it routes a request ([`PrefixIndex::speculate`]):
//!   the worker will hold the prompt's blocks once it has computed them, but its events arrive
//!   only after that. Without the guess, a burst of requests sharing a prefix would all see a
//!   cold pool and scatter. A guess lives for a short TTL; the engine's events replace it.
//!
//! Memory is bounded by a block count: past it, the least recently written blocks are forgotten
//! (an eighth of the index at a time, so the cost is amortised over the writes that caused it).
//! Forgetting a block only makes routing less informed, never wrong.
//!
//! Time is passed in by the caller (`now`, from any fixed origin), so the index runs the same in
//! the gateway and in the simulator's virtual time.

use std::time::Duration;

use crate::BlockHash;
use crate::hash::BlockHashMap;

/// A worker's index within its pool, chosen by the host.
pub type WorkerIndex = u32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Holder {
    worker: WorkerIndex,
    /// `None`: reported by the engine. `Some(t)`: a guess, believed until `t`.
    until: Option<Duration>,
}

#[derive(Debug, Default)]
struct Entry {
    holders: Vec<Holder>,
    /// Write sequence number of the last write: the eviction order.
    touched: u64,
}

/// Counts for metrics and reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IndexStats {
    /// Distinct blocks remembered.
    pub blocks: usize,
    /// Blocks forgotten to stay within the bound, since the index was made.
    pub forgotten: u64,
}

/// Per pool: block hash → the workers holding it. Not thread-safe by itself; the gateway keeps
/// one per pool behind a lock, the simulator one per run.
#[derive(Debug)]
pub struct PrefixIndex {
    blocks: BlockHashMap<Entry>,
    /// Exact blocks per worker (index = worker), kept as entries change.
    exact: Vec<u64>,
    capacity: usize,
    speculative_ttl: Duration,
    clock: u64,
    forgotten: u64,
}

impl PrefixIndex {
    /// An index remembering at most `capacity` blocks (at least one), whose guesses live for
    /// `speculative_ttl`.
    pub fn new(capacity: usize, speculative_ttl: Duration) -> Self {
        Self {
            blocks: BlockHashMap::default(),
            exact: Vec::new(),
            capacity: capacity.max(1),
            speculative_ttl,
            clock: 0,
            forgotten: 0,
        }
    }

    pub fn stats(&self) -> IndexStats {
        IndexStats { blocks: self.blocks.len(), forgotten: self.forgotten }
    }

    fn count(exact: &mut Vec<u64>, worker: WorkerIndex, up: bool) {
        let w = worker as usize;
        if exact.len() <= w {
            exact.resize(w + 1, 0);
        }
        exact[w] = if up { exact[w] + 1 } else { exact[w].saturating_sub(1) };
    }

    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    /// The engine reports `hashes` stored on `worker`.
    pub fn stored(&mut self, worker: WorkerIndex, hashes: &[BlockHash]) {
        let t = self.tick();
        for &h in hashes {
            let e = self.blocks.entry(h).or_default();
            e.touched = t;
            match e.holders.iter_mut().find(|x| x.worker == worker) {
                Some(Holder { until: None, .. }) => continue,
                Some(x) => x.until = None,
                None => e.holders.push(Holder { worker, until: None }),
            }
            Self::count(&mut self.exact, worker, true);
        }
        self.bound();
    }

    /// The host routed a request with these blocks to `worker`: believe it holds them until the
    /// guess expires (an exact entry stays exact).
    pub fn speculate(&mut self, worker: WorkerIndex, hashes: &[BlockHash], now: Duration) {
        let t = self.tick();
        let until = now.saturating_add(self.speculative_ttl);
        for &h in hashes {
            let e = self.blocks.entry(h).or_default();
            e.touched = t;
            match e.holders.iter_mut().find(|x| x.worker == worker) {
                Some(Holder { until: Some(u), .. }) => *u = (*u).max(until),
                Some(Holder { until: None, .. }) => {}
                None => e.holders.push(Holder { worker, until: Some(until) }),
            }
        }
        self.bound();
    }

    /// The engine evicted `hashes` on `worker`.
    pub fn removed(&mut self, worker: WorkerIndex, hashes: &[BlockHash]) {
        for h in hashes {
            if let Some(e) = self.blocks.get_mut(h) {
                let exact = &mut self.exact;
                e.holders.retain(|x| {
                    let keep = x.worker != worker;
                    if !keep && x.until.is_none() {
                        Self::count(exact, worker, false);
                    }
                    keep
                });
                if e.holders.is_empty() {
                    self.blocks.remove(h);
                }
            }
        }
    }

    /// `worker` lost everything (its cache was reset, it restarted, or it left the pool).
    pub fn cleared(&mut self, worker: WorkerIndex) {
        if let Some(n) = self.exact.get_mut(worker as usize) {
            *n = 0;
        }
        self.blocks.retain(|_, e| {
            e.holders.retain(|x| x.worker != worker);
            !e.holders.is_empty()
        });
    }

    /// For each worker `w < out.len()`, the number of leading blocks of `hashes` it is believed
    /// to hold at `now`, written to `out[w]`.
    pub fn overlaps(&self, hashes: &[BlockHash], now: Duration, out: &mut [u32]) {
        out.iter_mut().for_each(|o| *o = 0);
        for (depth, h) in hashes.iter().enumerate() {
            let Some(e) = self.blocks.get(h) else { break };
            let mut any = false;
            for x in &e.holders {
                let live = x.until.is_none_or(|u| now < u);
                if let Some(o) = out.get_mut(x.worker as usize)
                    && live
                    && *o as usize == depth
                {
                    *o += 1;
                    any = true;
                }
            }
            if !any {
                break;
            }
        }
    }

    /// Blocks the engine reported `worker` holds (guesses not counted): the size of its cache as
    /// the index knows it.
    pub fn exact_blocks(&self, worker: WorkerIndex) -> u64 {
        self.exact.get(worker as usize).copied().unwrap_or(0)
    }

    /// Over capacity: forget the least recently written eighth.
    fn bound(&mut self) {
        if self.blocks.len() <= self.capacity {
            return;
        }
        let excess = self.blocks.len() - self.capacity;
        let drop = excess.max(self.capacity / 8).min(self.blocks.len());
        let mut ages: Vec<u64> = self.blocks.values().map(|e| e.touched).collect();
        let (_, cut, _) = ages.select_nth_unstable(drop - 1);
        let cut = *cut;
        let before = self.blocks.len();
        let exact = &mut self.exact;
        self.blocks.retain(|_, e| {
            let keep = e.touched > cut;
            if !keep {
                for x in e.holders.iter().filter(|x| x.until.is_none()) {
                    Self::count(exact, x.worker, false);
                }
            }
            keep
        });
        self.forgotten += (before - self.blocks.len()) as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hashes(prefix: u64, n: u64) -> Vec<BlockHash> {
        (0..n).map(|i| BlockHash(prefix * 1_000 + i)).collect()
    }

    const SEC: Duration = Duration::from_secs(1);

    #[test]
    fn overlap_counts_leading_blocks_per_worker() {
        let mut ix = PrefixIndex::new(1_000, SEC);
        let a = hashes(1, 6);
        ix.stored(0, &a[..4]);
        ix.stored(1, &a[..2]);
        ix.stored(2, &a[1..5]); // not from the start: no overlap
        let mut out = [9; 4];
        ix.overlaps(&a, Duration::ZERO, &mut out);
        assert_eq!(out, [4, 2, 0, 0]);
        ix.removed(0, &a[2..3]);
        ix.overlaps(&a, Duration::ZERO, &mut out);
        assert_eq!(out, [2, 2, 0, 0], "a gap ends the prefix");
        ix.cleared(1);
        ix.overlaps(&a, Duration::ZERO, &mut out);
        assert_eq!(out, [2, 0, 0, 0]);
    }

    #[test]
    fn guesses_expire_and_events_make_them_exact() {
        let mut ix = PrefixIndex::new(1_000, SEC);
        let a = hashes(2, 3);
        ix.speculate(3, &a, Duration::ZERO);
        let mut out = [0; 4];
        ix.overlaps(&a, Duration::from_millis(999), &mut out);
        assert_eq!(out[3], 3);
        ix.overlaps(&a, SEC, &mut out);
        assert_eq!(out[3], 0, "expired");
        ix.speculate(3, &a, Duration::ZERO);
        ix.stored(3, &a[..2]);
        ix.overlaps(&a, 10 * SEC, &mut out);
        assert_eq!(out[3], 2, "the stored blocks stay, the guessed one expired");
        ix.speculate(3, &a, 10 * SEC);
        ix.overlaps(&a, 100 * SEC, &mut out);
        assert_eq!(out[3], 2, "a guess never downgrades an exact entry");
        assert_eq!(ix.exact_blocks(3), 2);
        ix.removed(3, &a[..1]);
        assert_eq!(ix.exact_blocks(3), 1);
        ix.cleared(3);
        assert_eq!(ix.exact_blocks(3), 0);
    }

    #[test]
    fn stays_within_its_bound_forgetting_the_oldest() {
        let mut ix = PrefixIndex::new(64, SEC);
        let old = hashes(3, 32);
        ix.stored(0, &old);
        for p in 4..20 {
            ix.stored(1, &hashes(p, 8));
        }
        let s = ix.stats();
        assert!(s.blocks <= 64, "{s:?}");
        assert!(s.forgotten >= 32 + 16 * 8 - 64);
        let mut out = [0; 2];
        ix.overlaps(&old, Duration::ZERO, &mut out);
        assert_eq!(out[0], 0, "the oldest blocks went first");
        ix.overlaps(&hashes(19, 8), Duration::ZERO, &mut out);
        assert_eq!(out[1], 8, "the newest stayed");
        assert_eq!(ix.exact_blocks(0) + ix.exact_blocks(1), s.blocks as u64);
    }

    #[test]
    fn workers_outside_the_output_are_ignored() {
        let mut ix = PrefixIndex::new(16, SEC);
        let a = hashes(5, 2);
        ix.stored(7, &a);
        let mut out = [0; 2];
        ix.overlaps(&a, Duration::ZERO, &mut out);
        assert_eq!(out, [0, 0]);
    }
}
