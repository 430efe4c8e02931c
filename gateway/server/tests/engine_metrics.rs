//! Engine metrics have one reader, the proxy's upstream layer: it reads each worker's own page on
//! an interval, route plugins' candidates carry the figures with their age, a figure older than
//! `engine_metrics.max_age` is withheld, and the live view shows the same readings.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests fail loudly")]

use std::sync::Arc;
use std::time::Duration;

use http::{Method, StatusCode};
use serde_json::json;
use sluice_plugin_host::types::Candidate;
use sluice_test_support::{
    ADMIN_TOKEN, GatewayOptions, SseStream, TestGateway, TestStore, chat_body, fresh_sqlite, full_body, request,
    wait_until, wait_until_async,
};

const WAIT: Duration = Duration::from_secs(10);

fn candidates(gw: &TestGateway) -> Vec<Candidate> {
    let pool = Arc::clone(&gw.running.gateway().upstreams().pools[0]);
    let mut candidates = pool.candidates(&[], &[], 16);
    candidates.sort_by_key(|c| c.id);
    candidates
}

async fn scrapes(gw: &TestGateway, endpoint: &str, outcome: &str) -> f64 {
    gw.metric("sluice_engine_scrapes_total", &[("endpoint", endpoint), ("outcome", outcome)]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_figures_reach_routing_and_the_live_view_and_are_withheld_once_stale() {
    let (store, _dir) = fresh_sqlite().await;
    let options = GatewayOptions {
        store: Some(TestStore(Arc::clone(&store))),
        extra_toml: "[upstream.engine_metrics]\ninterval = \"100ms\"\ntimeout = \"500ms\"\nmax_age = \"1s\"\n".into(),
        ..GatewayOptions::default()
    };
    let mut gw = TestGateway::start(2, options).await;

    let read = wait_until_async(WAIT, || async { scrapes(&gw, "sim-0", "ok").await >= 1.0 }).await
        && wait_until_async(WAIT, || async { scrapes(&gw, "sim-1", "ok").await >= 1.0 }).await;
    assert!(read, "both engines' pages were read");
    for c in candidates(&gw) {
        let m = c.stats.metrics.unwrap_or_else(|| panic!("candidate {} has engine figures", c.id));
        assert_eq!((m.running, m.waiting), (0, 0), "an idle engine");
        assert!((0.0..=1.0).contains(&m.kv_usage) && m.age_ms <= 1000, "{m:?}");
    }

    // A long answer in progress shows in its worker's batch at the next read.
    let mut stream =
        gw.chat_stream(&chat_body("tell me a long story", json!({"stream": true, "max_tokens": 4000}))).await;
    assert!(stream.next().await.is_some(), "the answer started");
    let busy =
        wait_until(WAIT, || candidates(&gw).iter().any(|c| c.stats.metrics.is_some_and(|m| m.running == 1))).await;
    assert!(busy, "the running request shows in the engine figures: {:?}", candidates(&gw));

    // The live view shows what routing sees.
    let live = gw.admin_url("/admin/api/live");
    let response = gw.client.send(request(Method::GET, &live, Some(ADMIN_TOKEN), full_body(""))).await;
    assert_eq!(response.status(), StatusCode::OK);
    let mut frames = SseStream::new(response);
    let mut shown = None;
    for _ in 0..10 {
        let Some(event) = frames.next().await else { break };
        let Some(frame) = event.json() else { continue };
        let workers = frame["workers"].as_array().cloned().unwrap_or_default();
        if workers.len() == 2 && workers.iter().all(|w| w["engine"]["kv_cache_usage"].is_number()) {
            shown = Some(workers);
            break;
        }
    }
    let workers = shown.expect("a live frame with both engines' figures");
    assert!(workers.iter().any(|w| w["engine"]["running"] == 1.0), "{workers:?}");
    drop(frames);
    drop(stream);

    // sim-1 stops answering: its last reading ages past max_age and is withheld from routing,
    // while sim-0's stays fresh.
    gw.sims.remove(1).shutdown().await;
    let failing = wait_until_async(WAIT, || async {
        scrapes(&gw, "sim-1", "error").await + scrapes(&gw, "sim-1", "timeout").await >= 1.0
    })
    .await;
    assert!(failing, "failed reads are counted");
    let stale = wait_until(WAIT, || {
        let c = candidates(&gw);
        c.iter().any(|c| c.id == 1 && c.stats.metrics.is_none())
    })
    .await;
    assert!(stale, "a stale reading is withheld: {:?}", candidates(&gw));
    let fresh = candidates(&gw).into_iter().find(|c| c.id == 0).and_then(|c| c.stats.metrics);
    assert!(fresh.is_some_and(|m| m.age_ms <= 1000), "{fresh:?}");
    gw.shutdown().await;
}
