//! `SemanticIndex::nearest` with 100,000 entries in one namespace, at 256 dimensions and at the
//! simulator's 384, over n-gram embeddings of synthetic requests. Criterion measures the mean;
//! the percentiles the cache's target is stated in (p99 < 2 ms), wall-clock and on CPU, and the
//! memory per entry (as the index counts it, and as the process's resident size grew) are
//! printed before it.
//!
//! `cargo bench -p sluice-semantic --bench lookup` (building each index takes a minute or two).

#![allow(
    clippy::expect_used,
    clippy::print_stderr,
    reason = "a benchmark program that reports what criterion does not"
)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use cpu_time::ThreadTime;
use criterion::{Criterion, criterion_group, criterion_main};
use sluice_semantic::ngram::embed;
use sluice_semantic::{DEFAULT_THRESHOLD, EntryId, IndexConfig, SemanticIndex};

const ENTRIES: usize = 100_000;
const QUERIES: usize = 10_000;

/// A fixed xorshift, so every run indexes the same requests.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Pronounceable made-up words, so the n-grams behave like a language's and not like noise.
fn vocabulary(rng: &mut Rng, size: usize) -> Vec<String> {
    const SYLLABLES: [&str; 24] = [
        "ka", "lo", "mi", "ran", "te", "su", "vel", "or", "pin", "da", "qua", "ne", "sto", "ri", "bel", "um", "tra",
        "go", "fen", "li", "mor", "ca", "zu", "ex",
    ];
    (0..size).map(|_| (0..2 + rng.below(3)).map(|_| SYLLABLES[rng.below(SYLLABLES.len())]).collect()).collect()
}

fn request(rng: &mut Rng, words: &[String]) -> String {
    let len = 6 + rng.below(10);
    // Zipf-like: most words come from the common end of the vocabulary.
    (0..len)
        .map(|_| {
            let common = 1 + rng.below(words.len());
            words[rng.below(common)].as_str()
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn entry_id(n: usize) -> EntryId {
    let mut id = [0u8; 32];
    id[..8].copy_from_slice(&(n as u64).to_le_bytes());
    id
}

fn resident_bytes() -> Option<usize> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: usize = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

struct Setup {
    index: SemanticIndex,
    queries: Vec<Vec<f32>>,
}

fn build(dim: usize) -> Setup {
    let mut rng = Rng(0x5eed_0000 + dim as u64);
    let words = vocabulary(&mut rng, 5_000);
    let texts: Vec<String> = (0..ENTRIES).map(|_| request(&mut rng, &words)).collect();
    let vectors: Vec<Vec<f32>> = texts.iter().map(|t| embed(t, dim)).collect();
    let config = IndexConfig { max_entries_per_namespace: ENTRIES, max_entries: ENTRIES, ..IndexConfig::default() };
    let index = SemanticIndex::new(config).expect("a valid config");
    let before = resident_bytes();
    let (started, on_cpu) = (Instant::now(), ThreadTime::now());
    for (n, (text, vector)) in texts.iter().zip(&vectors).enumerate() {
        index.insert("tenant/model", entry_id(n), vector, text).expect("insert");
    }
    let (insert_wall, insert_cpu) = (started.elapsed() / ENTRIES as u32, on_cpu.elapsed() / ENTRIES as u32);
    let resident = before.zip(resident_bytes()).map(|(b, a)| a.saturating_sub(b) / ENTRIES);
    let stats = index.stats();
    eprintln!(
        "dim {dim}: {} entries, insert {insert_wall:?} each ({insert_cpu:?} on CPU); memory per entry {} B counted ({} B of it text), {} B resident",
        stats.entries,
        stats.bytes / stats.entries.max(1),
        texts.iter().map(String::len).sum::<usize>() / ENTRIES,
        resident.map_or_else(|| "?".to_owned(), |r| r.to_string()),
    );
    // Half the queries are edits of stored requests (hits), half new requests (misses).
    let queries = (0..QUERIES)
        .map(|q| {
            if q % 2 == 0 {
                let mut t: Vec<&str> = texts[rng.below(ENTRIES)].split(' ').collect();
                let at = rng.below(t.len());
                t[at] = &words[rng.below(words.len())];
                embed(&t.join(" "), dim)
            } else {
                embed(&request(&mut rng, &words), dim)
            }
        })
        .collect();
    Setup { index, queries }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".to_owned())
}

/// Wall-clock and on-CPU percentiles: on a machine shared with other work the wall clock's tail
/// is the scheduler's, the time on CPU is the search's.
fn percentiles(setup: &Setup, dim: usize) {
    let mut wall: Vec<Duration> = Vec::with_capacity(setup.queries.len());
    let mut cpu: Vec<Duration> = Vec::with_capacity(setup.queries.len());
    let mut hits = 0;
    for query in &setup.queries {
        let (started, on_cpu) = (Instant::now(), ThreadTime::now());
        let found = setup.index.nearest("tenant/model", query, DEFAULT_THRESHOLD).expect("search");
        cpu.push(on_cpu.elapsed());
        wall.push(started.elapsed());
        hits += usize::from(!found.is_empty());
    }
    let at = |times: &mut Vec<Duration>, p: f64| {
        times.sort_unstable();
        times[((times.len() as f64 * p) as usize).min(times.len() - 1)]
    };
    eprintln!(
        "dim {dim}: nearest() over {} queries, load average {}: wall p50 {:?} p99 {:?}; on CPU p50 {:?} p99 {:?}; {hits} above the threshold",
        wall.len(),
        load_average(),
        at(&mut wall, 0.50),
        at(&mut wall, 0.99),
        at(&mut cpu, 0.50),
        at(&mut cpu, 0.99),
    );
}

fn lookup(c: &mut Criterion) {
    for dim in [256, 384] {
        let setup = build(dim);
        percentiles(&setup, dim);
        let mut i = 0;
        c.bench_function(&format!("nearest_100k_dim{dim}"), |b| {
            b.iter(|| {
                i = (i + 1) % setup.queries.len();
                black_box(setup.index.nearest("tenant/model", &setup.queries[i], DEFAULT_THRESHOLD))
            })
        });
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(50);
    targets = lookup
}
criterion_main!(benches);
