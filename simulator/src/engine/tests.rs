use std::time::Duration;

use super::latency::{LatencyConfig, PolynomialLatency};
use super::*;

fn engine(config: EngineConfig) -> Engine {
    Engine::new(config, Box::new(PolynomialLatency::new(LatencyConfig::default())))
}

fn spec(prompt: Vec<u32>, out: u32) -> SeqSpec {
    SeqSpec {
        prompt: prompt.into(),
        prompt_hashes: None,
        output: (0..out).map(|i| 1000 + i).collect(),
        finish_reason: FinishReason::Length,
        ready_at: Duration::ZERO,
        token_interval: Duration::ZERO,
    }
}

fn prompt(seed: u32, len: u32) -> Vec<u32> {
    (0..len).map(|i| seed * 10_000 + i).collect()
}

/// Steps until idle; returns every event and the final time.
fn run(e: &mut Engine, mut now: SimTime) -> (Vec<EngineEvent>, SimTime) {
    let mut events = Vec::new();
    for _ in 0..100_000 {
        match e.step(now) {
            Some(out) => {
                now += out.duration;
                events.extend(out.events);
            }
            None => match e.next_ready_at(now) {
                Some(t) => now = t,
                None => break,
            },
        }
    }
    (events, now)
}

fn finished(events: &[EngineEvent], id: u64) -> Option<(u32, u32)> {
    events.iter().find_map(|e| match e {
        EngineEvent::Finished { id: SeqId(i), cached_tokens, completion_tokens, .. } if *i == id => {
            Some((*cached_tokens, *completion_tokens))
        }
        _ => None,
    })
}

#[test]
fn batches_sequences_and_emits_one_token_each_per_step() {
    let mut e = engine(EngineConfig::default());
    for i in 0..3 {
        e.add(SeqId(i), spec(prompt(i as u32, 20), 4)).unwrap();
    }
    let first = e.step(Duration::ZERO).unwrap();
    assert_eq!(first.batch.num_seqs, 3);
    assert_eq!(first.batch.prefill_tokens, 60);
    assert_eq!(first.events.len(), 3, "prefill done: one first token each");
    let second = e.step(first.duration).unwrap();
    assert_eq!(second.batch.decode_seqs, 3);
    assert!(second.duration < first.duration, "decode is cheaper than prefill");
    let (events, _) = run(&mut e, first.duration + second.duration);
    for i in 0..3 {
        assert_eq!(finished(&events, i), Some((0, 4)));
    }
    assert_eq!(e.stats().running, 0);
}

#[test]
fn max_running_leaves_the_rest_waiting() {
    let mut e = engine(EngineConfig { max_running: 2, ..EngineConfig::default() });
    for i in 0..3 {
        e.add(SeqId(i), spec(prompt(i as u32, 8), 3)).unwrap();
    }
    e.step(Duration::ZERO).unwrap();
    let s = e.stats();
    assert_eq!((s.running, s.waiting), (2, 1));
    let (events, _) = run(&mut e, Duration::from_secs(1));
    assert_eq!(finished(&events, 2), Some((0, 3)));
}

#[test]
fn long_prompts_are_prefilled_in_chunks_within_the_token_budget() {
    let mut e = engine(EngineConfig { max_batched_tokens: 32, ..EngineConfig::default() });
    e.add(SeqId(0), spec(prompt(0, 100), 2)).unwrap();
    let mut now = Duration::ZERO;
    let mut chunks = Vec::new();
    loop {
        let out = e.step(now).unwrap();
        now += out.duration;
        chunks.push(out.batch.prefill_tokens);
        if !out.events.is_empty() {
            break;
        }
    }
    assert_eq!(chunks, [32, 32, 32, 4]);
}

#[test]
fn repeated_prompt_hits_the_prefix_cache_and_prefills_faster() {
    let mut e = engine(EngineConfig::default());
    e.add(SeqId(0), spec(prompt(7, 64), 2)).unwrap();
    let cold = e.step(Duration::ZERO).unwrap();
    let (events, now) = run(&mut e, cold.duration);
    assert_eq!(finished(&events, 0), Some((0, 2)));

    e.add(SeqId(1), spec(prompt(7, 64), 2)).unwrap();
    let warm = e.step(now).unwrap();
    // 64 tokens: the last block is recomputed so at least one prompt token runs.
    assert_eq!(warm.batch.prefill_tokens, 16);
    assert!(warm.duration < cold.duration);
    let (events, _) = run(&mut e, now + warm.duration);
    assert_eq!(finished(&events, 1), Some((48, 2)));
    let s = e.stats();
    assert_eq!((s.prefix_queries, s.prefix_hits), (128, 48));
}

