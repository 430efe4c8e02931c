//! Workload generators for the routing benchmark. A workload is a list of requests (prompt as
//! shared token ids with their block hashes computed once per prompt, output length, arrival)
//! and the stages it is reported by.

use std::sync::Arc;

use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use sluice_routing::{BlockHash, chain_block_hashes};

use crate::hash;
use crate::tokenizer::{Tokenizer, VOCAB_SIZE};

/// One reporting stage: a nominal rate held for a duration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stage {
    pub start_s: f64,
    pub duration_s: f64,
    /// Requests per second offered during the stage.
    pub qps: f64,
}

/// When a request is sent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Arrival {
    /// At a fixed time (seconds from the start).
    At(f64),
    /// `think_s` after request `prev` finished (the next turn of a chat session).
    After { prev: usize, think_s: f64 },
}

#[derive(Debug, Clone)]
pub struct BenchRequest {
    pub arrival: Arrival,
    pub prompt: Arc<[u32]>,
    pub hashes: Arc<[BlockHash]>,
    pub output_len: u32,
    /// The stage it is reported under.
    pub stage: usize,
}

#[derive(Debug, Clone, Default)]
pub struct Workload {
    pub requests: Vec<BenchRequest>,
    pub stages: Vec<Stage>,
}

/// The inference-perf `shared_prefix` generator's parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct SharedPrefix {
    pub groups: u32,
    pub prompts_per_group: u32,
    pub system_prompt_len: u32,
    pub question_len: u32,
    pub output_len: u32,
    /// `(qps, duration_s)` per stage.
    pub ladder: Vec<(f64, f64)>,
}

/// Deterministic token ids in the tokenizer's word range, a pure function of `(seed, key, i)`.
pub(crate) fn tokens(seed: u64, key: u64, len: u32) -> Vec<u32> {
    let first = Tokenizer::new().first_word_id();
    let span = u64::from(VOCAB_SIZE - first);
    let base = hash::combine(seed, key);
    (0..len).map(|i| first + (hash::combine(base, u64::from(i)) % span) as u32).collect()
}

/// The output the simulated model produces for request `index` (known up front, so multi-turn
/// prompts can contain earlier answers).
pub(crate) fn output_tokens(seed: u64, index: usize, len: u32) -> Vec<u32> {
    tokens(!seed, index as u64, len)
}

struct Prompts {
    block_size: u32,
}

impl Prompts {
    fn make(&self, tokens: Vec<u32>) -> (Arc<[u32]>, Arc<[BlockHash]>) {
        let hashes: Arc<[BlockHash]> = chain_block_hashes(&tokens, self.block_size).into();
        (tokens.into(), hashes)
    }
}

/// Poisson arrival times for each stage of a ladder; returns `(time, stage)` pairs and stages.
fn poisson_ladder(rng: &mut SmallRng, ladder: &[(f64, f64)]) -> (Vec<(f64, usize)>, Vec<Stage>) {
    let mut times = Vec::new();
    let mut stages = Vec::new();
    let mut start = 0.0;
    for (s, &(qps, duration)) in ladder.iter().enumerate() {
        stages.push(Stage { start_s: start, duration_s: duration, qps });
        if qps > 0.0 {
            let mut t = start;
            loop {
                let u: f64 = rng.random_range(f64::EPSILON..1.0);
                t += -u.ln() / qps;
                if t >= start + duration {
                    break;
                }
                times.push((t, s));
            }
        }
        start += duration;
    }
    (times, stages)
}

/// inference-perf `shared_prefix`: G groups × P prompts (system prompt shared per group, its own
/// question), a fixed pool of G·P prompts shuffled once, request i uses prompt i mod G·P,
/// Poisson arrivals over a stepped QPS ladder.
pub fn shared_prefix(p: &SharedPrefix, block_size: u32, seed: u64) -> Workload {
    let maker = Prompts { block_size };
    let mut pool = Vec::with_capacity((p.groups * p.prompts_per_group) as usize);
    for g in 0..p.groups {
        let system = tokens(seed, u64::from(g) << 32, p.system_prompt_len);
        for q in 0..p.prompts_per_group {
            let mut prompt = system.clone();
            prompt.extend(tokens(seed, (u64::from(g) << 32) | u64::from(q + 1), p.question_len));
            pool.push(maker.make(prompt));
        }
    }
    let mut rng = SmallRng::seed_from_u64(hash::combine(seed, 0x5eed));
    pool.shuffle(&mut rng);
    let (times, stages) = poisson_ladder(&mut rng, &p.ladder);
    let requests = times
        .into_iter()
        .enumerate()
        .filter_map(|(i, (t, stage))| {
            let (prompt, hashes) = pool.get(i % pool.len().max(1))?.clone();
            Some(BenchRequest { arrival: Arrival::At(t), prompt, hashes, output_len: p.output_len, stage })
        })
        .collect();
    Workload { requests, stages }
}

