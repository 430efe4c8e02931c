//! Parsing request bodies into the typed requests, which every request pays for. Bodies are
//! checked for UTF-8 once and then parsed from `&str`, as the gateway does.

use criterion::{Criterion, criterion_group, criterion_main};
use serde::de::DeserializeOwned;
use sluice_openai::{ChatCompletionRequest, CompletionRequest};

fn parse<T: DeserializeOwned>(body: &[u8]) -> Option<T> {
    serde_json::from_str(std::str::from_utf8(body).ok()?).ok()
}

fn requests(c: &mut Criterion) {
    let mut group = c.benchmark_group("request");
    let chat = br#"{"model":"llama-3-8b","messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"Write a haiku about rivers and GPUs."}],"max_tokens":128,"temperature":0.7,"top_k":40}"#;
    group.bench_function("parse chat request (2 messages, 1 unknown member)", |b| {
        b.iter(|| parse::<ChatCompletionRequest>(std::hint::black_box(chat)))
    });
    // The same from bytes: serde_json then checks each string for UTF-8 as it meets it.
    group.bench_function("parse chat request (2 messages, 1 unknown member), from bytes", |b| {
        b.iter(|| serde_json::from_slice::<ChatCompletionRequest>(std::hint::black_box(chat)).ok())
    });
    let parts = br#"{"model":"llama-3-8b","messages":[{"role":"user","content":[{"type":"text","text":"What is in this image?"},{"type":"image_url","image_url":{"url":"https://example.com/river.png"}}]}],"stream":true,"stream_options":{"include_usage":true}}"#;
    group.bench_function("parse chat request (content parts, stream options)", |b| {
        b.iter(|| parse::<ChatCompletionRequest>(std::hint::black_box(parts)))
    });
    let tokens =
        br#"{"model":"llama-3-8b","prompt":[[1,15043,29892,3186],[1,6324,29991]],"max_tokens":16,"echo":false}"#;
    group.bench_function("parse completion request (token batches)", |b| {
        b.iter(|| parse::<CompletionRequest>(std::hint::black_box(tokens)))
    });
    group.finish();
}

criterion_group!(benches, requests);
criterion_main!(benches);
