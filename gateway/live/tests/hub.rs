//! The hub end to end: records in, frames out, with the sources the server gives it and
//! the SSE encoding a browser reads.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "test code")]

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use sluice_live::{
    EngineLive, LiveHub, LiveSources, PanelSource, PluginSource, PluginTotals, SloTarget, WorkerHealth, WorkerSource,
    WorkerState,
};
use sluice_metrics::{Outcome, RecordSink, RequestRecord};

fn record(tenant: &str, ttft_ms: u64, outcome: Outcome) -> RequestRecord {
    RequestRecord {
        tenant: Arc::from(tenant),
        model: Arc::from("llama"),
        api: Some(sluice_metrics::Api::ChatCompletions),
        stream: true,
        pool: Some(Arc::from("sim")),
        endpoint: Some(Arc::from("w1")),
        status: 200,
        outcome,
        attempts: 1,
        ttft: Some(Duration::from_millis(ttft_ms)),
        tpot: Some(Duration::from_millis(20)),
        e2e: Duration::from_millis(ttft_ms + 400),
        overhead: Duration::from_micros(50),
        prompt_tokens: 100,
        cached_tokens: 60,
        completion_tokens: 21,
        estimated: Default::default(),
        cache: None,
    }
}

fn slo(tenant: &str, _model: &str) -> Option<SloTarget> {
    (tenant == "acme").then_some(SloTarget { ttft_ms: Some(300), tpot_ms: Some(50), attainment: 0.9 })
}

struct Workers;
impl WorkerSource for Workers {
    fn workers(&self) -> Vec<WorkerState> {
        vec![WorkerState {
            pool: "sim".into(),
            name: "w1".into(),
            in_flight: 2,
            health: WorkerHealth::Healthy,
            engine: Some(EngineLive {
                waiting: Some(0.0),
                kv_cache_usage: Some(0.1),
                age_ms: 300,
                ..EngineLive::default()
            }),
        }]
    }
}

struct Plugins(std::sync::atomic::AtomicU64);
impl PluginSource for Plugins {
    fn totals(&self) -> Vec<PluginTotals> {
        let calls = self.0.fetch_add(10, std::sync::atomic::Ordering::Relaxed) + 10;
        vec![PluginTotals {
            plugin: "router".into(),
            calls,
            errors: 1,
            busy: Duration::from_micros(calls * 5),
            ..PluginTotals::default()
        }]
    }
}

struct Rejections;
impl PanelSource for Rejections {
    fn name(&self) -> &str {
        "rate_limits"
    }
    fn sample(&self, _elapsed: Duration) -> Option<serde_json::Value> {
        Some(serde_json::json!({"acme": 3}))
    }
}

#[tokio::test]
async fn frames_carry_traffic_slo_workers_plugins_and_panels() {
    let hub = LiveHub::new(slo);
    let sources = LiveSources {
        in_flight: Some(Arc::new(|| 7)),
        workers: Some(Arc::new(Workers)),
        queues: Some(Arc::new(|| {
            let mut depths = sluice_live::QueueDepths::new();
            depths.entry("p".into()).or_default().insert("acme".into(), 4);
            depths
        })),
        plugins: Some(Arc::new(Plugins(Default::default()))),
        panels: vec![Arc::new(Rejections)],
    };
    hub.tick(&sources);
    let mut rx = hub.subscribe();

    for ttft in [100, 200, 250, 400] {
        hub.record(&record("acme", ttft, Outcome::Ok));
    }
    hub.record(&record("acme", 100, Outcome::UpstreamError));
    hub.record(&record("acme", 100, Outcome::Cancelled));
    // A whole response: 900 ms end to end, no first token of its own; counted, not judged.
    hub.record(&RequestRecord { stream: false, ttft: None, tpot: None, ..record("acme", 500, Outcome::Ok) });
    hub.record(&record("beta", 100, Outcome::Ok));
    let frame = hub.tick(&sources);

    assert_eq!(*rx.recv().await.unwrap(), *hub.latest().unwrap());
    let total = &frame.total;
    assert!(total.requests_per_s > 0.0);
    assert_eq!(total.in_flight, Some(7));
    assert_eq!(total.ttft_ms.unwrap().count, 7);
    let acme = &frame.tenants["acme"];
    let slo = acme.slo.unwrap();
    // Cancelled does not count; the upstream error and the 400 ms TTFT miss; the whole
    // response is left out of the attainment and shown beside it.
    assert_eq!((slo.eligible, slo.met), (5, 3));
    assert!((slo.attainment.unwrap() - 0.6).abs() < 1e-9);
    assert_eq!(slo.coverage(), Some((5, 6)));
    assert!(frame.tenants["beta"].slo.is_none());
    assert!(frame.models.contains_key("llama"));

    let w = &frame.workers[0];
    assert_eq!((w.pool.as_str(), w.name.as_str(), w.in_flight), ("sim", "w1", 2));
    let engine = w.engine.expect("the engine's figures are passed through");
    assert_eq!((engine.waiting, engine.kv_cache_usage, engine.age_ms), (Some(0.0), Some(0.1), 300));

    // Ten more calls since the previous reading, over about the elapsed interval.
    let router = frame.plugins["router"];
    assert_eq!(router.calls_total, 20);
    assert!(router.calls_per_s > 0.0);
    assert!((router.mean_us.unwrap() - 5.0).abs() < 1e-6);
    assert_eq!(frame.panels["rate_limits"]["acme"], 3);
    assert_eq!(frame.queued("acme"), 4, "queue depths by pool and tenant");
}

