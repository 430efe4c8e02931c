//! Memory per concurrent plugin instance. `n` calls are held in flight at once (a plugin
//! waiting on its `http` capability keeps its instance, and its fiber, until answered); the
//! process's resident memory is read before, while they wait, and after they return (`reuse`
//! keeps up to 64 instances warm). Prints a table; run with
//! `cargo bench -p sluice-plugin-host --bench memory`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    reason = "a bench binary that fails loudly and prints its table"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use sluice_plugin_host::types::{Api, BodySummary, RequestInfo};
use sluice_plugin_host::{
    BindingSpec, BodyResource, CallLimits, Capabilities, EngineSettings, HostSettings, IoFuture, Isolation, PluginHost,
    PluginIo, PluginSource, RequestView,
};

/// Holds every `send` until the gate opens.
#[derive(Debug)]
struct Gate {
    open: tokio::sync::watch::Receiver<bool>,
    waiting: AtomicUsize,
}

impl PluginIo for Gate {
    fn send(&self, _request: http::Request<Bytes>, _timeout: Duration, _max: usize) -> IoFuture<http::Response<Bytes>> {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let mut open = self.open.clone();
        Box::pin(async move {
            let _ = open.wait_for(|o| *o).await;
            Ok(http::Response::new(Bytes::from_static(b"ok")))
        })
    }

    fn embed(&self, _model: String, _input: String, _timeout: Duration) -> IoFuture<Vec<f32>> {
        Box::pin(async { Err("not used".to_owned()) })
    }
}

fn resident_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

fn view() -> RequestView {
    let mut body = BytesMut::new();
    body.extend_from_slice(br#"{"model":"m","messages":[{"role":"user","content":"hello"}]}"#);
    RequestView {
        info: RequestInfo {
            request_id: "r".into(),
            tenant: "t".into(),
            key_id: "k".into(),
            model: "m".into(),
            api: Api::ChatCompletions,
            summary: BodySummary {
                message_count: 1,
                token_estimate: 10,
                stream: false,
                max_tokens: None,
                temperature: None,
                user: None,
            },
        },
        headers: Arc::new(HeaderMap::new()),
        body: BodyResource::new(body.freeze()),
        limits: None,
        cache: None,
    }
}

async fn measure(isolation: Isolation, label: &str, n: usize) {
    let (open_tx, open_rx) = tokio::sync::watch::channel(false);
    let gate = Arc::new(Gate { open: open_rx, waiting: AtomicUsize::new(0) });
    let settings = HostSettings {
        engine: EngineSettings { max_instances: 1000, max_memory_bytes: 32 << 20, tick: Duration::from_millis(1) },
        cache_dir: None,
        ..HostSettings::default()
    };
    let host = Arc::new(PluginHost::new(settings, &prometheus::Registry::new()).unwrap());
    host.services().set_io(gate.clone());
    let spec = BindingSpec {
        capabilities: Capabilities::all(),
        config_json: r#"{"mode":"http","url":"http://127.0.0.1:9/"}"#.into(),
        http_allow: vec!["127.0.0.1:9".into()],
        isolation,
        limits: CallLimits { timeout: Duration::from_secs(30), memory_bytes: 8 << 20 },
        ..BindingSpec::new("net", PluginSource::Bytes(Arc::from(sluice_plugin_host::testing::TEST_NET_GUEST)))
    };
    let binding = host.load_and_activate(spec).unwrap();
    // One call first, so that what is measured is instances, not first-use costs.
    open_tx.send_replace(true);
    host.chain().on_request(&mut view()).await.unwrap();
    open_tx.send_replace(false);
    gate.waiting.store(0, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(50)).await;

    let before = resident_bytes();
    let calls: Vec<_> = (0..n)
        .map(|_| {
            let host = Arc::clone(&host);
            tokio::spawn(async move { host.chain().on_request(&mut view()).await.is_ok() })
        })
        .collect();
    while gate.waiting.load(Ordering::SeqCst) < n {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let during = resident_bytes();
    open_tx.send_replace(true);
    let mut ok = 0;
    for call in calls {
        ok += usize::from(call.await.unwrap());
    }
    let after = resident_bytes();
    let per = |bytes: usize| bytes.saturating_sub(before) as f64 / n as f64 / 1024.0;
    println!(
        "| {label} | {n} | {ok} | {:.0} KiB | {:.0} KiB | {} |",
        per(during),
        per(after),
        binding.idle_instances()
    );
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    println!(
        "| isolation | concurrent calls | ok | RSS per call in flight | RSS per call after | warm instances kept |"
    );
    println!("|---|---|---|---|---|---|");
    runtime.block_on(async {
        for n in [64, 256] {
            measure(Isolation::PerRequest, "per-request", n).await;
            let reuse = Isolation::Reuse { max_calls: u32::MAX, max_age: Duration::from_secs(3600) };
            measure(reuse, "reuse", n).await;
        }
    });
}
