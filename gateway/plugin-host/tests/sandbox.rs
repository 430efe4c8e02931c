//! The sandbox: grants, deadlines, limits, failure policies, malformed components, the artifact
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests fail loudly")]
//! cache, and hot swap under load.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;
use sluice_plugin_host::types::Health;
use sluice_plugin_host::{
    BindingSpec, Capabilities, Capability, ChunkVerdict, FailurePolicy, Hook, HostSettings, PluginError, PluginHost,
    PluginSource, RequestVerdict,
};

#[tokio::test]
async fn a_capability_not_granted_is_refused_at_load() {
    let host = host();
    let mut spec = guest("g", "continue", "a");
    spec.capabilities = Capability::ALL.into_iter().filter(|&c| c != Capability::Counters).collect::<Capabilities>();
    let err = host.load(spec).unwrap_err();
    assert_eq!(err.kind(), "not_granted");
    let message = err.to_string();
    assert!(message.contains("sluice:policy/counters@0.2.0"), "{message}");
    assert!(message.contains("`counters`"), "{message}");
    assert!(message.contains("plugin g@sha256:"), "{message}");
    // The router imports nothing: it loads with no grants at all.
    assert!(host.load(BindingSpec::builtin_router()).is_ok());
}

#[tokio::test]
async fn an_infinite_loop_is_stopped_by_its_deadline() {
    let host = host();
    let mut spec = guest("looper", "loop", "a");
    spec.limits.timeout = Duration::from_millis(20);
    host.load_and_activate(spec).unwrap();
    let started = Instant::now();
    let err = host.chain().on_request(&mut view("t")).await.unwrap_err().0;
    let took = started.elapsed();
    assert!(matches!(err, PluginError::Timeout { hook, .. } if hook == "on-request"), "{err:?}");
    assert!(took >= Duration::from_millis(20), "{took:?}");
    assert!(took < Duration::from_millis(500), "stopped promptly: {took:?}");
}

#[tokio::test]
async fn memory_growth_past_the_limit_traps_as_a_limit_error() {
    let host = host();
    host.load_and_activate(per_request(guest("hog", "grow", "a"))).unwrap();
    let err = host.chain().on_request(&mut view("t")).await.unwrap_err().0;
    assert!(matches!(err, PluginError::Limit { ref limit, .. } if limit == "memory"), "{err:?}");
    assert_eq!(err.kind(), "limit");
}

#[tokio::test]
async fn a_trap_applies_the_failure_policy() {
    let host = host();
    host.load_and_activate(guest("closed", "trap", "a")).unwrap();
    let err = host.chain().on_request(&mut view("t")).await.unwrap_err().0;
    assert!(matches!(err, PluginError::Trap { .. }), "{err:?}");
    assert!(err.to_string().contains("closed@sha256:"));
    // Route traps too, and the failure policy applies there as well.
    let c = [candidate(0, 0, Health::Healthy)];
    assert!(host.chain().route("acme", &route_request(), &c).await.is_err());

    let mut open = guest("closed", "trap", "a");
    open.failure = FailurePolicy::Open;
    host.load_and_activate(open).unwrap();
    assert!(matches!(host.chain().on_request(&mut view("t")).await.unwrap(), RequestVerdict::Continue(_)));
    assert_eq!(host.chain().route("acme", &route_request(), &c).await.unwrap(), None, "a failed-open router abstains");
}

#[tokio::test]
async fn the_gateway_keeps_serving_after_traps_in_reused_instances() {
    let host = host();
    host.load_and_activate(guest("g", "trap", "a")).unwrap();
    for _ in 0..20 {
        assert!(host.chain().on_request(&mut view("t")).await.is_err());
    }
    assert_eq!(host.chain().get("g").unwrap().idle_instances(), 0, "trapped instances are not kept");
    host.load_and_activate(guest("g", "state", "a")).unwrap();
    assert!(host.chain().on_request(&mut view("t")).await.is_ok());
}

