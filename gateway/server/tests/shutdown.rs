//! Graceful shutdown: streams in flight finish, new connections are refused; streams still open
//! when the grace period runs out end with an error event and are billed before the usage
//! writer's final flush.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests fail loudly")]

use std::time::Duration;

use serde_json::json;
use sluice_sim::Faults;
use sluice_test_support::{GatewayOptions, TestClient, TestGateway, chat_body, wait_until_async};

const WAIT: Duration = Duration::from_secs(10);

async fn in_flight_stream_finishes_while_new_connections_are_refused(client: TestClient) {
    let gw = TestGateway::start(1, GatewayOptions::default()).await;
    // 40 tokens, 50 ms apart: about two seconds of stream left when shutdown starts.
    gw.sims[0].set_faults(Faults { slow_token: Duration::from_millis(50), ..Faults::default() });
    let body = chat_body("a long answer please", json!({"stream": true, "max_tokens": 40}));
    let mut stream = client.post_stream(&gw.url("/v1/chat/completions"), Some(gw.key), &body).await;
    let first = stream.next().await.expect("first event before shutdown");
    assert!(first.content().is_some());

    let TestGateway { running, sims, .. } = gw;
    let (data_addr, admin_url) = (running.data_addr, running.admin_url());
    let shutdown = tokio::spawn(running.shutdown());

    let refused = wait_until_async(WAIT, || async { tokio::net::TcpStream::connect(data_addr).await.is_err() }).await;
    assert!(refused, "the data port still accepts connections during shutdown");
    // The admin plane stays up while draining and tells load balancers to go away.
    let ready = TestClient::http1().get(&format!("{admin_url}/readyz"), None).await;
    assert_eq!(ready.status, 503, "{}", ready.text());
    assert_eq!(ready.json()["status"], "shutting_down");
    assert!(!shutdown.is_finished(), "shutdown waits for the stream");

    let rest = stream.rest().await;
    assert!(!stream.broke, "the stream was cut: {rest:?}");
    assert_eq!(rest.iter().filter(|e| e.content().is_some()).count(), 39, "every remaining token arrived");
    assert!(rest.last().is_some_and(|e| e.is_done()), "the stream ends with [DONE]");

    tokio::time::timeout(WAIT, shutdown).await.expect("shutdown completes once the stream is done").unwrap();
    assert!(tokio::net::TcpStream::connect(data_addr).await.is_err());
    assert_eq!(sims[0].stats().requests_completed, 1);
    assert_eq!(sims[0].stats().requests_aborted, 0);
    for sim in sims {
        sim.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_drains_an_http1_stream() {
    in_flight_stream_finishes_while_new_connections_are_refused(TestClient::http1()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_drains_an_http2_stream() {
    in_flight_stream_finishes_while_new_connections_are_refused(TestClient::h2c()).await;
}

/// The tenant's usage rows this hour, summed.
async fn usage(store: &dyn sluice_store::Backend, tenant: &str) -> sluice_store::model::UsageCounts {
    let now = sluice_store::model::Timestamp::now().unix_seconds();
    let query = sluice_store::model::UsageQuery {
        tenant: Some(tenant.into()),
        from: now - 3600,
        to: now + 60,
        ..Default::default()
    };
    let mut total = sluice_store::model::UsageCounts::default();
    for row in store.usage(&query).await.unwrap() {
        total.merge(&row.counts);
    }
    total
}

/// A stream still open when the grace period runs out ends with an error event and a clean
/// end of body, and its usage (the prompt estimate and the tokens relayed) is in the store once
/// shutdown returns: the record is made before the usage writer's final flush. A tenant whose
/// request finished within the grace period is billed the worker's figures.
async fn a_stream_open_past_the_grace_period_is_cut_cleanly_and_billed(client: TestClient) {
    let (store, _dir) = sluice_test_support::fresh_sqlite().await;
    let gw = TestGateway::start(
        1,
        GatewayOptions {
            shutdown_grace: Duration::from_millis(300),
            store: Some(sluice_test_support::TestStore(std::sync::Arc::clone(&store))),
            extra_toml: "[[tenants]]\nname = \"bravo\"\napi_keys = [\"sk-bravo-0123456789\"]\n".into(),
            ..GatewayOptions::default()
        },
    )
    .await;
    // 400 tokens, 50 ms apart: 20 s of stream, far past the grace period.
    gw.sims[0].set_faults(Faults { slow_token: Duration::from_millis(50), ..Faults::default() });
    let body = chat_body(&"a long prompt ".repeat(3_000), json!({"stream": true, "max_tokens": 400}));
    let estimate = i64::try_from(body.to_string().len() / 4).unwrap();
    let mut stream = client.post_stream(&gw.url("/v1/chat/completions"), Some(gw.key), &body).await;
    let first = stream.next().await.expect("first event before shutdown");
    assert!(first.content().is_some());
    let bravo = client
        .post_json_whole(
            &gw.url("/v1/chat/completions"),
            Some("sk-bravo-0123456789"),
            &chat_body("hi", json!({"max_tokens": 2})),
        )
        .await;
    assert_eq!(bravo.status, 200, "{}", bravo.text());

    let TestGateway { running, sims, .. } = gw;
    let shutdown = tokio::spawn(running.shutdown());
    let rest = stream.rest().await;
    assert!(!stream.broke, "the stream was dropped mid-event instead of ending: {rest:?}");
    let last = rest.last().expect("an error event");
    assert!(last.is_error(), "the stream ends with an error event: {rest:?}");
    assert_eq!(last.json().unwrap()["error"]["code"], "shutting_down", "{rest:?}");
    let relayed = std::iter::once(&first).chain(&rest).filter(|e| e.content().is_some_and(|c| !c.is_empty())).count();
    assert!(relayed < 400, "the stream was cut, not drained");

    tokio::time::timeout(WAIT, shutdown).await.expect("shutdown completes after the cut").unwrap();
    // Shutdown has returned: the usage writer's final flush is behind us, so the store has the
    // cut stream's row now or never.
    let acme = usage(&*store, sluice_test_support::TENANT).await;
    assert_eq!(acme.requests, 1, "the cut stream's record made the final flush: {acme:?}");
    assert_eq!(acme.prompt_tokens, estimate, "{acme:?}");
    assert_eq!(acme.completion_tokens, i64::try_from(relayed).unwrap(), "{acme:?}");
    assert_eq!((acme.estimated_requests, acme.errors), (1, 1), "{acme:?}");
    let bravo = usage(&*store, "bravo").await;
    assert_eq!((bravo.requests, bravo.errors, bravo.estimated_requests), (1, 0, 0), "{bravo:?}");
    assert!(bravo.prompt_tokens > 0, "{bravo:?}");
    for sim in sims {
        sim.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_cuts_an_http1_stream_past_the_grace_period_and_bills_it() {
    a_stream_open_past_the_grace_period_is_cut_cleanly_and_billed(TestClient::http1()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_cuts_an_http2_stream_past_the_grace_period_and_bills_it() {
    a_stream_open_past_the_grace_period_is_cut_cleanly_and_billed(TestClient::h2c()).await;
}
