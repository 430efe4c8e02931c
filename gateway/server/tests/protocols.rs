//! HTTP/2 with prior knowledge from the client and to the workers, and TLS with ALPN.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests fail loudly")]

use std::time::Duration;

use http::{Method, Version};
use serde_json::json;
use sluice_sim::Faults;
use sluice_test_support::{
    GatewayOptions, TestCa, TestClient, TestGateway, chat_body, concat_content, full_body, request, wait_until_async,
};

async fn whole_and_streamed(gw: &TestGateway, client: &TestClient, expected: Version) -> String {
    let url = gw.url("/v1/chat/completions");
    let reply = client.post_json_whole(&url, Some(gw.key), &chat_body("hi", json!({"max_tokens": 6}))).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.version, expected);
    let whole = reply.json()["choices"][0]["message"]["content"].as_str().unwrap().to_owned();

    let mut stream =
        client.post_stream(&url, Some(gw.key), &chat_body("hi", json!({"stream": true, "max_tokens": 6}))).await;
    assert_eq!(stream.version, expected);
    let events = stream.rest().await;
    assert!(!stream.broke);
    assert!(events.last().is_some_and(|e| e.is_done()), "{events:?}");
    assert_eq!(concat_content(&events), whole, "same answer over either framing");
    whole
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_prior_knowledge_from_the_client() {
    let gw = TestGateway::start(1, GatewayOptions::default()).await;
    let h2 = TestClient::h2c();
    whole_and_streamed(&gw, &h2, Version::HTTP_2).await;
    whole_and_streamed(&gw, &gw.client, Version::HTTP_11).await;

    // Several streams multiplexed on one HTTP/2 connection, interleaved in time.
    gw.sims[0].set_faults(Faults { slow_token: Duration::from_millis(20), ..Faults::default() });
    let url = gw.url("/v1/chat/completions");
    let streams = (0..4).map(|i| {
        let (h2, url, key) = (h2.clone(), url.clone(), gw.key);
        async move {
            let body = chat_body(&format!("question {i}"), json!({"stream": true, "max_tokens": 8}));
            h2.post_stream(&url, Some(key), &body).await.rest().await
        }
    });
    for events in futures_util::future::join_all(streams).await {
        assert_eq!(events.len(), 9, "8 tokens and [DONE]: {events:?}");
        assert!(events[8].is_done());
    }
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_endpoints_are_spoken_to_with_h2c() {
    let opts = GatewayOptions { upstream_http2: true, tap_upstreams: true, ..GatewayOptions::default() };
    let gw = TestGateway::start(1, opts).await;
    whole_and_streamed(&gw, &gw.client, Version::HTTP_11).await;
    let conns = gw.taps[0].connections();
    assert!(!conns.is_empty());
    assert!(conns.iter().all(|h2| *h2), "every upstream connection opened with the HTTP/2 preface: {conns:?}");
    assert_eq!(gw.sims[0].stats().requests_completed, 2);
    gw.shutdown().await;

    // And the default is HTTP/1.1.
    let opts = GatewayOptions { tap_upstreams: true, ..GatewayOptions::default() };
    let gw = TestGateway::start(1, opts).await;
    whole_and_streamed(&gw, &gw.client, Version::HTTP_11).await;
    let conns = gw.taps[0].connections();
    assert!(!conns.is_empty() && conns.iter().all(|h2| !*h2), "{conns:?}");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_upstream_connections_are_kept_alive_across_whole_and_streamed_answers() {
    // One health probe and one read of the engine's metrics at start-up, then none: the probe is
    // the only request that may overlap another once the read is done (reads share the pool's
    // connections, and every 250 ms by default they would overlap these requests).
    let opts = GatewayOptions {
        tap_upstreams: true,
        health_interval: Duration::from_secs(3600),
        extra_toml: "[upstream.engine_metrics]\ninterval = \"1h\"\nmax_age = \"1h\"\n".into(),
        ..GatewayOptions::default()
    };
    let gw = TestGateway::start(1, opts).await;
    let read = wait_until_async(Duration::from_secs(10), || async {
        gw.metric("sluice_engine_scrapes_total", &[("outcome", "ok")]).await >= 1.0
    })
    .await;
    assert!(read, "the engine's metrics were read at start-up");
    for _ in 0..4 {
        whole_and_streamed(&gw, &gw.client, Version::HTTP_11).await;
    }
    assert_eq!(gw.sims[0].stats().requests_completed, 8);
    let conns = gw.taps[0].connections();
    assert!((1..=2).contains(&conns.len()), "8 requests in a row reuse the connection: {conns:?}");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_negotiates_h2_or_http1_over_alpn() {
    let gw = TestGateway::start(1, GatewayOptions { tls: true, ..GatewayOptions::default() }).await;
    assert!(gw.url("/").starts_with("https://127.0.0.1:"));
    let root = &gw.ca.as_ref().unwrap().root;

    let h2 = TestClient::https(root, true);
    let a = whole_and_streamed(&gw, &h2, Version::HTTP_2).await;
    let http1 = TestClient::https(root, false);
    let b = whole_and_streamed(&gw, &http1, Version::HTTP_11).await;
    assert_eq!(a, b);

    // A client that does not trust the test CA cannot connect, nor can plain HTTP.
    let stranger = TestClient::https(&TestCa::new().root, true);
    let refused = stranger.try_send(request(Method::GET, &gw.url("/v1/models"), Some(gw.key), full_body(""))).await;
    assert!(refused.is_err(), "untrusted certificate accepted");
    let plain_url = gw.url("/v1/models").replace("https://", "http://");
    let plain = TestClient::http1().try_send(request(Method::GET, &plain_url, Some(gw.key), full_body(""))).await;
    assert!(plain.is_err() || plain.is_ok_and(|r| !r.status().is_success()), "plain HTTP served on the TLS port");
    gw.shutdown().await;
}