#[tokio::test]
async fn frames_break_traffic_down_by_api() {
    let hub = LiveHub::new(slo);
    let sources = LiveSources::default();
    hub.tick(&sources);
    let with_api = |api| RequestRecord { api: Some(api), ..record("acme", 100, Outcome::Ok) };
    for _ in 0..3 {
        hub.record(&with_api(sluice_metrics::Api::ChatCompletions));
    }
    hub.record(&with_api(sluice_metrics::Api::Messages));
    hub.record(&RequestRecord { outcome: Outcome::UpstreamError, ..with_api(sluice_metrics::Api::Messages) });
    // Refused before its API was known (an unknown path): counted overall, in no API.
    hub.record(&RequestRecord { api: None, ..record("acme", 100, Outcome::ClientError) });
    let frame = hub.tick(&sources);

    assert_eq!(frame.apis.keys().collect::<Vec<_>>(), ["chat", "messages"]);
    let (chat, messages) = (&frame.apis["chat"], &frame.apis["messages"]);
    // Rates divide by the real interval: compare counts through the percentiles' sample counts.
    assert_eq!(chat.ttft_ms.unwrap().count, 3);
    assert_eq!(messages.ttft_ms.unwrap().count, 2);
    assert_eq!(frame.total.ttft_ms.unwrap().count, 6);
    assert!((chat.requests_per_s / messages.requests_per_s - 1.5).abs() < 1e-9);
    assert_eq!(chat.errors_per_s, 0.0);
    assert!((messages.errors_per_s / messages.requests_per_s - 0.5).abs() < 1e-9);
    assert!(chat.tokens_out_per_s > 0.0 && chat.tpot_ms.is_some());
    // The frame's JSON carries them under `apis`.
    let json = serde_json::to_value(&*frame).unwrap();
    assert!(json["apis"]["chat"]["requests_per_s"].as_f64().unwrap() > 0.0);
}

#[tokio::test]
async fn the_sse_stream_starts_with_the_latest_frame_and_follows() {
    let hub = LiveHub::new(slo);
    let sources = LiveSources::default();
    hub.record(&record("acme", 100, Outcome::Ok));
    hub.tick(&sources);

    let mut stream = Box::pin(sluice_live::sse_stream(&hub));
    let first = String::from_utf8(stream.next().await.unwrap().unwrap().to_vec()).unwrap();
    assert!(first.starts_with("retry: 2000\n\nevent: frame\nid: "), "{first}");
    let data = first.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
    let frame: sluice_live::LiveFrame = serde_json::from_str(data).unwrap();
    assert!(frame.tenants["acme"].traffic.tokens_out_per_s > 0.0);

    hub.tick(&sources);
    let next = tokio::time::timeout(Duration::from_secs(5), stream.next()).await.unwrap().unwrap().unwrap();
    let next = String::from_utf8(next.to_vec()).unwrap();
    assert!(next.starts_with("event: frame\n") && next.ends_with("\n\n"), "{next}");

    // The hub stopping ends the stream.
    let cancel = tokio_util::sync::CancellationToken::new();
    cancel.cancel();
    Arc::clone(&hub).run(sources, cancel).await;
    assert!(tokio::time::timeout(Duration::from_secs(5), stream.next()).await.unwrap().is_none());
}

#[tokio::test(start_paused = true)]
async fn run_publishes_every_second() {
    let hub = LiveHub::new(slo);
    let mut rx = hub.subscribe();
    let cancel = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(Arc::clone(&hub).run(LiveSources::default(), cancel.clone()));
    for _ in 0..3 {
        let frame = rx.recv().await.unwrap();
        assert_eq!(frame.v, sluice_live::FRAME_VERSION);
    }
    cancel.cancel();
    task.await.unwrap();
}