#[tokio::test]
async fn malformed_and_incompatible_components_are_rejected_at_load() {
    let host = host();
    let load = |bytes: &[u8], required: Vec<Hook>| {
        let spec = BindingSpec { required, ..BindingSpec::new("bad", PluginSource::Bytes(Arc::from(bytes))) };
        host.load(spec).unwrap_err()
    };
    let err = load(b"not wasm at all", vec![]);
    assert_eq!(err.kind(), "compile");

    // A core module is not a component.
    let err = load(b"\0asm\x01\0\0\0", vec![]);
    assert_eq!(err.kind(), "compile", "{err}");

    // An empty component exports no hook.
    let err = load(b"\0asm\x0d\0\x01\0", vec![]);
    assert_eq!(err.kind(), "incompatible", "{err}");
    assert!(err.to_string().contains("exports none of the hooks"), "{err}");
    assert!(err.to_string().contains("sluice:policy/route@0.2.0"), "{err}");

    // The router used where an on-request hook is required.
    let err = load(sluice_plugin_host::builtin::ROUTER, vec![Hook::OnRequest]);
    assert_eq!(err.kind(), "missing_export");
    assert!(err.to_string().contains("does not export sluice:policy/on-request@0.2.0"), "{err}");
}

#[tokio::test]
async fn precompiled_artifacts_are_cached_by_content() {
    let dir = std::env::temp_dir().join(format!("sluice-artifacts-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let settings = HostSettings { cache_dir: Some(dir.clone()), ..settings() };
    let load = || {
        let host = PluginHost::new(settings.clone(), &prometheus::Registry::new()).unwrap();
        let started = Instant::now();
        let binding = host.load(BindingSpec::builtin_router()).unwrap();
        (binding.version.provenance, started.elapsed())
    };
    let (first, compile) = load();
    let (second, deserialize) = load();
    assert_eq!(first, sluice_plugin_host::artifacts::Provenance::Compiled);
    assert_eq!(second, sluice_plugin_host::artifacts::Provenance::Cached);
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
    eprintln!("compile {compile:?}, deserialize {deserialize:?}");
    assert!(deserialize < compile);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_swap_under_load_mixes_no_versions_within_a_request() {
    let host = Arc::new(host());
    let v1 = || {
        let mut s = guest("g", "rewrite", "v1");
        s.source = PluginSource::Bytes(Arc::from(sluice_plugin_host::testing::variant(
            sluice_plugin_host::testing::TEST_GUEST,
            "v1",
        )));
        s
    };
    let v2 = || {
        let mut s = guest("g", "rewrite", "v2");
        s.source = PluginSource::Bytes(Arc::from(sluice_plugin_host::testing::variant(
            sluice_plugin_host::testing::TEST_GUEST,
            "v2",
        )));
        s
    };
    let b1 = Arc::new(host.load(v1()).unwrap());
    let b2 = Arc::new(host.load(v2()).unwrap());
    assert_ne!(b1.version.version, b2.version.version);
    host.activate(Arc::clone(&b1));

    let stop = Arc::new(AtomicBool::new(false));
    let swapper = {
        let (host, stop) = (Arc::clone(&host), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut swaps = 0u32;
            while !stop.load(Ordering::Relaxed) {
                host.activate(Arc::clone(if swaps.is_multiple_of(2) { &b2 } else { &b1 }));
                swaps += 1;
                std::thread::sleep(Duration::from_micros(200));
            }
            swaps
        })
    };
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let host = Arc::clone(&host);
            tokio::spawn(async move {
                let mut seen = std::collections::HashSet::new();
                for _ in 0..300 {
                    // One request: one chain snapshot for all its hooks.
                    let chain = host.chain();
                    let tag_on_request = match chain.on_request(&mut view("t")).await.unwrap() {
                        RequestVerdict::Continue(edits) => edits.set_headers[0].1.to_str().unwrap().to_owned(),
                        other => panic!("{other:?}"),
                    };
                    tokio::task::yield_now().await;
                    let mut headers = Arc::new(http::HeaderMap::new());
                    chain.on_response_headers(&info("t"), 200, &mut headers, None).await.unwrap();
                    let tag_on_response = headers.get("x-plugin-tag").unwrap().to_str().unwrap().to_owned();
                    assert_eq!(tag_on_request, tag_on_response, "one request saw two versions");
                    seen.insert(tag_on_request);
                }
                seen
            })
        })
        .collect();
    let mut seen = std::collections::HashSet::new();
    for w in workers {
        seen.extend(w.await.unwrap());
    }
    stop.store(true, Ordering::Relaxed);
    let swaps = swapper.join().unwrap();
    assert!(swaps > 10, "{swaps} swaps");
    assert_eq!(seen.len(), 2, "both versions served requests: {seen:?}");

    // Rollback re-activates the version the last swap replaced.
    let before = host.chain().get("g").unwrap().version.version.clone();
    assert!(host.rollback("g"));
    assert_ne!(host.chain().get("g").unwrap().version.version, before);
}

