//! Every request a worker worked on is billed, however it ended. A stream that ends before the
//! worker's usage chunk (the client leaves, the worker breaks) and an answer the client left
//! before it came are recorded with the gateway's own figures: the prompt estimate (request
//! bytes / 4) and the token events relayed, flagged as estimated in the usage rows and counted
//! by `sluice_usage_estimated_requests_total`. A tenant served whole alongside is billed the
//! worker's figures, none of them estimated.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests fail loudly")]

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use sluice_sim::Faults;
use sluice_store::Backend;
use sluice_store::model::{Timestamp, UsageCounts, UsageQuery};
use sluice_test_support::{
    GatewayOptions, TENANT, TestClient, TestGateway, TestStore, chat_body, fresh_sqlite, wait_until, wait_until_async,
};
use tokio::io::AsyncWriteExt;

const WAIT: Duration = Duration::from_secs(15);
const BRAVO: &str = "bravo";
const BRAVO_KEY: &str = "sk-bravo-0123456789";

fn options(store: &Arc<dyn Backend>) -> GatewayOptions {
    GatewayOptions {
        store: Some(TestStore(Arc::clone(store))),
        extra_toml: format!("[[tenants]]\nname = \"{BRAVO}\"\napi_keys = [\"{BRAVO_KEY}\"]\n"),
        ..GatewayOptions::default()
    }
}

/// A prompt of about `tokens` tokens as the gateway estimates them (4 bytes each).
fn long_prompt(tokens: usize) -> String {
    "lorem ipsum dolor sit amet ".repeat(tokens * 4 / 27)
}

/// The tenant's usage this hour, summed over its rows.
async fn usage(store: &dyn Backend, tenant: &str) -> UsageCounts {
    let now = Timestamp::now().unix_seconds();
    let query = UsageQuery { tenant: Some(tenant.into()), from: now - 3600, to: now + 60, ..Default::default() };
    let mut total = UsageCounts::default();
    for row in store.usage(&query).await.unwrap() {
        total.merge(&row.counts);
    }
    total
}

