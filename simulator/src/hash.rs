//! Stable hashing for everything that must give the same answer on every run, platform and Rust
//! version: token ids, block hashes, seeds. `std`'s `DefaultHasher` makes no such promise.

/// One round of SplitMix64: a cheap bijective mixer with good avalanche.
pub(crate) fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Folds one value into a running hash.
pub(crate) fn combine(h: u64, x: u64) -> u64 {
    mix(h ^ mix(x))
}

/// Hashes bytes (FNV-1a, then mixed so short strings spread over the whole range).
pub(crate) fn bytes(b: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &byte in b {
        h ^= u64::from(byte);
        h = h.wrapping_mul(0x0000_0100_0000_01B3);
    }
    mix(h)
}

/// Hashes a token sequence under a seed.
pub(crate) fn tokens(seed: u64, ids: &[u32]) -> u64 {
    ids.iter().fold(mix(seed), |h, &id| combine(h, u64::from(id)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_pinned() {
        // If these change, every simulated prompt tokenizes differently: bump deliberately.
        assert_eq!(bytes(b""), mix(0xcbf2_9ce4_8422_2325));
        assert_ne!(tokens(1, &[1, 2]), tokens(1, &[2, 1]));
        assert_ne!(tokens(1, &[1, 2]), tokens(2, &[1, 2]));
        assert_eq!(tokens(7, &[3, 4, 5]), tokens(7, &[3, 4, 5]));
    }
}
