//! A saturated pool serves tenants by weighted fair queuing: one tenant's burst does not push
//! another's requests behind it, waits are bounded (503 `pool_saturated` with `Retry-After`),
//! and a client that leaves the queue takes nothing with it.
//!
//! The pool is one simulated worker with `max_in_flight = 1`, so requests are served strictly
//! one after another and the order in which they finish is the order in which the queue
//! admitted them: the assertions count requests, not milliseconds.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests fail loudly")]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use sluice_test_support::{
    GatewayOptions, POOL, TENANT, TestGateway, TestStore, chat_body, fresh_sqlite, wait_until, wait_until_async,
};
use tokio::io::AsyncWriteExt;

const WAIT: Duration = Duration::from_secs(20);
const BRAVO: &str = "bravo";
const BRAVO_KEY: &str = "sk-bravo-0123456789";
/// Tokens per request: with the simulator's default step (3 ms + 50 µs per sequence) a request
/// holds the worker's only slot for about 50 ms.
const TOKENS: u32 = 16;

fn options(queue_timeout: Duration) -> GatewayOptions {
    GatewayOptions {
        max_in_flight: Some(1),
        queue_timeout: Some(queue_timeout),
        extra_toml: format!("[[tenants]]\nname = \"{BRAVO}\"\napi_keys = [\"{BRAVO_KEY}\"]\n"),
        ..GatewayOptions::default()
    }
}

fn stream_body(max_tokens: u32) -> serde_json::Value {
    chat_body("hello there", json!({"stream": true, "max_tokens": max_tokens}))
}

/// Streams one request to the end; the time to its first event with content, or `None` if it
/// was refused.
async fn stream_one(gw: &TestGateway, key: &str, max_tokens: u32) -> Option<Duration> {
    let sent = Instant::now();
    let response = gw.client.post_json(&gw.url("/v1/chat/completions"), Some(key), &stream_body(max_tokens)).await;
    if response.status() != 200 {
        return None;
    }
    let mut stream = sluice_test_support::SseStream::new(response);
    let mut ttft = None;
    while let Some(event) = stream.next().await {
        if ttft.is_none() && event.content().is_some_and(|c| !c.is_empty()) {
            ttft = Some(sent.elapsed());
        }
    }
    assert!(!stream.broke, "the stream broke");
    ttft.or(Some(sent.elapsed()))
}

