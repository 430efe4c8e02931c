//! The prefix cache's hot operations on an 8k-token prompt (512 blocks of 16) with a warm cache
//! of 28,000 blocks (the `llama-8b-h100` profile's size), as the engine runs them at admission:
//! hashing the prompt, looking its blocks up, taking the hits out of the free queue, and
//! computing and registering a prompt that missed (evicting LRU blocks to make room).
//!
//! `cargo bench -p sluice-sim --bench prefix_cache`

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a benchmark program")]

use std::hint::black_box;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use sluice_routing::{BlockHash, chain_block_hashes};
use sluice_sim::engine::prefix_cache::{BlockId, BlockPool};

const BLOCK: u32 = 16;
const PROMPT: u32 = 8192;
const CAPACITY: u32 = 28_000;
/// Distinct prompts cycled through by the insert benchmark: more than the cache holds (54 × 512
/// blocks), so every insert is a miss that evicts.
const ROTATION: u32 = 64;

fn prompt(seed: u32) -> Vec<u32> {
    (0..PROMPT).map(|i| 1 + (seed.wrapping_mul(7919).wrapping_add(i * 31)) % 31_000).collect()
}

/// Computes and caches `hashes` as a finished request leaves them: registered, then released.
fn insert(pool: &mut BlockPool, hashes: &[BlockHash]) {
    let blocks: Vec<BlockId> = hashes.iter().map(|_| pool.allocate().unwrap()).collect();
    for (&b, &h) in blocks.iter().zip(hashes) {
        pool.register(b, h);
    }
    pool.release(&blocks);
}

/// A full cache: the prompt under test among other prompts' blocks.
fn warm_pool(target: &[BlockHash]) -> BlockPool {
    let mut pool = BlockPool::new(CAPACITY);
    for seed in 1..50 {
        insert(&mut pool, &chain_block_hashes(&prompt(10_000 + seed), BLOCK));
    }
    insert(&mut pool, target);
    pool
}

fn prefix_cache(c: &mut Criterion) {
    let tokens = prompt(0);
    let hashes = chain_block_hashes(&tokens, BLOCK);
    assert_eq!(hashes.len(), 512);
    let mut pool = warm_pool(&hashes);
    assert_eq!(pool.cached_prefix_len(&hashes), 512);

    let mut g = c.benchmark_group("prefix_cache 8k prompt, warm 28k-block cache");
    g.bench_function("hash prompt (512 chained block hashes)", |b| {
        b.iter(|| chain_block_hashes(black_box(&tokens), BLOCK))
    });
    g.bench_function("cached prefix length (routing overlap)", |b| {
        b.iter(|| pool.cached_prefix_len(black_box(&hashes)))
    });
    g.bench_function("lookup (hit blocks)", |b| b.iter(|| pool.lookup(black_box(&hashes))));
    g.bench_function("admit hit: lookup + acquire + release", |b| {
        b.iter(|| {
            let hits = pool.lookup(black_box(&hashes));
            for &h in &hits {
                pool.acquire(h);
            }
            pool.release(&hits);
        })
    });

    let rotation: Vec<Vec<BlockHash>> = (0..ROTATION).map(|s| chain_block_hashes(&prompt(100 + s), BLOCK)).collect();
    let mut pool = BlockPool::new(CAPACITY);
    for h in &rotation {
        insert(&mut pool, h); // the cache is now full of rotation prompts, oldest evicted
    }
    let mut next = 0usize;
    g.bench_function("insert miss: allocate (evicting) + register + release", |b| {
        b.iter_batched(
            || {
                next = (next + 1) % rotation.len();
                next
            },
            |i| insert(&mut pool, &rotation[i]),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, prefix_cache);
criterion_main!(benches);
