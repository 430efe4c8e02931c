//! The hot-path cost of the live view: `LiveHub::record` for one finished request, alone and
//! with four threads recording at once (the shards keep them apart).
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "bench code")]

use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use sluice_live::{LiveHub, SloTarget};
use sluice_metrics::{Api, Outcome, RecordSink, RequestRecord};

fn record(tenant: &Arc<str>, model: &Arc<str>, i: u64) -> RequestRecord {
    RequestRecord {
        tenant: Arc::clone(tenant),
        model: Arc::clone(model),
        api: Some(Api::ChatCompletions),
        stream: true,
        pool: None,
        endpoint: None,
        status: 200,
        outcome: Outcome::Ok,
        attempts: 1,
        ttft: Some(Duration::from_micros(50_000 + i % 1000 * 300)),
        tpot: Some(Duration::from_micros(20_000 + i % 100 * 50)),
        e2e: Duration::from_millis(800),
        overhead: Duration::from_micros(40),
        prompt_tokens: 512,
        cached_tokens: 256,
        completion_tokens: 128,
        estimated: Default::default(),
        cache: None,
    }
}

fn bench(c: &mut Criterion) {
    let target = SloTarget { ttft_ms: Some(300), tpot_ms: Some(50), attainment: 0.95 };
    let hub = LiveHub::new(move |_: &str, _: &str| Some(target));
    let tenants: Vec<Arc<str>> = (0..8).map(|i| Arc::from(format!("tenant-{i}"))).collect();
    let model: Arc<str> = Arc::from("llama-3-8b");
    let records: Vec<RequestRecord> = (0..1024).map(|i| record(&tenants[i % 8], &model, i as u64)).collect();

    c.bench_function("live/record", |b| {
        let mut i = 0;
        b.iter(|| {
            hub.record(&records[i % records.len()]);
            i += 1;
        });
    });

    c.bench_function("live/record_4_threads", |b| {
        b.iter_custom(|iters| {
            let start = std::time::Instant::now();
            std::thread::scope(|s| {
                for t in 0..4 {
                    let hub = &hub;
                    let records = &records;
                    s.spawn(move || {
                        for i in 0..iters as usize {
                            hub.record(&records[(i + t * 7) % records.len()]);
                        }
                    });
                }
            });
            // Time per record per thread.
            start.elapsed()
        });
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