#[test]
fn shared_prefix_of_different_prompts_hits_only_the_common_blocks() {
    let mut e = engine(EngineConfig::default());
    let mut a = prompt(3, 40);
    e.add(SeqId(0), spec(a.clone(), 1)).unwrap();
    let (_, now) = run(&mut e, Duration::ZERO);
    a[20] = 99; // differs inside the second block
    e.add(SeqId(1), spec(a, 1)).unwrap();
    let (events, _) = run(&mut e, now);
    assert_eq!(finished(&events, 1), Some((16, 1)));
}

#[test]
fn abort_removes_a_sequence_and_frees_its_blocks() {
    let mut e = engine(EngineConfig { kv_blocks: 100, ..EngineConfig::default() });
    e.add(SeqId(0), spec(prompt(0, 64), 50)).unwrap();
    e.add(SeqId(1), spec(prompt(1, 32), 50)).unwrap();
    e.step(Duration::ZERO).unwrap();
    let s = e.stats();
    assert_eq!(s.running, 2);
    assert!((s.kv_usage - 6.0 / 100.0).abs() < 1e-9, "{s:?}"); // 64 and 32 computed tokens
    assert!(e.abort(SeqId(0)));
    assert!(!e.abort(SeqId(0)));
    let s = e.stats();
    assert_eq!(s.running, 1);
    assert!((s.kv_usage - 2.0 / 100.0).abs() < 1e-9, "{s:?}");
    let (events, _) = run(&mut e, Duration::from_secs(1));
    assert!(finished(&events, 0).is_none());
    assert_eq!(finished(&events, 1), Some((0, 50)));
    assert_eq!(e.stats().kv_usage, 0.0);
}

#[test]
fn abort_of_a_waiting_sequence() {
    let mut e = engine(EngineConfig { max_running: 1, ..EngineConfig::default() });
    e.add(SeqId(0), spec(prompt(0, 8), 5)).unwrap();
    e.add(SeqId(1), spec(prompt(1, 8), 5)).unwrap();
    e.step(Duration::ZERO).unwrap();
    assert!(e.abort(SeqId(1)));
    assert_eq!(e.stats().waiting, 0);
}

#[test]
fn kv_pressure_preempts_and_everything_still_finishes() {
    // 12 blocks; two sequences that each grow to 6+ blocks must take turns.
    let mut e = engine(EngineConfig { kv_blocks: 12, ..EngineConfig::default() });
    e.add(SeqId(0), spec(prompt(0, 40), 60)).unwrap();
    e.add(SeqId(1), spec(prompt(1, 40), 60)).unwrap();
    let (events, _) = run(&mut e, Duration::ZERO);
    assert!(e.stats().preemptions > 0);
    for id in 0..2 {
        let tokens: Vec<u32> = events
            .iter()
            .filter_map(|ev| match ev {
                EngineEvent::Token { id: SeqId(i), index, .. } if *i == id => Some(*index),
                _ => None,
            })
            .collect();
        assert_eq!(tokens, (0..60).collect::<Vec<_>>(), "seq {id}: each token exactly once");
    }
    assert_eq!(e.stats().kv_usage, 0.0);
}

#[test]
fn requests_larger_than_the_cache_are_refused() {
    let mut e = engine(EngineConfig { kv_blocks: 4, ..EngineConfig::default() });
    assert_eq!(
        e.add(SeqId(0), spec(prompt(0, 60), 10)),
        Err(EngineError::ExceedsKvCapacity { needed: 5, capacity: 4 })
    );
    assert_eq!(e.add(SeqId(0), spec(prompt(0, 1), 0)), Err(EngineError::EmptyOutput));
}

