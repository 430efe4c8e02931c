//! Parsing request bodies into the typed requests, which every request pays for. Bodies are
//! read with `from_body`, as the gateway does: checked for UTF-8 once, then parsed from `&str`,
//! a chat's messages kept as a slice of the body.

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use sluice_openai::{ChatCompletionRequest, CompletionRequest};

fn requests(c: &mut Criterion) {
    let mut group = c.benchmark_group("request");
    let chat = Bytes::from_static(
        br#"{"model":"llama-3-8b","messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"Write a haiku about rivers and GPUs."}],"max_tokens":128,"temperature":0.7,"top_k":40}"#,
    );
    group.bench_function("parse chat request (2 messages, 1 unknown member)", |b| {
        b.iter(|| ChatCompletionRequest::from_body(std::hint::black_box(&chat)).ok())
    });
    // The `Deserialize` impl from bytes: serde_json then checks each string for UTF-8 as it
    // meets it, and the messages are copied.
    group.bench_function("parse chat request (2 messages, 1 unknown member), from bytes", |b| {
        b.iter(|| serde_json::from_slice::<ChatCompletionRequest>(std::hint::black_box(&chat)).ok())
    });
    let parts = Bytes::from_static(
        br#"{"model":"llama-3-8b","messages":[{"role":"user","content":[{"type":"text","text":"What is in this image?"},{"type":"image_url","image_url":{"url":"https://example.com/river.png"}}]}],"stream":true,"stream_options":{"include_usage":true}}"#,
    );
    group.bench_function("parse chat request (content parts, stream options)", |b| {
        b.iter(|| ChatCompletionRequest::from_body(std::hint::black_box(&parts)).ok())
    });
    // docs/bench/memory.sh's shape (many short messages), 1,000 of them.
    let message = r#"{"role": "user", "content": "a short message of a long conversation, about rivers"}"#;
    let many = Bytes::from(format!(
        r#"{{"model": "bench-model", "messages": [{}], "max_tokens": 4}}"#,
        vec![message; 1000].join(", ")
    ));
    group.bench_function("parse chat request (1,000 short messages, 85 KB)", |b| {
        b.iter(|| ChatCompletionRequest::from_body(std::hint::black_box(&many)).ok())
    });
    let tokens = Bytes::from_static(
        br#"{"model":"llama-3-8b","prompt":[[1,15043,29892,3186],[1,6324,29991]],"max_tokens":16,"echo":false}"#,
    );
    group.bench_function("parse completion request (token batches)", |b| {
        b.iter(|| CompletionRequest::from_body(std::hint::black_box(&tokens)).ok())
    });
    group.finish();
}

criterion_group!(benches, requests);
criterion_main!(benches);
