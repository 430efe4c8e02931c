//! The stages that run on every request before it is forwarded: what the gateway itself costs
//! per request, without sockets.

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue, header::AUTHORIZATION};
use sluice_metrics::Api;
use sluice_proxy::stages::{authenticate, forward, parse, prepare};
use sluice_proxy::tenants::{Directory, KeyHash, Tenant, TenantSnapshot};

fn directory(tenants: usize) -> Directory {
    Directory::new(TenantSnapshot::new(
        (0..tenants)
            .map(|i| (Tenant::new(&format!("tenant-{i}")), vec![KeyHash::of(&format!("sk-tenant-{i}-0123456789"))])),
    ))
}

fn stages(c: &mut Criterion) {
    let dir = directory(10_000);
    let mut headers = HeaderMap::new();
    headers.insert(AUTHORIZATION, HeaderValue::from_static("Bearer sk-tenant-4242-0123456789"));
    c.bench_function("authenticate (10k tenants)", |b| b.iter(|| authenticate::run(&dir, &headers, false)));

    let body = Bytes::from_static(
        br#"{"model":"llama-3-8b","messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"Write a haiku about rivers and GPUs."}],"max_tokens":128,"temperature":0.7,"top_k":40}"#,
    );
    c.bench_function("parse chat request", |b| b.iter(|| parse::run(Api::ChatCompletions, &body)));
    c.bench_function("prepare non-stream (pass-through)", |b| {
        b.iter_batched(
            || parse::run(Api::ChatCompletions, &body).map(|p| (p, body.clone())),
            |parsed| parsed.and_then(|(p, b)| prepare::run(p, b)),
            criterion::BatchSize::SmallInput,
        )
    });
    let stream = Bytes::from_static(
        br#"{"model":"llama-3-8b","stream":true,"messages":[{"role":"user","content":"Write a haiku about rivers and GPUs."}],"max_tokens":128}"#,
    );
    c.bench_function("prepare stream (usage forced on)", |b| {
        b.iter_batched(
            || parse::run(Api::ChatCompletions, &stream).map(|p| (p, stream.clone())),
            |parsed| parsed.and_then(|(p, b)| prepare::run(p, b)),
            criterion::BatchSize::SmallInput,
        )
    });

    // Every whole answer is checked to be JSON before it is relayed; a typical chat answer of
    // 128 tokens (~700 B of text) and a long one of 4096 tokens.
    for (label, words) in [("validate answer (128 tokens)", 128), ("validate answer (4096 tokens)", 4096)] {
        let answer = chat_answer(words);
        c.bench_function(label, |b| b.iter(|| forward::is_json(std::hint::black_box(&answer))));
    }
}

/// A chat completion answer the way vLLM writes it, with `words` words of content.
fn chat_answer(words: usize) -> Vec<u8> {
    let content = vec!["river"; words].join(" ");
    format!(
        r#"{{"id":"chatcmpl-0123456789abcdef","object":"chat.completion","created":1765000000,"model":"llama-3-8b","choices":[{{"index":0,"message":{{"role":"assistant","content":"{content}"}},"finish_reason":"length"}}],"usage":{{"prompt_tokens":24,"completion_tokens":{words},"total_tokens":{}}}}}"#,
        words + 24
    )
    .into_bytes()
}

criterion_group!(benches, stages);
criterion_main!(benches);