/// Bravo's requests, streamed and whole, all answered in full; returns the tokens their usage
/// reported (prompt, completion).
async fn well_behaved(gw: &TestGateway, requests: usize) -> (i64, i64) {
    let client = TestClient::http1();
    let url = gw.url("/v1/chat/completions");
    let (mut prompt, mut completion) = (0, 0);
    for i in 0..requests {
        let stream = i % 2 == 0;
        let extra = if stream {
            json!({"stream": true, "max_tokens": 4, "stream_options": {"include_usage": true}})
        } else {
            json!({"max_tokens": 4})
        };
        let body = chat_body(&format!("bravo question {i}"), extra);
        let usage: Value = if stream {
            let mut events = client.post_stream(&url, Some(BRAVO_KEY), &body).await;
            let rest = events.rest().await;
            assert!(!events.broke, "bravo's stream broke: {rest:?}");
            assert!(rest.iter().all(|e| !e.is_error()), "bravo's stream failed: {rest:?}");
            rest.iter().find(|e| e.has_usage()).and_then(|e| e.json()).expect("a usage chunk")["usage"].clone()
        } else {
            let reply = client.post_json_whole(&url, Some(BRAVO_KEY), &body).await;
            assert_eq!(reply.status, 200, "{}", reply.text());
            reply.json()["usage"].clone()
        };
        prompt += usage["prompt_tokens"].as_i64().unwrap();
        completion += usage["completion_tokens"].as_i64().unwrap();
    }
    (prompt, completion)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_the_client_leaves_is_billed_its_prompt_and_the_tokens_it_got() {
    let (store, _dir) = fresh_sqlite().await;
    let gw = TestGateway::start(1, options(&store)).await;
    // 500 tokens, 30 ms apart: the stream is far from its usage chunk when the client leaves.
    gw.sims[0].set_faults(Faults { slow_token: Duration::from_millis(30), ..Faults::default() });
    let body = chat_body(&long_prompt(10_000), json!({"stream": true, "max_tokens": 500}));
    let estimate = i64::try_from(body.to_string().len() / 4).unwrap();

    let leave = async {
        let mut stream = gw.chat_stream(&body).await;
        let mut received = 0;
        while received < 3 {
            if stream.next().await.expect("tokens before leaving").content().is_some_and(|c| !c.is_empty()) {
                received += 1;
            }
        }
    };
    // Bravo is served while acme's stream runs and after it was left.
    let ((), (bravo_prompt, bravo_completion)) = tokio::join!(leave, well_behaved(&gw, 6));

    let billed = wait_until_async(WAIT, || async { usage(&*store, TENANT).await.requests == 1 }).await;
    let acme = usage(&*store, TENANT).await;
    assert!(billed, "the left stream was never written: {acme:?}");
    assert_eq!(acme.prompt_tokens, estimate, "billed the prompt estimate: {acme:?}");
    assert!(acme.completion_tokens >= 3, "billed at least the tokens the client got: {acme:?}");
    assert_eq!(
        (acme.estimated_requests, acme.estimated_prompt_tokens, acme.estimated_completion_tokens),
        (1, acme.prompt_tokens, acme.completion_tokens),
        "flagged as estimated: {acme:?}"
    );

    let written = wait_until_async(WAIT, || async { usage(&*store, BRAVO).await.requests == 6 }).await;
    let bravo = usage(&*store, BRAVO).await;
    assert!(written, "bravo's requests: {bravo:?}");
    assert_eq!(bravo.errors, 0, "{bravo:?}");
    assert_eq!((bravo.prompt_tokens, bravo.completion_tokens), (bravo_prompt, bravo_completion), "{bravo:?}");
    assert_eq!(
        (bravo.estimated_requests, bravo.estimated_prompt_tokens, bravo.estimated_completion_tokens),
        (0, 0, 0),
        "the worker's figures: {bravo:?}"
    );
    assert_eq!(gw.metric("sluice_usage_estimated_requests_total", &[("outcome", "cancelled")]).await, 1.0);
    assert_eq!(gw.metric("sluice_usage_estimated_requests_total", &[("outcome", "ok")]).await, 0.0);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_the_worker_breaks_is_billed_on_estimates() {
    let (store, _dir) = fresh_sqlite().await;
    let gw = TestGateway::start(1, GatewayOptions { max_retries: Some(0), ..options(&store) }).await;
    gw.sims[0].set_faults(Faults { drop_after_tokens: Some(5), ..Faults::default() });
    let body = chat_body(&long_prompt(2_000), json!({"stream": true, "max_tokens": 50}));
    let estimate = i64::try_from(body.to_string().len() / 4).unwrap();

    let mut stream = gw.chat_stream(&body).await;
    let events = stream.rest().await;
    assert!(events.last().is_some_and(|e| e.is_error()), "the stream ends with an error event: {events:?}");
    let relayed = i64::try_from(events.iter().filter(|e| e.content().is_some_and(|c| !c.is_empty())).count()).unwrap();

    let billed = wait_until_async(WAIT, || async { usage(&*store, TENANT).await.requests == 1 }).await;
    let acme = usage(&*store, TENANT).await;
    assert!(billed, "{acme:?}");
    assert_eq!((acme.prompt_tokens, acme.completion_tokens), (estimate, relayed), "{acme:?}");
    assert_eq!((acme.estimated_requests, acme.errors), (1, 1), "{acme:?}");
    assert_eq!(gw.metric("sluice_usage_estimated_requests_total", &[("outcome", "upstream_error")]).await, 1.0);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_before_a_whole_answer_is_billed_its_prompt() {
    let gw = TestGateway::start(1, GatewayOptions::default()).await;
    let sim = gw.sims[0].clone();
    sim.set_faults(Faults { stall_first_token: Duration::from_secs(60), ..Faults::default() });
    let body = chat_body(&long_prompt(1_000), json!({"max_tokens": 4})).to_string();
    let estimate = (body.len() / 4) as f64;
    let raw = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: {}\r\nauthorization: Bearer {}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        gw.data_addr(),
        gw.key,
        body.len()
    );
    let mut socket = tokio::net::TcpStream::connect(gw.data_addr()).await.unwrap();
    socket.write_all(raw.as_bytes()).await.unwrap();
    assert!(wait_until(WAIT, || sim.stats().running + sim.stats().waiting == 1).await, "the worker has it");
    drop(socket);

    let recorded = wait_until_async(WAIT, || async {
        gw.metric("sluice_usage_estimated_requests_total", &[("outcome", "cancelled")]).await == 1.0
    })
    .await;
    assert!(recorded, "{}", gw.metrics_text().await);
    let prompt = gw.metric("sluice_tokens_total", &[("tenant", TENANT), ("type", "prompt")]).await;
    assert_eq!(prompt, estimate, "billed the prompt estimate");
    gw.shutdown().await;
}