#[tokio::test]
async fn a_reused_instance_serves_many_calls_without_leaking_handles() {
    let host = host();
    let mut spec = guest("g", "headers", "a");
    spec.isolation = sluice_plugin_host::Isolation::Reuse { max_calls: u32::MAX, max_age: Duration::from_secs(3600) };
    // This is about handles, not deadlines: 80,000 calls on a busy machine may see one
    // preempted past the helper's 50 ms.
    spec.limits.timeout = Duration::from_secs(10);
    host.load_and_activate(spec).unwrap();
    let chain = host.chain();
    let mut v = view("t");
    // Three handles lent per iteration: past wasmtime's 100 000 per store if any were kept.
    for i in 0..40_000 {
        chain.on_request(&mut v).await.unwrap_or_else(|e| panic!("call {i}: {e}"));
        let mut headers = Arc::new(http::HeaderMap::new());
        chain
            .on_response_headers(&info("t"), 200, &mut headers, None)
            .await
            .unwrap_or_else(|e| panic!("call {i}: {e}"));
    }
    assert_eq!(chain.get("g").unwrap().idle_instances(), 1, "one instance served them all");
}

#[tokio::test]
async fn a_chunk_hook_that_would_wait_on_io_is_refused_at_load() {
    let host = host();
    let spec = BindingSpec {
        capabilities: Capabilities::all(),
        ..BindingSpec::new("audit", PluginSource::Bytes(Arc::from(sluice_plugin_host::testing::TEST_CHUNK_NET_GUEST)))
    };
    let err = host.load(spec).unwrap_err();
    assert_eq!(err.kind(), "incompatible", "{err}");
    let message = err.to_string();
    assert!(message.contains("sluice:policy/on-response-chunk@0.2.0"), "{message}");
    assert!(message.contains("http"), "{message}");
}

#[tokio::test]
async fn chunk_hook_traps_and_loops_apply_the_failure_policy() {
    let host = host();
    let mut spec = guest("chunky", "continue", "a");
    spec.config_json = r#"{"chunk":"trap"}"#.to_owned();
    host.load_and_activate(spec.clone()).unwrap();
    let info = info("t");
    assert_eq!(host.chain().on_response_chunk(&info, true, 0, "{}").unwrap(), ChunkVerdict::Forward);
    let err = host.chain().on_response_chunk(&info, true, 1, "{}").unwrap_err().0;
    assert!(matches!(err, PluginError::Trap { hook, .. } if hook == "on-response-chunk"), "{err:?}");

    spec.failure = FailurePolicy::Open;
    host.load_and_activate(spec.clone()).unwrap();
    assert_eq!(host.chain().on_response_chunk(&info, true, 1, "{}").unwrap(), ChunkVerdict::Forward);

    spec.failure = FailurePolicy::Closed;
    spec.config_json = r#"{"chunk":"loop"}"#.to_owned();
    spec.limits.timeout = Duration::from_millis(20);
    host.load_and_activate(spec).unwrap();
    let started = Instant::now();
    let err = host.chain().on_response_chunk(&info, true, 0, "{}").unwrap_err().0;
    assert!(matches!(err, PluginError::Timeout { hook, .. } if hook == "on-response-chunk"), "{err:?}");
    assert!(started.elapsed() < Duration::from_millis(500), "stopped promptly: {:?}", started.elapsed());
}
