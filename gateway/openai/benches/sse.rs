//! The SSE parser and chunk probe on a realistic chat stream, fed in network-sized reads.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sluice_openai::probe::{body_usage, chunk_facts};
use sluice_openai::sse::SseParser;

fn stream(tokens: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..tokens {
        out.extend_from_slice(
            format!(
                "data: {{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"llama-3-8b\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\" word{i}\"}},\"finish_reason\":null}}]}}\n\n"
            )
            .as_bytes(),
        );
    }
    out.extend_from_slice(b"data: {\"id\":\"chatcmpl-1\",\"choices\":[],\"usage\":{\"prompt_tokens\":10,\"completion_tokens\":256,\"total_tokens\":266}}\n\ndata: [DONE]\n\n");
    out
}

fn parse(c: &mut Criterion) {
    let bytes = stream(256);
    let mut group = c.benchmark_group("sse");
    group.throughput(Throughput::Elements(258));
    for read in [64usize, 1460, 16 * 1024] {
        group.bench_function(format!("parse 258 events, {read}-byte reads"), |b| {
            b.iter(|| {
                let mut p = SseParser::new(1 << 20);
                let mut n = 0;
                for chunk in bytes.chunks(read) {
                    p.push(chunk);
                    while let Ok(Some(_)) = p.next_event() {
                        n += 1;
                    }
                }
                n
            })
        });
    }
    let event = br#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"llama-3-8b","choices":[{"index":0,"delta":{"content":" word"},"finish_reason":null}]}"#;
    group.throughput(Throughput::Elements(1));
    group.bench_function("probe one chunk", |b| b.iter(|| chunk_facts(std::hint::black_box(event))));
    // A whole chat completion as vLLM lays it out: members after `usage`.
    let body = br#"{"id":"chatcmpl-8f2c","object":"chat.completion","created":1764400000,"model":"llama-3-8b","choices":[{"index":0,"message":{"role":"assistant","content":"Rivers carve the stone slowly; GPUs carve the tokens fast, and both run downhill.","tool_calls":[]},"logprobs":null,"finish_reason":"stop","stop_reason":null}],"usage":{"prompt_tokens":24,"total_tokens":40,"completion_tokens":16,"prompt_tokens_details":{"cached_tokens":16}},"prompt_logprobs":null,"kv_transfer_params":null}"#;
    group.bench_function("usage of a whole response", |b| b.iter(|| body_usage(std::hint::black_box(body))));
    group.finish();
}

criterion_group!(benches, parse);
criterion_main!(benches);
