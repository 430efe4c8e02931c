//! The pools' autoscaling signal through a running gateway: idle engines ask for fewer workers,
//! a TTFT SLO being missed asks for more (at most double), and the inputs are published beside
//! the desired replicas.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests fail loudly")]

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use sluice_store::model::{Actor, Slo};
use sluice_test_support::metrics::{samples, value};
use sluice_test_support::{
    GatewayOptions, POOL, TENANT, TestGateway, TestStore, chat_body, fresh_sqlite, wait_until_async,
};

const WAIT: Duration = Duration::from_secs(20);

fn load(text: &str, input: &str) -> Option<f64> {
    samples(text, "sluice_pool_load_input")
        .find(|(labels, _)| labels.contains(&("pool", POOL)) && labels.contains(&("input", input)))
        .map(|(_, v)| v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_engines_ask_for_fewer_workers_and_a_missed_ttft_slo_for_more() {
    let (store, _dir) = fresh_sqlite().await;
    let options = GatewayOptions {
        store: Some(TestStore(Arc::clone(&store))),
        extra_toml: "[autoscaling]\ninterval = \"200ms\"\nwindow = \"1s\"\n\
                     [upstream.engine_metrics]\ninterval = \"100ms\"\n"
            .into(),
        ..GatewayOptions::default()
    };
    let gw = TestGateway::start(2, options).await;

    // Idle: the engines' KV caches are empty, nothing is judged: one worker would do.
    let idle = wait_until_async(WAIT, || async {
        let text = gw.metrics_text().await;
        load(&text, "kv_usage") == Some(0.0)
            && value(&text, "sluice_pool_desired_replicas", &[("pool", POOL)]) == 1.0
            && load(&text, "available_endpoints") == Some(2.0)
            && load(&text, "ttft_slo_ratio").is_none()
    })
    .await;
    assert!(idle, "an idle pool asks for one worker:\n{}", gw.metrics_text().await);

    // A TTFT target no worker can meet: every streamed answer misses it many times over.
    let slo = Slo { model: "*".into(), ttft_p95_ms: Some(1), tpot_p95_ms: None, target_attainment: 0.9 };
    store.set_slos(&Actor::admin(), TENANT, &[slo]).await.unwrap();
    let body = chat_body("hello there", json!({"stream": true, "max_tokens": 2}));
    let busy = wait_until_async(WAIT, || async {
        let events = gw.chat_stream(&body).await.rest().await;
        assert!(events.last().is_some_and(|e| e.is_done()), "{events:?}");
        let text = gw.metrics_text().await;
        load(&text, "ttft_slo_ratio").is_some_and(|r| r > 1.0)
            && value(&text, "sluice_pool_desired_replicas", &[("pool", POOL)]) == 4.0
    })
    .await;
    let text = gw.metrics_text().await;
    assert!(busy, "a missed SLO asks for twice the workers, no more:\n{text}");
    assert!(value(&text, "sluice_pool_load_ratio", &[("pool", POOL)]) > 1.0);
    gw.shutdown().await;
}
