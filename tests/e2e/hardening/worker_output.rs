//! Issue 22's lower finding: random bytes from a worker were relayed as `200`. Now a whole
//! answer that is not JSON and a stream whose first event is not JSON get the client `502
//! upstream_error`, a stream that turns to garbage after its first tokens ends with an SSE error
//! event, the worker's bytes are never relayed, and the worker is blamed; in a pool with a good
//! worker beside it, every request is retried onto the good one, so the good tenant sees no
//! failure.
//!
//! The misbehaving workers are `sluice-sim` processes with its garbage faults
//! (`--garbage-body`, `--garbage-after-tokens`).

use http::StatusCode;
use serde_json::{Value, json};
use sluice_e2e::client::post;
use sluice_e2e::fleet::{start_gateway, start_sim};
use sluice_e2e::tenancy::{Load, chat};
use sluice_e2e::{API_KEY, SseStream, TENANT, TempDir};

use super::{GOOD, Pool, assert_good_unharmed, chat_stream, gateway_toml, good_alongside, is_token};

/// Never ejected, so that the garbage workers are tried on every request that picks them.
const NO_EJECTION: &str = "[pools.upstream.ejection]\nconsecutive_failures = 1000";

/// What the simulator's garbage looks like (an HTML error page): never relayed.
const GARBAGE: &str = "<html>";

fn request(model: &str, stream: bool) -> Value {
    json!({"model": model, "stream": stream, "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]})
}

fn assert_upstream_error(error: &Value) {
    assert_eq!(error["type"], "server_error", "{error}");
    assert_eq!(error["code"], "upstream_error", "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_output_that_is_not_valid_is_never_relayed_as_a_200() {
    let dir = TempDir::new("hardening-worker-output");
    let sim = start_sim(&dir, "sim", None, &[]).await;
    let garbage = ["--garbage-body", "--garbage-after-tokens", "0"];
    let mixed = start_sim(&dir, "garbage", None, &garbage).await; // beside the good worker
    let garbage_first =
        start_sim(&dir, "garbage-first", None, &[&garbage[..], &["--model", "garbage-first"]].concat()).await;
    let garbage_late =
        start_sim(&dir, "garbage-late", None, &["--garbage-after-tokens", "3", "--model", "garbage-late"]).await;
    let named = |name: &str, url: String| format!("{{ url = \"{url}\", name = \"{name}\" }}");
    let pools = [
        Pool {
            endpoints: vec![named("garbage", mixed.url()), named("sim", sim.url())],
            upstream: NO_EJECTION,
            ..Pool::llama(&[])
        },
        Pool {
            name: "garbage-first",
            models: &["garbage-first"],
            endpoints: vec![named("garbage-first", garbage_first.url())],
            upstream: NO_EJECTION,
        },
        Pool {
            name: "garbage-late",
            models: &["garbage-late"],
            endpoints: vec![named("garbage-late", garbage_late.url())],
            upstream: NO_EJECTION,
        },
    ];
    let gw = start_gateway(&dir, |l, a| gateway_toml(l, a, "", &pools, "")).await;
    let good = good_alongside(&gw, Load { requests: vec![chat(), chat_stream(3)], ..Load::new(2) }).await;
    let url = format!("{}/v1/chat/completions", gw.api());

    // A whole answer that is not JSON, and a stream whose first event is not: 502.
    for (model, stream) in [("garbage-first", false), ("garbage-first", true)] {
        let reply = post(&url, Some(API_KEY), &request(model, stream)).await;
        assert_eq!(reply.status, StatusCode::BAD_GATEWAY, "stream {stream}: {}", reply.text());
        assert_upstream_error(&reply.json()["error"]);
        assert!(!reply.text().contains(GARBAGE), "the worker's bytes were relayed: {}", reply.text());
    }
    // A stream that turns to garbage after 3 tokens: they arrive, then an error event.
    let mut stream = SseStream::open(&url, Some(API_KEY), &request("garbage-late", true)).await;
    assert_eq!(stream.status, StatusCode::OK);
    let events = stream.rest().await;
    let (last, tokens) = events.split_last().expect("events");
    assert_eq!(tokens.iter().filter(|e| is_token(e)).count(), 3, "{events:?}");
    assert_upstream_error(&serde_json::from_str::<Value>(last).unwrap()["error"]);
    assert!(!events.iter().any(|e| e.contains(GARBAGE) || e == "[DONE]"), "{events:?}");

    // The good tenant was served whole, its requests that met the garbage worker retried.
    assert_good_unharmed(good).await;
    let text = gw.metrics().await;
    let value = |name, labels: &[(&str, &str)]| sluice_e2e::metrics::sum(&text, name, labels).unwrap_or(0.0);
    // Every answer of the garbage worker beside the good one was blamed on it and retried.
    let tried = value("sluice_upstream_errors_total", &[("endpoint", "garbage"), ("kind", "stream")]);
    assert!(tried >= 1.0, "the good tenant's requests never met the garbage worker:\n{text}");
    assert_eq!(value("sluice_upstream_retries_total", &[("pool", "llama")]), tried, "{text}");
    assert_eq!(value("sluice_upstream_errors_total", &[("endpoint", "garbage")]), tried, "only its own faults: {text}");
    for (endpoint, requests) in [("garbage-first", 2.0), ("garbage-late", 1.0)] {
        let blamed = value("sluice_upstream_errors_total", &[("endpoint", endpoint), ("kind", "stream")]);
        assert_eq!(blamed, requests, "{endpoint} is blamed for each of its answers:\n{text}");
    }
    assert_eq!(value("sluice_requests_total", &[("tenant", TENANT), ("outcome", "upstream_error")]), 3.0, "{text}");
    assert_eq!(value("sluice_requests_total", &[("tenant", GOOD), ("outcome", "upstream_error")]), 0.0, "{text}");
}
