//! Failing workers: retries before the first byte, none after it, passive ejection, active
//! health checks, timeouts.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests fail loudly")]

use std::time::Duration;

use serde_json::json;
use sluice_sim::Faults;
use sluice_test_support::metrics::value;
use sluice_test_support::{GatewayOptions, POOL, TENANT, TestGateway, chat_body, wait_until, wait_until_async};

const WAIT: Duration = Duration::from_secs(10);

fn stream_body(max_tokens: u32) -> serde_json::Value {
    chat_body("hello there", json!({"stream": true, "max_tokens": max_tokens}))
}

async fn healthy_gauge(gw: &TestGateway, endpoint: &str) -> f64 {
    gw.metric("sluice_endpoint_healthy", &[("pool", POOL), ("endpoint", endpoint)]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_worker_is_retried_on_the_other_one() {
    // Ejection out of the way: this test is about retries alone.
    let opts = GatewayOptions { ejection_failures: Some(100), ..GatewayOptions::default() };
    let gw = TestGateway::start(2, opts).await;
    gw.sims[0].set_faults(Faults { error_rate: 1.0, ..Faults::default() });

    for i in 0..6 {
        let body = if i % 2 == 0 { stream_body(4) } else { chat_body("hello there", json!({"max_tokens": 4})) };
        if i % 2 == 0 {
            let events = gw.chat_stream(&body).await.rest().await;
            assert!(events.last().is_some_and(|e| e.is_done()), "request {i}: {events:?}");
        } else {
            let reply = gw.chat(&body).await;
            assert_eq!(reply.status, 200, "request {i}: {}", reply.text());
        }
    }
    let bad = gw.sims[0].stats();
    let good = gw.sims[1].stats();
    assert!(bad.requests_received >= 1, "the failing worker was tried: {bad:?}");
    assert_eq!(bad.requests_failed, bad.requests_received);
    assert_eq!(good.requests_completed, 6, "every request was answered by the healthy worker");
    let text = gw.metrics_text().await;
    assert_eq!(
        value(&text, "sluice_upstream_retries_total", &[("pool", POOL)]),
        bad.requests_received as f64,
        "one retry per failed attempt"
    );
    assert_eq!(
        value(&text, "sluice_upstream_errors_total", &[("endpoint", "sim-0"), ("kind", "status_5xx")]),
        bad.requests_received as f64
    );
    assert_eq!(value(&text, "sluice_requests_total", &[("tenant", TENANT), ("outcome", "ok")]), 6.0);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_first_token_times_out_and_is_retried() {
    let opts = GatewayOptions {
        first_byte_timeout: Some(Duration::from_millis(300)),
        ejection_failures: Some(100),
        ..GatewayOptions::default()
    };
    let gw = TestGateway::start(2, opts).await;
    gw.sims[0].set_faults(Faults { stall_first_token: Duration::from_secs(30), ..Faults::default() });

    for i in 0..4 {
        let events = gw.chat_stream(&stream_body(4)).await.rest().await;
        assert!(events.last().is_some_and(|e| e.is_done()), "request {i}: {events:?}");
    }
    let stalled = gw.sims[0].stats().requests_received;
    assert!(stalled >= 1, "the stalled worker was tried");
    let text = gw.metrics_text().await;
    assert_eq!(value(&text, "sluice_upstream_retries_total", &[("pool", POOL)]), stalled as f64);
    assert_eq!(
        value(&text, "sluice_upstream_errors_total", &[("endpoint", "sim-0"), ("kind", "timeout")]),
        stalled as f64
    );
    // The abandoned attempts were cancelled on the worker, not left generating.
    let sim = gw.sims[0].clone();
    assert!(wait_until(WAIT, || sim.stats().running == 0 && sim.stats().waiting == 0).await, "{:?}", sim.stats());
    assert_eq!(gw.sims[1].stats().requests_completed, 4);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_breaks_after_its_first_byte_is_not_retried() {
    let gw = TestGateway::start(2, GatewayOptions::default()).await;
    gw.sims[0].set_faults(Faults { drop_after_tokens: Some(3), ..Faults::default() });

    // Send until a request lands on the faulty worker; the others must succeed normally.
    let mut broken = None;
    for i in 0..6 {
        let before = (gw.sims[0].stats().requests_received, gw.sims[1].stats().requests_received);
        let events = gw.chat_stream(&stream_body(10)).await.rest().await;
        let after = (gw.sims[0].stats().requests_received, gw.sims[1].stats().requests_received);
        if after.0 > before.0 {
            assert_eq!(after.0, before.0 + 1, "request {i}: one attempt on the faulty worker");
            assert_eq!(after.1, before.1, "request {i}: no retry on the healthy worker after the first byte");
            broken = Some(events);
            break;
        }
        assert!(events.last().is_some_and(|e| e.is_done()), "request {i} on the healthy worker: {events:?}");
    }
    let events = broken.expect("the faulty worker got a request within 6 tries");
    let (last, tokens) = events.split_last().expect("some events");
    assert_eq!(tokens.len(), 3, "the tokens sent before the cut reached the client: {events:?}");
    assert!(tokens.iter().all(|e| e.content().is_some()));
    assert!(last.is_error(), "the stream ends with an error event: {}", last.data);
    let error = &last.json().unwrap()["error"];
    assert_eq!(error["type"], "server_error");
    assert!(!events.iter().any(|e| e.is_done()), "a broken stream does not claim [DONE]");

    let text = gw.metrics_text().await;
    assert_eq!(value(&text, "sluice_upstream_retries_total", &[]), 0.0);
    assert_eq!(value(&text, "sluice_upstream_errors_total", &[("endpoint", "sim-0"), ("kind", "stream")]), 1.0);
    assert_eq!(value(&text, "sluice_requests_total", &[("tenant", TENANT), ("outcome", "upstream_error")]), 1.0);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consecutive_failures_eject_a_worker_and_traffic_moves_to_the_healthy_one() {
    let opts = GatewayOptions {
        ejection_failures: Some(2),
        ejection_base: Some(Duration::from_secs(60)),
        ..GatewayOptions::default()
    };
    let gw = TestGateway::start(2, opts).await;
    // Answers 500 to requests but passes health checks: only passive ejection can catch it.
    gw.sims[0].set_faults(Faults { error_rate: 1.0, ..Faults::default() });

    let mut ejected = false;
    for i in 0..20 {
        let reply = gw.chat(&chat_body("hello there", json!({"max_tokens": 2}))).await;
        assert_eq!(reply.status, 200, "request {i} retried onto the healthy worker: {}", reply.text());
        if gw.metric("sluice_endpoint_ejections_total", &[("endpoint", "sim-0")]).await == 1.0 {
            ejected = true;
            break;
        }
    }
    assert!(ejected, "never ejected after 20 requests");
    assert_eq!(gw.sims[0].stats().requests_received, 2, "ejected after exactly 2 consecutive failures");
    assert_eq!(healthy_gauge(&gw, "sim-0").await, 0.0);

    let retries = gw.metric("sluice_upstream_retries_total", &[]).await;
    for _ in 0..8 {
        let reply = gw.chat(&chat_body("hello there", json!({"max_tokens": 2}))).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    assert_eq!(gw.sims[0].stats().requests_received, 2, "an ejected worker gets no traffic");
    assert_eq!(gw.metric("sluice_upstream_retries_total", &[]).await, retries, "and nothing needs a retry");
    let ready = gw.client.get(&gw.admin_url("/readyz"), None).await.json();
    assert_eq!(ready["pools"][0]["available"], 1, "{ready}");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_health_checks_mark_a_dead_worker_unhealthy() {
    let opts = GatewayOptions { unhealthy_threshold: Some(2), ..GatewayOptions::default() };
    let gw = TestGateway::start(2, opts).await;
    assert!(wait_until_async(WAIT, || async { healthy_gauge(&gw, "sim-1").await == 1.0 }).await, "both start healthy");
    gw.sims[1].clone().shutdown().await;

    let marked = wait_until_async(WAIT, || async { healthy_gauge(&gw, "sim-1").await == 0.0 }).await;
    assert!(marked, "a worker whose /health fails is marked unhealthy");
    assert_eq!(healthy_gauge(&gw, "sim-0").await, 1.0);
    assert_eq!(gw.metric("sluice_endpoint_ejections_total", &[("endpoint", "sim-1")]).await, 0.0);

    // Unhealthy endpoints are not even tried: no connect errors, no retries.
    for _ in 0..6 {
        let reply = gw.chat(&chat_body("hello there", json!({"max_tokens": 2}))).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    let text = gw.metrics_text().await;
    assert_eq!(value(&text, "sluice_upstream_retries_total", &[]), 0.0);
    assert_eq!(value(&text, "sluice_upstream_errors_total", &[("endpoint", "sim-1")]), 0.0);
    assert_eq!(gw.sims[0].stats().requests_completed, 6);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_available_endpoint_is_503() {
    let opts = GatewayOptions { unhealthy_threshold: Some(1), ..GatewayOptions::default() };
    let gw = TestGateway::start(1, opts).await;
    gw.sims[0].clone().shutdown().await;
    assert!(wait_until_async(WAIT, || async { healthy_gauge(&gw, "sim-0").await == 0.0 }).await);

    let reply = gw.chat(&chat_body("hello there", json!({"max_tokens": 2}))).await;
    assert_eq!(reply.status, 503, "{}", reply.text());
    let error = reply.openai_error();
    assert_eq!(error["type"], "server_error");
    assert_eq!(error["code"], "no_healthy_upstream");
    assert_eq!(reply.headers["retry-after"], "1");
    assert_eq!(gw.metric("sluice_requests_total", &[("tenant", TENANT), ("outcome", "unavailable")]).await, 1.0);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_answer_cut_midway_is_retried_since_nothing_reached_the_client() {
    let opts = GatewayOptions { ejection_failures: Some(100), ..GatewayOptions::default() };
    let gw = TestGateway::start(2, opts).await;
    gw.sims[0].set_faults(Faults { drop_after_tokens: Some(2), ..Faults::default() });
    for i in 0..4 {
        let reply = gw.chat(&chat_body("hello there", json!({"max_tokens": 6}))).await;
        assert_eq!(reply.status, 200, "request {i}: {}", reply.text());
        assert_eq!(reply.json()["usage"]["completion_tokens"], 6);
    }
    let cut = gw.sims[0].stats().requests_received;
    assert!(cut >= 1);
    assert_eq!(gw.metric("sluice_upstream_retries_total", &[]).await, cut as f64);
    assert_eq!(gw.sims[1].stats().requests_completed, 4);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_timing_out_is_504() {
    let opts = GatewayOptions {
        first_byte_timeout: Some(Duration::from_millis(300)),
        max_retries: Some(1),
        ejection_failures: Some(100),
        ..GatewayOptions::default()
    };
    let gw = TestGateway::start(2, opts).await;
    for sim in &gw.sims {
        sim.set_faults(Faults { stall_first_token: Duration::from_secs(30), ..Faults::default() });
    }
    let reply = gw.client.post_json_whole(&gw.url("/v1/chat/completions"), Some(gw.key), &stream_body(4)).await;
    assert_eq!(reply.status, 504, "{}", reply.text());
    let error = reply.openai_error();
    assert_eq!(error["type"], "server_error");
    assert_eq!(error["code"], "upstream_timeout");
    assert_eq!(gw.sims[0].stats().requests_received, 1, "each endpoint tried once");
    assert_eq!(gw.sims[1].stats().requests_received, 1, "each endpoint tried once");
    let text = gw.metrics_text().await;
    assert_eq!(value(&text, "sluice_upstream_retries_total", &[]), 1.0);
    assert_eq!(value(&text, "sluice_requests_total", &[("tenant", TENANT), ("outcome", "upstream_timeout")]), 1.0);
    gw.shutdown().await;

    // A whole answer may take as long as the generation does, up to the total timeout.
    let opts = GatewayOptions { total_timeout: Some(Duration::from_millis(500)), ..GatewayOptions::default() };
    let gw = TestGateway::start(2, opts).await;
    for sim in &gw.sims {
        sim.set_faults(Faults { stall_first_token: Duration::from_secs(30), ..Faults::default() });
    }
    let started = std::time::Instant::now();
    let reply = gw.chat(&chat_body("hello there", json!({"max_tokens": 4}))).await;
    assert_eq!(reply.status, 504, "{}", reply.text());
    assert!(started.elapsed() < Duration::from_secs(5));
    let received = gw.sims[0].stats().requests_received + gw.sims[1].stats().requests_received;
    assert_eq!(received, 1, "no time left to retry after the total timeout");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_goes_silent_ends_with_an_idle_timeout_event() {
    let opts = GatewayOptions { idle_timeout: Some(Duration::from_millis(300)), ..GatewayOptions::default() };
    let gw = TestGateway::start(1, opts).await;
    let sim = gw.sims[0].clone();
    // The first token comes at once, the next one only after 20 s.
    sim.set_faults(Faults { slow_token: Duration::from_secs(20), ..Faults::default() });
    let started = std::time::Instant::now();
    let events = gw.chat_stream(&stream_body(5)).await.rest().await;
    assert!(started.elapsed() < Duration::from_secs(5), "the idle timeout cut the stream");
    assert_eq!(events.len(), 2, "one token, then the error: {events:?}");
    assert!(events[0].content().is_some());
    assert!(events[1].is_error(), "{}", events[1].data);
    assert_eq!(events[1].json().unwrap()["error"]["code"], "upstream_timeout");

    assert!(
        wait_until(WAIT, || sim.stats().running == 0 && sim.stats().requests_aborted == 1).await,
        "the silent generation was cancelled on the worker: {:?}",
        sim.stats()
    );
    let text = gw.metrics_text().await;
    assert_eq!(value(&text, "sluice_requests_total", &[("tenant", TENANT), ("outcome", "upstream_timeout")]), 1.0);
    assert_eq!(value(&text, "sluice_upstream_retries_total", &[]), 0.0);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ejected_worker_gets_traffic_again_after_its_ejection() {
    let opts = GatewayOptions {
        ejection_failures: Some(1),
        ejection_base: Some(Duration::from_millis(500)),
        ..GatewayOptions::default()
    };
    let gw = TestGateway::start(2, opts).await;
    gw.sims[0].set_faults(Faults { error_rate: 1.0, ..Faults::default() });
    for _ in 0..20 {
        let reply = gw.chat(&chat_body("hello there", json!({"max_tokens": 2}))).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        if gw.sims[0].stats().requests_received > 0 {
            break;
        }
    }
    assert_eq!(gw.sims[0].stats().requests_received, 1, "one failure ejects it");
    assert_eq!(gw.metric("sluice_endpoint_ejections_total", &[("endpoint", "sim-0")]).await, 1.0);
    gw.sims[0].set_faults(Faults::default());

    // Once the ejection is over, the recovered worker takes its share again.
    let back = wait_until_async(WAIT, || async {
        let reply = gw.chat(&chat_body("hello there", json!({"max_tokens": 2}))).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        gw.sims[0].stats().requests_completed > 0
    })
    .await;
    assert!(back, "the worker never got traffic again: {:?}", gw.sims[0].stats());
    assert!(wait_until_async(WAIT, || async { healthy_gauge(&gw, "sim-0").await == 1.0 }).await);
    gw.shutdown().await;
}