/// Multi-turn chat: sessions start as a Poisson process per stage; every session shares one
/// system prompt, and each turn's prompt is the whole conversation so far (earlier questions and
/// the model's answers) plus a new question, sent `think_s` after the previous answer finished.
#[allow(clippy::too_many_arguments)]
pub fn multi_turn(
    ladder: &[(f64, f64)],
    turns: u32,
    system_len: u32,
    question_len: u32,
    output_len: u32,
    think_s: f64,
    block_size: u32,
    seed: u64,
) -> Workload {
    let maker = Prompts { block_size };
    let mut rng = SmallRng::seed_from_u64(hash::combine(seed, 0x7a1c));
    let (starts, stages) = poisson_ladder(&mut rng, ladder);
    let system = tokens(seed, 0xC0FFEE, system_len);
    let mut requests = Vec::new();
    for (session, (t, stage)) in starts.into_iter().enumerate() {
        let mut convo = system.clone();
        let mut prev = None;
        for turn in 0..turns {
            convo.extend(tokens(seed, ((session as u64) << 20) | u64::from(turn) | 1 << 63, question_len));
            let (prompt, hashes) = maker.make(convo.clone());
            let index = requests.len();
            let arrival = match prev {
                None => Arrival::At(t),
                Some(prev) => Arrival::After { prev, think_s },
            };
            requests.push(BenchRequest { arrival, prompt, hashes, output_len, stage });
            convo.extend(output_tokens(seed, index, output_len));
            prev = Some(index);
        }
    }
    Workload { requests, stages }
}

/// The control: every prompt unique (no reuse at all), lengths uniform in `prompt_len`.
pub fn no_reuse(
    ladder: &[(f64, f64)],
    prompt_len: (u32, u32),
    output_len: u32,
    block_size: u32,
    seed: u64,
) -> Workload {
    let maker = Prompts { block_size };
    let mut rng = SmallRng::seed_from_u64(hash::combine(seed, 0x0e05));
    let (times, stages) = poisson_ladder(&mut rng, ladder);
    let requests = times
        .into_iter()
        .enumerate()
        .map(|(i, (t, stage))| {
            let len = rng.random_range(prompt_len.0..=prompt_len.1.max(prompt_len.0));
            let (prompt, hashes) = maker.make(tokens(seed, 0xA000_0000_0000 | i as u64, len));
            BenchRequest { arrival: Arrival::At(t), prompt, hashes, output_len, stage }
        })
        .collect();
    Workload { requests, stages }
}

/// Bursts of siblings: each burst is `size` requests sent within `spread_s`, all sharing one long
/// prefix (new for every burst) with a short suffix of their own. One stage per burst size, with
/// `bursts` bursts spaced `gap_s` apart.
#[allow(clippy::too_many_arguments)]
pub fn burst(
    sizes: &[u32],
    bursts: u32,
    gap_s: f64,
    spread_s: f64,
    prefix_len: u32,
    suffix_len: u32,
    output_len: u32,
    block_size: u32,
    seed: u64,
) -> Workload {
    let maker = Prompts { block_size };
    let mut rng = SmallRng::seed_from_u64(hash::combine(seed, 0xB0B5));
    let mut requests = Vec::new();
    let mut stages = Vec::new();
    let mut t0 = 0.0;
    for (stage, &size) in sizes.iter().enumerate() {
        let duration = gap_s * f64::from(bursts);
        stages.push(Stage { start_s: t0, duration_s: duration, qps: f64::from(size * bursts) / duration });
        for b in 0..bursts {
            let key = ((stage as u64) << 40) | (u64::from(b) << 20);
            let prefix = tokens(seed, key, prefix_len);
            let at = t0 + gap_s * f64::from(b);
            for k in 0..size {
                let mut prompt = prefix.clone();
                prompt.extend(tokens(seed, key | u64::from(k + 1), suffix_len));
                let (prompt, hashes) = maker.make(prompt);
                let jitter = rng.random_range(0.0..=spread_s.max(0.0));
                requests.push(BenchRequest { arrival: Arrival::At(at + jitter), prompt, hashes, output_len, stage });
            }
        }
        t0 += duration;
    }
    Workload { requests, stages }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_prefix_reuses_a_shuffled_pool_round_robin() {
        let p = SharedPrefix {
            groups: 3,
            prompts_per_group: 2,
            system_prompt_len: 64,
            question_len: 16,
            output_len: 4,
            ladder: vec![(50.0, 2.0)],
        };
        let w = shared_prefix(&p, 16, 1);
        assert!(w.requests.len() > 50, "{}", w.requests.len());
        for (i, r) in w.requests.iter().enumerate().skip(6) {
            assert_eq!(r.prompt, w.requests[i - 6].prompt, "request i uses prompt i mod G·P");
        }
        let distinct_systems: std::collections::HashSet<_> = w.requests.iter().map(|r| r.hashes[3]).collect();
        assert_eq!(distinct_systems.len(), 3, "the first 64 tokens identify the group");
        assert_eq!(w.requests[0].hashes.len(), 5);
        assert_eq!(shared_prefix(&p, 16, 1).requests.len(), w.requests.len(), "seeded");
    }

    #[test]
    fn multi_turn_prompts_extend_the_previous_turn() {
        let w = multi_turn(&[(1.0, 5.0)], 3, 32, 8, 8, 1.0, 16, 2);
        let (a, b) = (&w.requests[0], &w.requests[1]);
        assert_eq!(b.arrival, Arrival::After { prev: 0, think_s: 1.0 });
        assert_eq!(&b.prompt[..a.prompt.len()], &a.prompt[..]);
        assert_eq!(&b.prompt[a.prompt.len()..a.prompt.len() + 8], &output_tokens(2, 0, 8)[..]);
    }
}
