//! The admin token against guessing, through the whole gateway: wrong tokens lock their client
//! address out with `429` and a log line (never the token), while an operator elsewhere and the
//! unauthenticated `/healthz` and `/metrics` carry on; the live stream opens with a one-use
//! ticket and refuses the token in its URL; a short token does not load.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests fail loudly")]

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use http::{Method, StatusCode, header};
use sluice_config::Config;
use sluice_test_support::metrics::value;
use sluice_test_support::{
    ADMIN_TOKEN, GatewayOptions, LogCapture, TestClient, TestGateway, TestStore, fresh_sqlite, full_body, request,
};

const MAX_FAILURES: usize = 5;
/// A wrong token as a guesser would send it; it must never reach the log.
const GUESS: &str = "guess-0123456789abcdef0123456789abcdef";

/// The gateway, and the directory its store lives in (kept until the test ends).
async fn gateway() -> (TestGateway, impl Sized) {
    let (store, dir) = fresh_sqlite().await;
    let options = GatewayOptions {
        store: Some(TestStore(Arc::clone(&store))),
        // A window and lockout far longer than the test, so that no step depends on timing.
        admin_toml: format!("max_failures = {MAX_FAILURES}\nfailure_window = \"1h\"\nlockout = \"1h\""),
        ..GatewayOptions::default()
    };
    (TestGateway::start(1, options).await, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_wrong_tokens_locks_out_its_address_only() {
    let logs = LogCapture::install();
    let (gw, _dir) = gateway().await;
    let tenants = gw.admin_url("/admin/api/tenants");
    assert_eq!(gw.client.get(&tenants, Some(ADMIN_TOKEN)).await.status, StatusCode::OK);

    for attempt in 1..=MAX_FAILURES {
        let reply = gw.client.get(&tenants, Some(GUESS)).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "attempt {attempt}: {}", reply.text());
    }
    // Locked out: wrong tokens, no token, and the right one alike.
    for key in [Some(GUESS), None, Some(ADMIN_TOKEN)] {
        let reply = gw.client.get(&tenants, key).await;
        assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS, "{}", reply.text());
        let retry_after: u64 = reply.headers[header::RETRY_AFTER].to_str().unwrap().parse().unwrap();
        assert!((3500..=3600).contains(&retry_after), "retry-after {retry_after}");
        let body = reply.json();
        assert_eq!(body["error"]["code"], "too_many_auth_failures");
        assert_eq!(body["error"]["type"], "rate_limit_exceeded");
    }
    let ticket = gw
        .client
        .send_whole(request(Method::POST, &gw.admin_url("/admin/api/live/ticket"), Some(ADMIN_TOKEN), full_body("")))
        .await;
    assert_eq!(ticket.status, StatusCode::TOO_MANY_REQUESTS, "no live-stream tickets either");

    // An operator at another address is unaffected.
    let operator = TestClient::http1_from(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));
    let reply = operator.get(&tenants, Some(ADMIN_TOKEN)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(operator.get(&tenants, Some(GUESS)).await.status, StatusCode::UNAUTHORIZED, "its own count");

    // Liveness and metrics carry no credentials and stay open to the locked-out address.
    assert_eq!(gw.client.get(&gw.admin_url("/healthz"), None).await.status, StatusCode::OK);
    let metrics = gw.client.get(&gw.admin_url("/metrics"), None).await;
    assert_eq!(metrics.status, StatusCode::OK);
    let text = metrics.text();
    let refused = |reason: &str| value(&text, "sluice_admin_auth_refusals_total", &[("reason", reason)]);
    assert_eq!(refused("wrong_token"), (MAX_FAILURES + 1) as f64);
    assert_eq!(refused("locked_out"), 4.0);
    assert!(!text.contains("127.0.0.1"), "no address labels");

    let log = logs.text();
    assert!(log.contains("wrong admin token") && log.contains("locked out"), "{log}");
    assert!(log.contains("client=127.0.0.1"), "the log names the address: {log}");
    assert!(!log.contains(GUESS) && !log.contains(ADMIN_TOKEN), "no token in the log: {log}");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_stream_opens_with_a_one_use_ticket_never_the_token_in_its_url() {
    let (gw, _dir) = gateway().await;
    let live = gw.admin_url("/admin/api/live");

    let in_url = gw.client.get(&format!("{live}?token={ADMIN_TOKEN}"), None).await;
    assert_eq!(in_url.status, StatusCode::BAD_REQUEST);
    assert_eq!(in_url.json()["error"]["code"], "token_in_url");
    assert_eq!(gw.client.get(&live, None).await.status, StatusCode::UNAUTHORIZED);

    let tickets = gw.admin_url("/admin/api/live/ticket");
    let refused = gw.client.send_whole(request(Method::POST, &tickets, Some(GUESS), full_body(""))).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    let issued = gw.client.send_whole(request(Method::POST, &tickets, Some(ADMIN_TOKEN), full_body(""))).await;
    assert_eq!(issued.status, StatusCode::OK, "{}", issued.text());
    let body = issued.json();
    assert_eq!(body["expires_in"], 60);
    let ticket = body["ticket"].as_str().unwrap().to_owned();
    assert_eq!(ticket.len(), 64);

    let stream = gw.client.send(request(Method::GET, &format!("{live}?ticket={ticket}"), None, full_body(""))).await;
    assert_eq!(stream.status(), StatusCode::OK);
    assert_eq!(stream.headers()[header::CONTENT_TYPE], "text/event-stream");
    drop(stream);
    let again = gw.client.get(&format!("{live}?ticket={ticket}"), None).await;
    assert_eq!(again.status, StatusCode::UNAUTHORIZED, "a ticket opens one stream");

    // Clients that can send headers may use the token itself.
    let bearer = gw.client.send(request(Method::GET, &live, Some(ADMIN_TOKEN), full_body(""))).await;
    assert_eq!(bearer.status(), StatusCode::OK);
    drop(bearer);

    let text = gw.client.get(&gw.admin_url("/metrics"), None).await.text();
    let refused = |reason: &str| value(&text, "sluice_admin_auth_refusals_total", &[("reason", reason)]);
    assert_eq!((refused("token_in_url"), refused("invalid_ticket"), refused("missing")), (1.0, 1.0, 1.0));
    gw.shutdown().await;
}

#[test]
fn a_short_admin_token_does_not_load() {
    let error = Config::from_toml("[admin]\ntoken = \"s3cret\"\n", &[], &|_| None).unwrap_err().to_string();
    assert!(error.starts_with("admin.token: must be at least 32 characters"), "{error}");
    assert!(!error.contains("s3cret"), "{error}");
    let env = |name: &str| (name == "SLUICE_ADMIN_TOKEN").then(|| "short".to_owned());
    assert!(Config::from_toml("", &[], &env).unwrap_err().to_string().starts_with("admin.token: "));
}
