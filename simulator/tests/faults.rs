//! Cancellation, fault injection, zero-delay mode and shutdown.

mod support;

use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use serde_json::json;
use sluice_openai::ErrorBody;
use sluice_openai::response::ChatCompletionResponse;
use sluice_sim::{Faults, SimConfig};
use support::*;

#[tokio::test]
async fn dropping_a_stream_removes_the_sequence_from_the_engine() {
    let sim = start(SimConfig::default()).await;
    let url = format!("{}/v1/chat/completions", sim.base_url());
    // Long enough (thousands of steps) that it cannot finish on its own during the test.
    let body = chat("a long story", json!({"max_tokens": 20000, "stream": true}));
    let resp = send(&client(), url, &body.to_string()).await;
    let mut body = resp.into_body();
    let first = body.frame().await.unwrap().unwrap();
    assert!(first.data_ref().unwrap().starts_with(b"data: "));
    assert_eq!(sim.stats().running, 1);
    drop(body);
    eventually("running to fall to 0", || sim.stats().running == 0).await;
    let s = sim.stats();
    assert_eq!(s.requests_aborted, 1);
    assert_eq!(s.kv_usage, 0.0);
    sim.shutdown().await;
}

#[tokio::test]
async fn dropping_a_non_streaming_request_aborts_it_too() {
    let sim = start(SimConfig::default()).await;
    let url = format!("{}/v1/chat/completions", sim.base_url());
    let body = chat("never mind", json!({"max_tokens": 20000}));
    let c = client();
    let task = tokio::spawn(async move { send(&c, url, &body.to_string()).await });
    eventually("the request to run", || sim.stats().running == 1).await;
    task.abort();
    eventually("running to fall to 0", || sim.stats().running == 0).await;
    sim.shutdown().await;
}

#[tokio::test]
async fn error_rate_one_fails_everything_until_switched_back() {
    let config = SimConfig { faults: Faults { error_rate: 1.0, ..Faults::default() }, ..SimConfig::default() };
    let sim = start(config).await;
    let c = client();
    let url = format!("{}/v1/chat/completions", sim.base_url());
    for _ in 0..3 {
        let (status, body) = post(&c, url.clone(), &chat("x", json!({"max_tokens": 2}))).await;
        assert_eq!(status, 500);
        let e: ErrorBody = serde_json::from_slice(&body).unwrap();
        assert_eq!(e.error.kind, "server_error");
    }
    sim.set_faults(Faults::default());
    let (status, _) = post(&c, url, &chat("x", json!({"max_tokens": 2}))).await;
    assert_eq!(status, 200);
    let s = sim.stats();
    assert_eq!((s.requests_received, s.requests_failed), (4, 3));
    sim.shutdown().await;
}

#[tokio::test]
async fn drop_after_tokens_cuts_the_stream() {
    let sim = start(SimConfig::default()).await;
    sim.set_faults(Faults { drop_after_tokens: Some(3), ..Faults::default() });
    let url = format!("{}/v1/chat/completions", sim.base_url());
    let body = chat("cut me", json!({"max_tokens": 50, "stream": true}));
    let (events, failed) = read_events(send(&client(), url.clone(), &body.to_string()).await).await;
    assert!(failed, "the body ends in an error, not a clean end");
    assert_eq!(events.len(), 3);
    assert!(!events.iter().any(|e| e == "[DONE]"));

    // Over HTTP/2 the stream is reset the same way. A client may discard data it had buffered
    // but not yet read when the RST_STREAM arrives, so only an upper bound holds.
    let (events, failed) = read_events(send(&h2_client(), url.clone(), &body.to_string()).await).await;
    assert!(failed);
    assert!(events.len() <= 3);
    assert!(!events.iter().any(|e| e == "[DONE]"));

    // A non-streaming response is cut before its body completes (hyper normally flushes the
    // headers first, but a client may also see the cut as a failed request).
    let req = http::Request::post(url)
        .body(http_body_util::Full::new(bytes::Bytes::from(chat("cut me", json!({"max_tokens": 50})).to_string())))
        .unwrap();
    if let Ok(resp) = client().request(req).await {
        assert!(resp.into_body().collect().await.is_err());
    }
    eventually("aborted sequences to leave", || sim.stats().running == 0).await;
    sim.shutdown().await;
}

#[tokio::test]
async fn stall_delays_the_first_token_and_holds_a_batch_slot() {
    let sim = start(SimConfig::default()).await;
    sim.set_faults(Faults { stall_first_token: Duration::from_millis(300), ..Faults::default() });
    let url = format!("{}/v1/chat/completions", sim.base_url());
    let c = client();
    let started = Instant::now();
    let task = tokio::spawn(async move { post(&c, url, &chat("slow", json!({"max_tokens": 2}))).await });
    eventually("the stalled request to be running", || sim.stats().running == 1).await;
    let (status, _) = task.await.unwrap();
    assert_eq!(status, 200);
    assert!(started.elapsed() >= Duration::from_millis(300));
    sim.shutdown().await;
}

#[tokio::test]
async fn zero_delay_answers_without_an_engine() {
    let config = SimConfig { zero_delay: true, ..SimConfig::default() };
    let sim = start(config).await;
    let c = client();
    let url = format!("{}/v1/chat/completions", sim.base_url());
    let (status, body) = post(&c, url.clone(), &chat("fast", json!({"max_tokens": 7}))).await;
    assert_eq!(status, 200);
    let r: ChatCompletionResponse = serde_json::from_slice(&body).unwrap();
    assert_eq!(r.usage.completion_tokens, 7);
    assert_eq!(r.usage.cached_tokens(), 0);
    let body = chat("fast", json!({"max_tokens": 4, "stream": true, "stream_options": {"include_usage": true}}));
    let (events, failed) = read_events(send(&c, url.clone(), &body.to_string()).await).await;
    assert!(!failed);
    assert_eq!(events.len(), 4 + 1 + 1);
    assert_eq!(events.last().unwrap(), "[DONE]");

    // Many small requests, concurrently, finish quickly.
    let started = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..200 {
        let (c, url) = (c.clone(), url.clone());
        set.spawn(async move { post(&c, url, &chat("x", json!({"max_tokens": 1}))).await.0 });
    }
    while let Some(status) = set.join_next().await {
        assert_eq!(status.unwrap(), 200);
    }
    assert!(started.elapsed() < Duration::from_secs(10));
    let s = sim.stats();
    assert_eq!(s.running, 0);
    assert_eq!(s.requests_completed, 202);
    sim.shutdown().await;
}

#[tokio::test]
async fn shutdown_stops_listening() {
    let sim = start(SimConfig::default()).await;
    let addr = sim.addr();
    let clone = sim.clone();
    sim.shutdown().await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    drop(clone);
}
