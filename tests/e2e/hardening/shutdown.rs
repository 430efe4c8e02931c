//! Finding 5: streams still open when the shutdown grace period ran out were cut mid-event with
//! no error event, and none of them reached the usage table. Now, on `SIGTERM` with a short
//! grace, the open stream gets the `shutting_down` SSE error event and a clean end of body, the
//! process exits 0, and its usage is in the store: a gateway restarted on the same data
//! directory reports it (with the good tenant's requests, billed on the worker's figures). The
//! usage writer flushes once an hour here, so only its final flush can have written them.

use std::path::PathBuf;

use serde_json::Value;
use sluice_e2e::fleet::{Launch, start_gateway_with, start_sim};
use sluice_e2e::tenancy::Load;
use sluice_e2e::{API_KEY, MODEL, SseStream, TENANT, TempDir};

use super::{
    GOOD, PATIENCE, Pool, assert_good_unharmed, gateway_toml, good_alongside, is_token, long_request, prompt_estimate,
    usage_totals,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_open_past_the_grace_period_gets_an_error_event_and_is_billed() {
    let dir = TempDir::new("hardening-shutdown");
    // 400 tokens, 50 ms apart: 20 s of stream, far past the grace period.
    let sim = start_sim(&dir, "sim", None, &["--slow-token-ms", "50"]).await;
    let data_dir: PathBuf = dir.path().join("data");
    let launch = |name: &str| Launch { name: name.to_owned(), data_dir: Some(data_dir.clone()), ..Launch::default() };
    let toml = |l, a| {
        gateway_toml(
            l,
            a,
            "shutdown_grace = \"500ms\"",
            &[Pool::llama(&[sim.url()])],
            "[database]\nusage_flush_interval = \"1h\"\n",
        )
    };
    let mut gw = start_gateway_with(&dir, &launch("before"), toml).await;
    let good = good_alongside(&gw, Load::new(2)).await;

    let body = long_request(MODEL, 10_000, true, 400);
    let mut stream = SseStream::open(&format!("{}/v1/chat/completions", gw.api()), Some(API_KEY), &body).await;
    assert_eq!(stream.status, 200);
    let first = stream.next_data().await.expect("the stream has started");
    let good_requests = assert_good_unharmed(good).await;

    gw.proc.signal("TERM");
    // `rest` fails the test if the body breaks instead of ending.
    let mut events = vec![first];
    events.extend(stream.rest().await);
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap_or_default();
    assert_eq!(last["error"]["code"], "shutting_down", "the stream ends with the shutdown's error event: {events:?}");
    assert!(!events.iter().any(|e| e == "[DONE]"), "{events:?}");
    let relayed = i64::try_from(events.iter().filter(|e| is_token(e)).count()).unwrap();
    assert!(relayed < 400, "the stream was drained, not cut");

    let exit = gw.proc.wait_exit(PATIENCE).await;
    assert!(exit.is_some_and(|s| s.success()), "exit status {exit:?}\n{}", gw.proc.diagnostics());
    let log = gw.proc.stderr();
    assert!(log.contains("grace period over: cutting open streams"), "{log}");

    // The same store, read through a new gateway's admin API.
    let gw = start_gateway_with(&dir, &launch("after"), toml).await;
    let cut = usage_totals(&gw, TENANT, None).await;
    assert_eq!(cut["requests"], 1, "the cut stream's record made the final flush: {cut}");
    assert_eq!(cut["errors"], 1, "{cut}");
    assert_eq!(cut["prompt_tokens"], prompt_estimate(&body), "{cut}");
    assert_eq!(cut["completion_tokens"], relayed, "{cut}");
    assert_eq!(cut["estimated_requests"], 1, "{cut}");
    let good = usage_totals(&gw, GOOD, None).await;
    assert_eq!(good["requests"], good_requests, "every request of the good tenant is billed: {good}");
    assert_eq!((good["errors"].as_i64(), good["estimated_requests"].as_i64()), (Some(0), Some(0)), "{good}");
}
