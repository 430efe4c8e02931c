//! Plugin host costs: instantiation, one hook call (headers passed lazily), a chain of three
//! plugins, one streamed event through a chunk hook, in each isolation mode.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr,
    reason = "benches fail loudly and report percentiles on stderr"
)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use futures_util::FutureExt;
use http::HeaderMap;
use sluice_plugin_host::types::{
    Api, BodySummary, Candidate, CandidateStats, EngineMetrics, Health, PrefixOverlap, RequestInfo, RouteRequest,
};
use sluice_plugin_host::{
    BindingSpec, BodyResource, CallLimits, Capabilities, EngineSettings, HostSettings, Isolation, PluginHost,
    PluginSource, RequestView,
};

/// The output of a call to a plugin that imports no async capability: such calls never wait, so
/// their future is ready on first poll, as in the gateway.
fn ready<F: std::future::Future>(call: F) -> F::Output {
    call.now_or_never().expect("a synchronous plugin call completes at once")
}

fn host() -> PluginHost {
    let settings = HostSettings {
        engine: EngineSettings { max_instances: 256, max_memory_bytes: 32 << 20, tick: Duration::from_millis(1) },
        cache_dir: None,
        ..HostSettings::default()
    };
    PluginHost::new(settings, &prometheus::Registry::new()).unwrap()
}

