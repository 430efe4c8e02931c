//! Finding 3: a stream that ended before the worker's usage chunk was billed nothing (a client
//! that dropped the last token paid 0 of 10,060 prompt tokens). Now a stream its client leaves
//! and one its worker breaks are billed the gateway's prompt estimate (request bytes / 4) and
//! the token events relayed, flagged as estimated in the admin API's usage, while the good
//! tenant alongside is billed the worker's own figures, none estimated.

use serde_json::Value;
use sluice_e2e::fleet::{start_gateway, start_sim};
use sluice_e2e::tenancy::{Load, chat, wait_until};
use sluice_e2e::{API_KEY, MODEL, SseStream, TENANT, TempDir};

use super::{
    GOOD, PATIENCE, Pool, assert_good_unharmed, chat_stream, gateway_toml, good_alongside, is_token, long_request,
    metric, prompt_estimate, usage_totals,
};

const FLAKY_MODEL: &str = "flaky-model";

/// Asserts that usage `totals` are `requests` requests billed entirely on estimates.
fn assert_all_estimated(totals: &Value, requests: i64) {
    assert_eq!(totals["requests"], requests, "{totals}");
    assert_eq!(totals["estimated_requests"], requests, "flagged as estimated: {totals}");
    assert_eq!(totals["estimated_prompt_tokens"], totals["prompt_tokens"], "{totals}");
    assert_eq!(totals["estimated_completion_tokens"], totals["completion_tokens"], "{totals}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_that_end_early_are_billed_their_estimated_prompt_and_relayed_tokens() {
    let dir = TempDir::new("hardening-usage");
    // 30 ms per token: a 500-token stream is far from its usage chunk when its client leaves.
    let slow = start_sim(&dir, "slow", None, &["--slow-token-ms", "30"]).await;
    // Breaks every stream after 5 tokens.
    let flaky = start_sim(&dir, "flaky", None, &["--model", FLAKY_MODEL, "--drop-after-tokens", "5"]).await;
    let pools = [
        Pool::llama(&[slow.url()]),
        Pool {
            name: "flaky",
            models: &[FLAKY_MODEL],
            endpoints: vec![format!("\"{}\"", flaky.url())],
            upstream: "[pools.upstream]\nmax_retries = 0",
        },
    ];
    let database = "[database]\nusage_flush_interval = \"200ms\"\n";
    let gw = start_gateway(&dir, |l, a| gateway_toml(l, a, "", &pools, database)).await;
    let mut streamed = chat_stream(3);
    streamed["stream_options"] = serde_json::json!({"include_usage": true});
    let good = good_alongside(&gw, Load { requests: vec![streamed, chat()], ..Load::new(2) }).await;
    let url = format!("{}/v1/chat/completions", gw.api());

    // A client leaves its stream after 3 tokens.
    let left = long_request(MODEL, 10_000, true, 500);
    let mut stream = SseStream::open(&url, Some(API_KEY), &left).await;
    assert_eq!(stream.status, 200);
    let mut received = 0;
    while received < 3 {
        let data = stream.next_data().await.expect("tokens before leaving");
        received += usize::from(is_token(&data));
    }
    drop(stream);

    // A worker breaks a stream after 5 tokens: the client gets them and an error event.
    let broken = long_request(FLAKY_MODEL, 2_000, true, 50);
    let mut stream = SseStream::open(&url, Some(API_KEY), &broken).await;
    assert_eq!(stream.status, 200);
    let events = stream.rest().await;
    let last: Value = serde_json::from_str(events.last().expect("events")).unwrap();
    assert!(last["error"].is_object(), "the broken stream ends with an error event: {events:?}");
    let relayed = i64::try_from(events.iter().filter(|e| is_token(e)).count()).unwrap();
    assert_eq!(relayed, 5, "{events:?}");

    wait_until("both streams are in the usage table", PATIENCE, || async {
        usage_totals(&gw, TENANT, None).await["requests"] == 2
    })
    .await;
    let left_usage = usage_totals(&gw, TENANT, Some(MODEL)).await;
    assert_all_estimated(&left_usage, 1);
    assert_eq!(left_usage["prompt_tokens"], prompt_estimate(&left), "billed the prompt estimate: {left_usage}");
    assert!(left_usage["completion_tokens"].as_i64().unwrap() >= 3, "at least the tokens it got: {left_usage}");
    let broken_usage = usage_totals(&gw, TENANT, Some(FLAKY_MODEL)).await;
    assert_all_estimated(&broken_usage, 1);
    assert_eq!(broken_usage["errors"], 1, "{broken_usage}");
    assert_eq!(broken_usage["prompt_tokens"], prompt_estimate(&broken), "{broken_usage}");
    assert_eq!(broken_usage["completion_tokens"], relayed, "{broken_usage}");

    // The good tenant: every request billed, on the worker's figures.
    let sent = assert_good_unharmed(good).await;
    wait_until("the good tenant's requests are in the usage table", PATIENCE, || async {
        usage_totals(&gw, GOOD, None).await["requests"] == sent
    })
    .await;
    let good_usage = usage_totals(&gw, GOOD, None).await;
    assert_eq!(good_usage["errors"], 0, "{good_usage}");
    assert_eq!(good_usage["estimated_requests"], 0, "the worker's figures: {good_usage}");
    assert!(good_usage["prompt_tokens"].as_i64().unwrap() > 0, "{good_usage}");

    let estimated = |outcome: &'static str| {
        let gw = &gw;
        async move { metric(gw, "sluice_usage_estimated_requests_total", &[("outcome", outcome)]).await }
    };
    assert_eq!(estimated("cancelled").await, 1.0);
    assert_eq!(estimated("upstream_error").await, 1.0);
    assert_eq!(estimated("ok").await, 0.0);
}
