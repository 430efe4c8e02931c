//! Rate-limit decision latency: the built-in `ratelimit` plugin's on-request (one `acquire` of
//! four limits: requests, tokens, concurrency, monthly budget), the request's end (the host
//! settles the holds with the usage; for Redis, from a task), and the `limits` backend alone, with the in-process backend and with Redis at
//! 127.0.0.1:6379, exact (a script per decision) and leased (slices of quota held by the replica). Prints a table (p50 / p99 in µs); `cargo bench -p sluice-plugin-host --bench
//! limits`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    reason = "a bench that fails loudly and prints its table"
)]

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::HeaderMap;
use sluice_plugin_host::limits::{Ask, Ending, Kind, OnSettle};
use sluice_plugin_host::limits::{RequestEnd, Usage};
use sluice_plugin_host::types::{Api, BodySummary, RequestInfo};
use sluice_plugin_host::{
    BindingSpec, BodyResource, EngineSettings, Fallback, HostSettings, PluginHost, RequestLimits, RequestVerdict,
    RequestView, SharedMode, SharedSettings,
};

const ITERATIONS: usize = 20_000;

fn host(shared: Option<SharedSettings>) -> PluginHost {
    let settings = HostSettings {
        engine: EngineSettings { max_instances: 256, max_memory_bytes: 32 << 20, tick: Duration::from_millis(1) },
        cache_dir: None,
        shared_limits: shared,
        ..HostSettings::default()
    };
    let host = PluginHost::new(settings, &prometheus::Registry::new()).unwrap();
    host.load_and_activate(BindingSpec::builtin_ratelimit()).unwrap();
    // Limits that always admit, so every call does the whole decision.
    let limits = serde_json::json!({
        "requests_per_minute": 1_000_000_000u64,
        "tokens_per_minute": 1_000_000_000_000u64,
        "max_concurrency": 1_000_000u64,
        "monthly_token_budget": 1_000_000_000_000_000u64,
    });
    let tenant = serde_json::json!({ "name": "bench", "limits": limits }).to_string();
    host.services().set_tenants(HashMap::from([("bench".to_owned(), tenant)]));
    host.services().set_limited_tenants(HashSet::from(["bench".to_owned()]));
    host
}

fn info() -> RequestInfo {
    RequestInfo {
        request_id: "0123456789abcdef".into(),
        tenant: "bench".into(),
        key_id: "bench:01234567".into(),
        model: "llama-3-8b".into(),
        api: Api::ChatCompletions,
        summary: BodySummary {
            message_count: 3,
            token_estimate: 512,
            stream: true,
            max_tokens: Some(256),
            temperature: None,
            user: None,
        },
    }
}

struct Row {
    name: String,
    p50_us: f64,
    p99_us: f64,
}

fn row(name: &str, h: &hdrhistogram::Histogram<u64>) -> Row {
    Row {
        name: name.to_owned(),
        p50_us: h.value_at_quantile(0.5) as f64 / 1e3,
        p99_us: h.value_at_quantile(0.99) as f64 / 1e3,
    }
}

async fn plugin_rows(backend: &str, shared: Option<SharedSettings>) -> Vec<Row> {
    let host = host(shared);
    let chain = host.chain();
    let mut on_request = hdrhistogram::Histogram::<u64>::new(3).unwrap();
    let mut on_done = hdrhistogram::Histogram::<u64>::new(3).unwrap();
    let used = RequestEnd::Used(Usage { prompt: 512, cached: 0, completion: 100 });
    for i in 0..ITERATIONS + 1_000 {
        let mut view = RequestView {
            info: info(),
            headers: Arc::new(HeaderMap::new()),
            body: BodyResource::new(Bytes::from_static(b"{}")),
            limits: Some(RequestLimits::new(Arc::clone(&host.services().limits))),
            cache: None,
        };
        let started = Instant::now();
        let verdict = chain.on_request(&mut view).await.unwrap();
        let decided = started.elapsed();
        assert!(matches!(verdict, RequestVerdict::Continue(_)), "{verdict:?}");
        let started = Instant::now();
        if let Some(limits) = &view.limits {
            limits.finish(used);
        }
        let settled = started.elapsed();
        if i >= 1_000 {
            on_request.record(decided.as_nanos() as u64).unwrap();
            on_done.record(settled.as_nanos() as u64).unwrap();
        }
    }
    assert!(host.services().limits.shared().is_none_or(|s| !s.degraded()), "Redis answered");
    vec![
        row(&format!("ratelimit on-request (acquire 4 limits), {backend}"), &on_request),
        row(&format!("request end (settle with usage), {backend}"), &on_done),
    ]
}

async fn backend_row(backend: &str, shared: Option<SharedSettings>) -> Row {
    let host = host(shared);
    let limits = &host.services().limits;
    let owner = "5:bench/-/";
    let ask = |key: &str, kind, amount, on_settle| Ask {
        key: format!("{owner}{key}"),
        owner_len: owner.len(),
        kind,
        amount,
        limit: 1_000_000_000_000,
        period_ms: 60_000,
        burst: 1_000_000_000_000,
        on_settle,
    };
    let asks = [
        ask("rpm", Kind::Rate, 1, OnSettle::Keep),
        ask("tpm", Kind::Rate, 768, OnSettle::Tokens),
        ask("conc", Kind::Slots, 1, OnSettle::GiveBack),
        ask("month", Kind::Month, 768, OnSettle::Tokens),
    ];
    let mut h = hdrhistogram::Histogram::<u64>::new(3).unwrap();
    for i in 0..ITERATIONS + 1_000 {
        let started = Instant::now();
        let grant = limits.acquire(&asks, Duration::from_secs(1)).await.unwrap();
        let took = started.elapsed();
        limits.end(&grant.taken, grant.shared, Ending::Settle(612)).await;
        if i >= 1_000 {
            h.record(took.as_nanos() as u64).unwrap();
        }
    }
    row(&format!("limits backend acquire (4 limits), {backend}"), &h)
}

fn redis(mode: SharedMode) -> SharedSettings {
    SharedSettings {
        url: "redis://127.0.0.1:6379".to_owned(),
        timeout: Duration::from_millis(200),
        fallback: Fallback::Closed,
        key_prefix: format!("sluice-bench:{}:{mode:?}:", std::process::id()),
        mode,
    }
}

fn main() {
    // `cargo test --benches` runs benches once as tests; the table is for `cargo bench`.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let rows = runtime.block_on(async {
        let mut rows = Vec::new();
        rows.push(backend_row("in-process", None).await);
        rows.push(backend_row("Redis, exact", Some(redis(SharedMode::Exact))).await);
        rows.push(backend_row("Redis, leased", Some(redis(SharedMode::default()))).await);
        rows.extend(plugin_rows("in-process", None).await);
        rows.extend(plugin_rows("Redis, exact", Some(redis(SharedMode::Exact))).await);
        rows.extend(plugin_rows("Redis, leased", Some(redis(SharedMode::default()))).await);
        rows
    });
    println!("| decision ({ITERATIONS} each) | p50 µs | p99 µs |");
    println!("|---|---|---|");
    for r in rows {
        println!("| {} | {:.1} | {:.1} |", r.name, r.p50_us, r.p99_us);
    }
}