fn guest(name: &str, mode: &str, isolation: Isolation, order: i64) -> BindingSpec {
    BindingSpec {
        config_json: format!(r#"{{"mode":"{mode}","tag":"{name}"}}"#),
        isolation,
        order,
        ..guest_limits(BindingSpec::new(name, PluginSource::Bytes(Arc::from(sluice_plugin_host::testing::TEST_GUEST))))
    }
}

fn guest_limits(spec: BindingSpec) -> BindingSpec {
    BindingSpec {
        capabilities: Capabilities::all(),
        limits: CallLimits { timeout: Duration::from_millis(50), memory_bytes: 8 << 20 },
        ..spec
    }
}

fn view() -> RequestView {
    let mut headers = HeaderMap::new();
    for i in 0..12 {
        headers.insert(format!("x-header-{i}").parse::<http::HeaderName>().unwrap(), "value".parse().unwrap());
    }
    headers.insert("x-echo", "hello".parse().unwrap());
    RequestView {
        info: RequestInfo {
            request_id: "0123456789abcdef".into(),
            tenant: "acme".into(),
            key_id: "acme:01234567".into(),
            model: "llama-3-8b".into(),
            api: Api::ChatCompletions,
            summary: BodySummary {
                message_count: 3,
                token_estimate: 512,
                stream: true,
                max_tokens: Some(256),
                temperature: Some(0.7),
                user: None,
            },
        },
        headers: Arc::new(headers),
        body: BodyResource::new(Bytes::from(vec![b' '; 2048])),
        limits: None,
        cache: None,
    }
}

/// Criterion reports means; the targets are percentiles, so each case is also timed call by
/// call into a histogram.
fn percentiles(name: &str, mut f: impl FnMut()) {
    let mut histogram = hdrhistogram::Histogram::<u64>::new(3).unwrap();
    for _ in 0..2_000 {
        f();
    }
    for _ in 0..50_000 {
        let started = std::time::Instant::now();
        f();
        histogram.record(started.elapsed().as_nanos() as u64).unwrap();
    }
    eprintln!(
        "percentiles {name}: p50 {:.2} µs, p99 {:.2} µs, p99.9 {:.2} µs",
        histogram.value_at_quantile(0.5) as f64 / 1e3,
        histogram.value_at_quantile(0.99) as f64 / 1e3,
        histogram.value_at_quantile(0.999) as f64 / 1e3,
    );
}

const MODES: [(&str, Isolation); 2] = [
    ("per-request", Isolation::PerRequest),
    ("reuse", Isolation::Reuse { max_calls: u32::MAX, max_age: Duration::from_secs(3600) }),
];

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("plugin");
    for (label, isolation) in MODES {
        // One on-request call with the `continue` guest: the floor of a hook (plus, per request,
        // an instantiation).
        let h = host();
        h.load_and_activate(guest("one", "continue", isolation, 0)).unwrap();
        let chain = h.chain();
        let mut v = view();
        group.bench_function(format!("on_request/{label}"), |b| {
            b.iter(|| black_box(ready(chain.on_request(&mut v)).unwrap()))
        });
        percentiles(&format!("on_request/{label}"), || {
            black_box(ready(chain.on_request(&mut v)).unwrap());
        });

        // A hook that reads one header lazily and answers with a header.
        let h = host();
        h.load_and_activate(guest("state", "state", isolation, 0)).unwrap();
        let chain = h.chain();
        group.bench_function(format!("on_request_with_edit/{label}"), |b| {
            b.iter(|| black_box(ready(chain.on_request(&mut v)).unwrap()))
        });
        percentiles(&format!("on_request_with_edit/{label}"), || {
            black_box(ready(chain.on_request(&mut v)).unwrap());
        });

        // The same floor for a plugin that imports an async capability (`http`, unused here):
        // its calls run on a fiber with `call_async`.
        let h = host();
        let net = BindingSpec {
            config_json: "{}".into(),
            ..BindingSpec::new("net", PluginSource::Bytes(Arc::from(sluice_plugin_host::testing::TEST_NET_GUEST)))
        };
        h.load_and_activate(BindingSpec { isolation, ..guest_limits(net) }).unwrap();
        let chain = h.chain();
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        group.bench_function(format!("on_request_async/{label}"), |b| {
            b.iter(|| black_box(runtime.block_on(chain.on_request(&mut v)).unwrap()))
        });
        percentiles(&format!("on_request_async/{label}"), || {
            black_box(runtime.block_on(chain.on_request(&mut v)).unwrap());
        });

        // A chain of three plugins per request: two on-request policies and the router.
        let h = host();
        h.load_and_activate(guest("a", "continue", isolation, 1)).unwrap();
        h.load_and_activate(guest("b", "continue", isolation, 2)).unwrap();
        let mut router = BindingSpec::builtin_router();
        router.isolation = isolation;
        h.load_and_activate(router).unwrap();
        let chain = h.chain();
        let candidates: Vec<Candidate> = (0..8)
            .map(|i| Candidate {
                id: i,
                stats: CandidateStats {
                    in_flight_requests: i % 3,
                    in_flight_prefill_tokens: 0,
                    metrics: None,
                    health: Health::Healthy,
                },
                overlap: PrefixOverlap { blocks: 0, tokens: 0 },
            })
            .collect();
        let route = RouteRequest {
            tenant: "bench".into(),
            model: "llama-3-8b".into(),
            api: Api::ChatCompletions,
            session: None,
            prompt_tokens: 512,
            block_size: 16,
            block_hashes: Vec::new(),
            max_output_tokens: Some(256),
        };
        group.bench_function(format!("chain_of_three/{label}"), |b| {
            b.iter(|| {
                black_box(ready(chain.on_request(&mut v)).unwrap());
                black_box(ready(chain.route("bench", &route, &candidates)).unwrap())
            })
        });
        percentiles(&format!("chain_of_three/{label}"), || {
            black_box(ready(chain.on_request(&mut v)).unwrap());
            black_box(ready(chain.route("bench", &route, &candidates)).unwrap());
        });

        // One streamed event through the model-mask example, which rewrites its `model`: the
        // per-token cost of a chunk hook.
        let h = host();
        let mask = BindingSpec {
            config_json: r#"{"names":{"llama-3.1-8b-instruct":"fast"}}"#.into(),
            isolation,
            ..guest_limits(BindingSpec::new(
                "model-mask",
                PluginSource::Bytes(Arc::from(sluice_plugin_host::testing::examples::MODEL_MASK)),
            ))
        };
        h.load_and_activate(mask).unwrap();
        let chain = h.chain();
        let event = r#"{"id":"chatcmpl-5f0c2a9e","object":"chat.completion.chunk","created":1764201600,"model":"llama-3.1-8b-instruct","choices":[{"index":0,"delta":{"content":" tokens"},"logprobs":null,"finish_reason":null}]}"#;
        group.bench_function(format!("on_response_chunk/{label}"), |b| {
            b.iter(|| black_box(chain.on_response_chunk(&v.info, true, 7, event).unwrap()))
        });
        percentiles(&format!("on_response_chunk/{label}"), || {
            black_box(chain.on_response_chunk(&v.info, true, 7, event).unwrap());
        });

        let h = host();
        let mut router = BindingSpec::builtin_router();
        router.isolation = isolation;
        h.load_and_activate(router).unwrap();
        let chain = h.chain();
        group.bench_function(format!("route_8_candidates/{label}"), |b| {
            b.iter(|| black_box(ready(chain.route("bench", &route, &candidates)).unwrap()))
        });
        percentiles(&format!("route_8_candidates/{label}"), || {
            black_box(ready(chain.route("bench", &route, &candidates)).unwrap());
        });

        // The routing issue's case: 16 workers, an 8k-token prompt (128 blocks of 64), every
        // signal filled in (overlaps, prefill in flight, engine metrics).
        let wide: Vec<Candidate> = (0..16u32)
            .map(|id| Candidate {
                id,
                stats: CandidateStats {
                    in_flight_requests: 3 + id % 5,
                    in_flight_prefill_tokens: u64::from(id) * 700,
                    metrics: Some(EngineMetrics {
                        running: 40 + id,
                        waiting: id % 3,
                        kv_usage: 0.3 + f64::from(id) * 0.03,
                        prefix_cache_hit_rate: 0.6,
                        age_ms: 250,
                    }),
                    health: Health::Healthy,
                },
                overlap: PrefixOverlap { blocks: (id * 9) % 128, tokens: ((id * 9) % 128) * 64 },
            })
            .collect();
        let long = RouteRequest {
            tenant: "bench".into(),
            model: "qwen3-32b".into(),
            api: Api::ChatCompletions,
            session: Some("agent-7".into()),
            prompt_tokens: 8_192,
            block_size: 64,
            block_hashes: (0..128u64).map(|h| h.wrapping_mul(0x9E37_79B9_7F4A_7C15)).collect(),
            max_output_tokens: Some(1_000),
        };
        group.bench_function(format!("route_16_candidates_8k_prompt/{label}"), |b| {
            b.iter(|| black_box(ready(chain.route("bench", &long, &wide)).unwrap()))
        });
        percentiles(&format!("route_16_candidates_8k_prompt/{label}"), || {
            black_box(ready(chain.route("bench", &long, &wide)).unwrap());
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