async fn queued(gw: &TestGateway, tenant: &str) -> f64 {
    gw.metric("sluice_pool_queue_depth", &[("pool", POOL), ("tenant", tenant)]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_does_not_push_another_tenants_requests_behind_it() {
    let gw = Arc::new(TestGateway::start(1, options(Duration::from_secs(60))).await);
    let finished = Arc::new(AtomicUsize::new(0));
    let a_done = Arc::new(AtomicUsize::new(0));

    // Tenant A: a burst of 20, all but one queued behind the worker's single slot.
    let mut a_tasks = Vec::new();
    for _ in 0..20 {
        let (gw, a_done) = (Arc::clone(&gw), Arc::clone(&a_done));
        a_tasks.push(tokio::spawn(async move {
            let served = stream_one(&gw, gw.key, TOKENS).await.is_some();
            a_done.fetch_add(1, Ordering::SeqCst);
            served
        }));
    }
    let burst_queued = wait_until_async(WAIT, || async { queued(&gw, TENANT).await >= 10.0 }).await;
    assert!(burst_queued, "A's burst is queued:\n{}", gw.metrics_text().await);

    // Tenant B: two requests (a tenth of A's), sent behind A's burst.
    let a_before_b = a_done.load(Ordering::SeqCst);
    let mut b_tasks = Vec::new();
    for _ in 0..2 {
        let (gw, a_done, finished) = (Arc::clone(&gw), Arc::clone(&a_done), Arc::clone(&finished));
        b_tasks.push(tokio::spawn(async move {
            assert!(stream_one(&gw, BRAVO_KEY, TOKENS).await.is_some(), "B was served");
            finished.fetch_add(1, Ordering::SeqCst);
            a_done.load(Ordering::SeqCst)
        }));
    }
    let mut a_ahead: Vec<usize> = Vec::new();
    for task in b_tasks {
        a_ahead.push(task.await.unwrap() - a_before_b);
    }
    a_ahead.sort_unstable();
    let a_left_when_b_arrived = 20 - a_before_b;
    // Equal weights: B's k-th request goes after at most A's request in service and k of A's
    // queued ones (start tags tie on arrival order), plus one A that may have finished between
    // sending B's requests and their arrival. First come, first served would put both behind
    // all of A's remaining requests.
    for (k, ahead) in a_ahead.iter().enumerate() {
        assert!(
            *ahead <= k + 3,
            "B's request {k} was served after {ahead} of A's (A had {a_left_when_b_arrived} left)"
        );
    }
    assert!(a_left_when_b_arrived >= 10, "the burst was still queued when B arrived");

    for task in a_tasks {
        assert!(task.await.unwrap(), "every A request was served within the queue timeout");
    }
    let text = gw.metrics_text().await;
    let depth = sluice_test_support::metrics::value(&text, "sluice_pool_queue_depth", &[("pool", POOL)]);
    assert_eq!(depth, 0.0, "nothing left queued:\n{text}");
    assert!(
        sluice_test_support::metrics::value(&text, "sluice_pool_queue_wait_seconds_count", &[("pool", POOL)]) >= 10.0
    );
    assert_eq!(sluice_test_support::metrics::value(&text, "sluice_endpoint_in_flight", &[("pool", POOL)]), 0.0);
    let gw = Arc::into_inner(gw).expect("every task has ended");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_light_tenant_keeps_its_ttft_slo_while_a_heavy_one_saturates_the_pool() {
    let gw = Arc::new(TestGateway::start(1, options(Duration::from_secs(60))).await);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));

    // Tenant A keeps 30 requests outstanding: the pool is saturated throughout, and A sends
    // well over ten times B's rate.
    let mut heavy = Vec::new();
    for _ in 0..30 {
        let (gw, stop) = (Arc::clone(&gw), Arc::clone(&stop));
        heavy.push(tokio::spawn(async move {
            let mut served = 0u32;
            while !stop.load(Ordering::SeqCst) {
                if stream_one(&gw, gw.key, TOKENS).await.is_some() {
                    served += 1;
                }
            }
            served
        }));
    }
    assert!(wait_until_async(WAIT, || async { queued(&gw, TENANT).await >= 20.0 }).await, "A saturates the pool");

    // One B request about every 800 ms: A completes one about every 50 ms.
    let mut ttfts = Vec::new();
    for _ in 0..10 {
        let ttft = stream_one(&gw, BRAVO_KEY, TOKENS).await.expect("B is served");
        ttfts.push(ttft);
        tokio::time::sleep(Duration::from_millis(800)).await;
    }
    stop.store(true, Ordering::SeqCst);
    let served_a: u32 = futures_util::future::join_all(heavy).await.into_iter().map(Result::unwrap).sum();

    ttfts.sort_unstable();
    let p90 = ttfts[8];
    // The SLO: ten service times. Fair queuing puts B's request behind at most the request in
    // service and one of A's (about two service times); first come, first served would put it
    // behind A's 29 other outstanding requests (about 1.5 s).
    let slo = Duration::from_millis(500);
    assert!(p90 <= slo, "B's TTFT p90 {p90:?} is over its {slo:?} SLO: {ttfts:?}");
    assert!(served_a >= 10 * 10, "A sent at least ten times B's rate: {served_a} served");
    let gw = Arc::into_inner(gw).expect("every task has ended");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_cannot_wait_gets_503_and_a_client_that_leaves_takes_no_slot() {
    let gw = TestGateway::start(1, options(Duration::from_millis(300))).await;

    // A long stream holds the only slot.
    let mut holder = gw.chat_stream(&stream_body(2000)).await;
    assert!(holder.next().await.is_some(), "the holder is streaming");

    // Another request waits the queue timeout, then is refused with 503 and Retry-After.
    let started = Instant::now();
    let body = chat_body("hello there", json!({"max_tokens": 4}));
    let reply = gw.client.post_json_whole(&gw.url("/v1/chat/completions"), Some(BRAVO_KEY), &body).await;
    assert_eq!(reply.status, 503, "{}", reply.text());
    assert!(started.elapsed() >= Duration::from_millis(300), "it waited its bound");
    assert_eq!(reply.headers["retry-after"], "1");
    let error = reply.openai_error();
    assert_eq!(error["code"], "pool_saturated", "{error}");
    assert_eq!(error["type"], "server_error");
    assert_eq!(gw.metric("sluice_pool_queue_rejections_total", &[("tenant", BRAVO), ("reason", "timeout")]).await, 1.0);

    // A client that gives up while queued leaves the queue at once.
    let body = chat_body("hello there", json!({"max_tokens": 4})).to_string();
    let raw = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: {}\r\nauthorization: Bearer {BRAVO_KEY}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        gw.data_addr(),
        body.len()
    );
    let mut socket = tokio::net::TcpStream::connect(gw.data_addr()).await.unwrap();
    socket.write_all(raw.as_bytes()).await.unwrap();
    assert!(wait_until_async(WAIT, || async { queued(&gw, BRAVO).await == 1.0 }).await, "the request is queued");
    drop(socket);
    assert!(wait_until_async(WAIT, || async { queued(&gw, BRAVO).await == 0.0 }).await, "it left the queue");

    // The holder finishes; its slot, and nobody else's, is free: the next request is served.
    drop(holder);
    let sim = gw.sims[0].clone();
    assert!(wait_until(WAIT, || sim.stats().running == 0).await, "the holder's stream was cancelled");
    let reply = gw.client.post_json_whole(&gw.url("/v1/chat/completions"), Some(BRAVO_KEY), &body_value()).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(gw.metric("sluice_endpoint_in_flight", &[("pool", POOL)]).await, 0.0);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_high_priority_tenant_gets_four_slots_for_each_of_a_low_priority_one() {
    // Priorities come from the store, where the config's tenants are imported.
    let (store, _dir) = fresh_sqlite().await;
    let mut opts = options(Duration::from_secs(60));
    opts.store = Some(TestStore(store));
    opts.extra_toml = "[[tenants]]\nname = \"lowly\"\napi_keys = [\"sk-lowly-0123456789\"]\npriority = \"low\"\n\n\
                       [[tenants]]\nname = \"highly\"\napi_keys = [\"sk-highly-0123456789\"]\npriority = \"high\"\n"
        .to_owned();
    let gw = Arc::new(TestGateway::start(1, opts).await);
    let order = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    let mut burst = |tenant: &'static str, key: &'static str| {
        for _ in 0..12 {
            let (gw, order) = (Arc::clone(&gw), Arc::clone(&order));
            tasks.push(tokio::spawn(async move {
                assert!(stream_one(&gw, key, TOKENS).await.is_some(), "{tenant} was served");
                order.lock().unwrap().push(tenant);
            }));
        }
    };
    // The low-priority tenant's burst first, then the high-priority one's, both queued.
    burst("lowly", "sk-lowly-0123456789");
    assert!(wait_until_async(WAIT, || async { queued(&gw, "lowly").await >= 8.0 }).await, "lowly is queued");
    burst("highly", "sk-highly-0123456789");
    assert!(wait_until_async(WAIT, || async { queued(&gw, "highly").await >= 8.0 }).await, "highly is queued");
    for task in tasks {
        task.await.unwrap();
    }
    let order = order.lock().unwrap().clone();
    // Weights 4:1: while both wait, the high-priority tenant gets four slots for each of the
    // low one's, though it arrived second. Its twelve requests are served with about three of
    // the low tenant's among them; with equal weights there would be about eleven, and first
    // come, first served would serve all of the low tenant's first.
    let first = order.iter().position(|t| *t == "highly").unwrap();
    let last = order.iter().rposition(|t| *t == "highly").unwrap();
    let low_among = order[first..=last].iter().filter(|t| **t == "lowly").count();
    assert!(low_among <= 4, "{low_among} of the low-priority tenant's among the high one's: {order:?}");
    let gw = Arc::into_inner(gw).expect("every task has ended");
    gw.shutdown().await;
}

fn body_value() -> serde_json::Value {
    chat_body("hello there", json!({"max_tokens": 4}))
}
