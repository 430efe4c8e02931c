//! Chained block hashes: the prefix index key shared by the gateway, its plugins and the
//! simulator. Block `i`'s hash folds the hash of block `i − 1` with the block's token ids, so two
//! prompts share a block hash exactly when they share everything up to the end of that block.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Chained hash of one full block of tokens and everything before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlockHash(pub u64);

const ROOT: u64 = 0x5151_1CE0;

/// SplitMix64 finaliser: cheap, bijective, good avalanche; stable across platforms and releases.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl BlockHash {
    /// The hash of the block after `parent` (or of the first block) holding `tokens`.
    pub fn chain(parent: Option<BlockHash>, tokens: &[u32]) -> BlockHash {
        let start = parent.map_or(ROOT, |p| p.0);
        BlockHash(tokens.iter().fold(mix(start), |h, &t| mix(h ^ mix(u64::from(t)))))
    }
}

/// Block hashes are already uniformly mixed: a map keyed by them indexes them as they are,
/// without SipHash.
#[derive(Debug, Default, Clone, Copy)]
pub struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 ^= n;
    }
}

/// A map keyed by block hash.
pub type BlockHashMap<V> = HashMap<BlockHash, V, BuildHasherDefault<IdentityHasher>>;

/// Hashes of every full `block_size`-token block of `tokens`; a partial last block has none.
pub fn chain_block_hashes(tokens: &[u32], block_size: u32) -> Vec<BlockHash> {
    let bs = block_size.max(1) as usize;
    let mut out = Vec::with_capacity(tokens.len() / bs);
    let mut parent = None;
    for block in tokens.chunks_exact(bs) {
        let h = BlockHash::chain(parent, block);
        out.push(h);
        parent = Some(h);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_hashes_mean_equal_prefixes() {
        let a: Vec<u32> = (0..40).collect();
        let mut b = a.clone();
        b[20] = 999;
        let (ha, hb) = (chain_block_hashes(&a, 16), chain_block_hashes(&b, 16));
        assert_eq!(ha.len(), 2, "the partial third block has no hash");
        assert_eq!(ha[0], hb[0]);
        assert_ne!(ha[1], hb[1]);
        assert_ne!(BlockHash::chain(Some(ha[0]), &[1]), BlockHash::chain(Some(ha[1]), &[1]));
    }
}
