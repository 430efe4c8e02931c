//! The response cache's own costs, without sockets: the key of a typical chat request, an exact
//! lookup in the in-process backend holding 50,000 entries, and replaying a 256-token streamed
//! answer as a stream and as a whole body. Before criterion runs, the memory an entry takes is
//! printed: the process's resident size grown per entry against the weight the cache counts
//! towards `max_bytes`.
//!
//! `cargo bench -p sluice-proxy --bench response_cache`

#![allow(
    clippy::expect_used,
    clippy::print_stderr,
    reason = "a benchmark program that reports what criterion does not"
)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use sluice_metrics::Api;
use sluice_openai::response::Usage;
use sluice_proxy::response_cache::answer::{AnswerKind, CachedAnswer, StreamCapture};
use sluice_proxy::response_cache::key::{EntryKey, digest};
use sluice_proxy::response_cache::memory::MemoryStore;
use sluice_proxy::response_cache::metrics::CacheMetrics;

const ENTRIES: usize = 50_000;
const TOKENS: usize = 256;

/// A chat answer streamed one token per event, as the cache captures it from a worker.
fn streamed_answer(seed: usize) -> CachedAnswer {
    let mut capture = StreamCapture::new(AnswerKind::Chat, 1 << 20);
    let role = r#"{"id":"x","object":"chat.completion.chunk","model":"llama-3-8b","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#;
    capture.push(role.as_bytes());
    for t in 0..TOKENS {
        let token = format!(" w{}", (seed * 31 + t * 7) % 997);
        let event = format!(
            r#"{{"id":"x","object":"chat.completion.chunk","model":"llama-3-8b","choices":[{{"index":0,"delta":{{"content":"{token}"}},"finish_reason":null}}]}}"#
        );
        capture.push(event.as_bytes());
    }
    let last = r#"{"id":"x","object":"chat.completion.chunk","model":"llama-3-8b","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#;
    capture.push(last.as_bytes());
    let usage = Usage {
        prompt_tokens: 40,
        completion_tokens: TOKENS as u64,
        total_tokens: 40 + TOKENS as u64,
        prompt_tokens_details: None,
    };
    capture.finish(Some(&usage), Duration::from_millis(900)).expect("a complete stream is an answer")
}

fn key(i: usize) -> EntryKey {
    let body =
        format!(r#"{{"model":"llama-3-8b","temperature":0,"messages":[{{"role":"user","content":"question {i}"}}]}}"#);
    EntryKey {
        namespace: Arc::from("plugin:cache"),
        tenant: Arc::from("acme"),
        model: Arc::from("llama-3-8b"),
        digest: digest(Api::ChatCompletions, body.as_bytes(), &[], "").expect("a JSON object"),
    }
}

/// Resident set size in bytes (Linux).
fn rss() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
    pages * 4096
}

fn filled_store() -> MemoryStore {
    let metrics = CacheMetrics::new(&prometheus::Registry::new()).expect("metrics");
    let store = MemoryStore::new(8 << 30, metrics);
    let before = rss();
    let mut weight = 0usize;
    for i in 0..ENTRIES {
        let answer = streamed_answer(i);
        let size = answer.heap_bytes();
        weight += size;
        store.put(key(i), Arc::new(answer), Duration::from_secs(3600), size);
    }
    let (entries, counted) = store.size();
    let grown = rss().saturating_sub(before);
    eprintln!(
        "{entries} entries of a {TOKENS}-token streamed answer ({} bytes of answer each): resident size grew {} \
         bytes per entry; the cache counts {} bytes per entry towards max_bytes",
        weight / ENTRIES,
        grown / ENTRIES,
        counted as usize / ENTRIES.max(1),
    );
    store
}

fn bench(c: &mut Criterion) {
    let store = filled_store();
    let request = br#"{"model":"llama-3-8b","messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"Write a haiku about rivers and GPUs."}],"max_tokens":128,"temperature":0,"stream":true}"#;
    c.bench_function("key of a chat request (canonical JSON, SHA-256)", |b| {
        b.iter(|| digest(Api::ChatCompletions, black_box(request), &["user".to_owned()], ""))
    });
    let hit = key(ENTRIES / 2);
    c.bench_function("exact lookup, in-process, 50k entries (hit)", |b| b.iter(|| store.get(black_box(&hit))));
    let answer = streamed_answer(7);
    c.bench_function("replay a 256-token answer as a stream", |b| b.iter(|| answer.event_stream("id", true)));
    c.bench_function("replay a 256-token answer as a whole body", |b| b.iter(|| answer.whole_body("id")));
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = bench
}
criterion_main!(benches);