#[test]
fn delayed_sequences_wait_for_their_ready_time() {
    let mut e = engine(EngineConfig::default());
    let mut s = spec(prompt(0, 8), 2);
    s.ready_at = Duration::from_millis(500);
    s.token_interval = Duration::from_millis(100);
    e.add(SeqId(0), s).unwrap();
    assert!(e.step(Duration::ZERO).is_none());
    assert_eq!(e.stats().running, 1, "admitted, holding its place");
    assert_eq!(e.next_ready_at(Duration::ZERO), Some(Duration::from_millis(500)));
    let (events, end) = run(&mut e, Duration::ZERO);
    assert_eq!(finished(&events, 0), Some((0, 2)));
    assert!(end >= Duration::from_millis(600));
}

#[test]
fn the_same_workload_gives_the_same_timeline() {
    let go = || {
        let mut e = engine(EngineConfig { kv_blocks: 20, max_batched_tokens: 48, ..EngineConfig::default() });
        for i in 0..6 {
            e.add(SeqId(i), spec(prompt(i as u32 % 2, 30), 20)).unwrap();
        }
        run(&mut e, Duration::ZERO)
    };
    assert_eq!(go(), go());
}

#[test]
fn decodes_go_first_then_chunked_prefill_within_the_budget() {
    let mut e = engine(EngineConfig { max_batched_tokens: 32, ..EngineConfig::default() });
    e.add(SeqId(0), spec(prompt(0, 8), 5)).unwrap();
    let first = e.step(Duration::ZERO).unwrap();
    e.add(SeqId(1), spec(prompt(1, 100), 2)).unwrap();
    let second = e.step(first.duration).unwrap();
    assert_eq!((second.batch.decode_seqs, second.batch.prefill_tokens), (1, 31));
    assert_eq!(second.batch.decode_context_tokens, 9, "8 prompt tokens + 1 generated");
    let (events, _) = run(&mut e, first.duration + second.duration);
    assert_eq!(finished(&events, 1), Some((0, 2)));
    assert_eq!(e.stats().prefill_computed, 108);
}

#[test]
fn admission_needs_blocks_for_the_whole_uncached_prompt() {
    // 10 blocks: a 100-token prompt (7 blocks) runs; a second one cannot be admitted even though
    // its first chunk alone would fit, so it waits instead of thrashing.
    let mut e = engine(EngineConfig { kv_blocks: 10, max_batched_tokens: 32, ..EngineConfig::default() });
    e.add(SeqId(0), spec(prompt(0, 100), 4)).unwrap();
    e.add(SeqId(1), spec(prompt(1, 100), 4)).unwrap();
    e.step(Duration::ZERO).unwrap();
    let s = e.stats();
    assert_eq!((s.running, s.waiting), (1, 1));
    let (events, _) = run(&mut e, Duration::from_secs(1));
    assert_eq!(finished(&events, 1), Some((0, 4)));
    assert_eq!(e.stats().preemptions, 0);
}

#[test]
fn siblings_admitted_in_the_same_step_share_their_prefix() {
    // vLLM v1 caches a block when it is scheduled, so the second request finds the first's
    // prefix blocks within the same step and computes only its own suffix.
    let mut e = engine(EngineConfig::default());
    let shared = prompt(5, 64);
    let mut a = shared.clone();
    a.extend(prompt(6, 20));
    let mut b = shared;
    b.extend(prompt(7, 20));
    e.add(SeqId(0), spec(a, 2)).unwrap();
    e.add(SeqId(1), spec(b, 2)).unwrap();
    let first = e.step(Duration::ZERO).unwrap();
    assert_eq!(first.batch.num_seqs, 2);
    assert_eq!(first.batch.prefill_tokens, 84 + 20, "the second computes only its suffix");
    let (events, _) = run(&mut e, first.duration);
    assert_eq!(finished(&events, 0), Some((0, 2)));
    assert_eq!(finished(&events, 1), Some((64, 2)));
}

#[test]
fn unregistered_blocks_are_no_longer_findable() {
    // What `preempt` does for blocks registered in the step that preempts their sequence.
    let mut pool = prefix_cache::BlockPool::new(2);
    let b = pool.allocate().unwrap();
    pool.register(b, BlockHash(9));
    assert_eq!(pool.cached_prefix_len(&[BlockHash(9)]), 1);
    pool.unregister(b);
    assert_eq!(pool.cached_prefix_len(&[BlockHash(9)]), 0);
    pool.release(&[b]);
    assert_eq!(pool.num_free(), 2);
}
