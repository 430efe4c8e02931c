//! Sluice with its store: the config's tenants imported, admin-API changes served within a
//! second (on this replica and on another one sharing the database), tenant limits enforced,
//! usage written, and a database outage survived without failed requests or lost usage.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests fail loudly")]

use std::time::{Duration, Instant};

use http::Method;
use serde_json::{Value, json};
use sluice_store::model::UsageQuery;
use sluice_test_support::{
    ADMIN_TOKEN, GatewayOptions, Link, MODEL, TENANT, TestClient, TestGateway, TestStore, chat_body, fresh_postgres,
    fresh_sqlite, full_body, read_whole, request, wait_until_async,
};

async fn admin(gw: &TestGateway, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let bytes = body.map(|b| serde_json::to_vec(&b).unwrap()).unwrap_or_default();
    let mut req = request(method, &gw.admin_url(path), Some(ADMIN_TOKEN), full_body(bytes));
    req.headers_mut().insert("content-type", "application/json".parse().unwrap());
    let reply = read_whole(TestClient::http1().send(req).await).await;
    let value = if reply.body.is_empty() { Value::Null } else { reply.json() };
    (reply.status.as_u16(), value)
}

async fn chat_with(gw: &TestGateway, key: &str) -> u16 {
    let body = chat_body("hello", json!({"max_tokens": 4}));
    gw.client.post_json_whole(&gw.url("/v1/chat/completions"), Some(key), &body).await.status.as_u16()
}

/// Polls until a request with `key` gets `status`, returning how long it took.
async fn until_status(gw: &TestGateway, key: &str, status: u16, within: Duration) -> Duration {
    let started = Instant::now();
    let ok = wait_until_async(within, || async { chat_with(gw, key).await == status }).await;
    assert!(ok, "key did not get {status} within {within:?}");
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_changes_reach_the_data_plane_and_limits_hold() {
    let (store, _dir) = fresh_sqlite().await;
    let opts = GatewayOptions { store: Some(TestStore(store.clone())), ..GatewayOptions::default() };
    let gw = TestGateway::start(2, opts).await;

    // The config's tenant and key were imported and serve at once.
    assert_eq!(gw.chat(&chat_body("hi", json!({"max_tokens": 2}))).await.status, 200);

    let (status, _) = admin(&gw, Method::POST, "/admin/api/tenants", Some(json!({"name": "beta"}))).await;
    assert_eq!(status, 201);
    let (status, created) = admin(&gw, Method::POST, "/admin/api/tenants/beta/keys", Some(json!({}))).await;
    assert_eq!(status, 201, "{created}");
    let key = created["key"].as_str().unwrap().to_owned();
    assert!(key.starts_with("sk-"));
    until_status(&gw, &key, 200, Duration::from_secs(1)).await;

    // Suspension and model allow-lists answer 403 in the OpenAI shape.
    let (status, _) = admin(&gw, Method::PATCH, "/admin/api/tenants/beta", Some(json!({"status": "suspended"}))).await;
    assert_eq!(status, 200);
    until_status(&gw, &key, 403, Duration::from_secs(1)).await;
    admin(&gw, Method::PATCH, "/admin/api/tenants/beta", Some(json!({"status": "active"}))).await;
    let limits = json!({"requests_per_minute": null, "tokens_per_minute": null, "max_concurrency": 1,
        "monthly_token_budget": null, "allowed_models": ["some-other-model"]});
    assert_eq!(admin(&gw, Method::PUT, "/admin/api/tenants/beta/limits", Some(limits)).await.0, 200);
    // Not any 403: the suspension's own lasts until the reactivation arrives, and the watcher may
    // load the reactivation before the allow-list, so the key can serve in between.
    let refused = wait_until_async(Duration::from_secs(1), || async {
        let body = chat_body("x", json!({"max_tokens": 1}));
        let reply = gw.client.post_json_whole(&gw.url("/v1/chat/completions"), Some(&key), &body).await;
        reply.status == 403 && reply.openai_error()["code"] == "model_not_allowed"
    })
    .await;
    assert!(refused, "the allow-list did not refuse the model within a second");

    // One request in flight at a time: a second concurrent one gets 429 while a slow stream runs.
    let limits = json!({"max_concurrency": 1});
    assert_eq!(admin(&gw, Method::PUT, "/admin/api/tenants/beta/limits", Some(limits)).await.0, 200);
    until_status(&gw, &key, 200, Duration::from_secs(1)).await;
    let mut stream = gw
        .client
        .post_stream(
            &gw.url("/v1/chat/completions"),
            Some(&key),
            &chat_body("long", json!({"stream": true, "max_tokens": 400})),
        )
        .await;
    assert!(stream.next().await.is_some(), "the stream started");
    let second =
        gw.client.post_json_whole(&gw.url("/v1/chat/completions"), Some(&key), &chat_body("y", json!({}))).await;
    assert_eq!(second.status, 429);
    assert_eq!(second.openai_error()["code"], "concurrency_limit_exceeded");
    drop(stream);
    until_status(&gw, &key, 200, Duration::from_secs(5)).await;

    // Revocation takes the key away.
    let id = created["id"].as_i64().unwrap();
    assert_eq!(admin(&gw, Method::DELETE, &format!("/admin/api/tenants/beta/keys/{id}"), None).await.0, 200);
    until_status(&gw, &key, 401, Duration::from_secs(1)).await;

    // Usage rows arrive within a few flushes and count every request of the bootstrap tenant.
    let counted = wait_until_async(Duration::from_secs(5), || async {
        let rows = store
            .usage(&UsageQuery { tenant: Some(TENANT.into()), from: 0, to: i64::MAX, ..Default::default() })
            .await
            .unwrap();
        rows.iter().map(|r| r.counts.requests).sum::<i64>() == 1
    })
    .await;
    assert!(counted, "usage for the bootstrap tenant was written");

    // Draining a worker takes it out of rotation; the other serves everything.
    let (status, pool) =
        admin(&gw, Method::PUT, "/admin/api/pools/sim/endpoints/sim-0", Some(json!({"drained": true}))).await;
    assert_eq!(status, 200, "{pool}");
    let drained = wait_until_async(Duration::from_secs(1), || async {
        gw.running.gateway().upstreams().pools[0].endpoints.iter().any(|e| e.is_drained())
    })
    .await;
    assert!(drained);
    let before = gw.sims[0].stats().requests_received;
    for _ in 0..6 {
        assert_eq!(gw.chat(&chat_body("spread", json!({"max_tokens": 1}))).await.status, 200);
    }
    assert_eq!(gw.sims[0].stats().requests_received, before, "a drained worker gets no new requests");

    let ready = gw.client.get(&gw.admin_url("/readyz"), None).await.json();
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["store"]["backend"], "sqlite");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_created_on_one_replica_works_on_another_within_a_second() {
    let db = fresh_postgres().await;
    let a = TestGateway::start(1, GatewayOptions { store: Some(TestStore(db.connect().await)), ..Default::default() })
        .await;
    let b = TestGateway::start(1, GatewayOptions { store: Some(TestStore(db.connect().await)), ..Default::default() })
        .await;

    let mut delays = Vec::new();
    for i in 0..3 {
        let name = format!("team-{i}");
        assert_eq!(admin(&a, Method::POST, "/admin/api/tenants", Some(json!({"name": name}))).await.0, 201);
        let (status, created) =
            admin(&a, Method::POST, &format!("/admin/api/tenants/{name}/keys"), Some(json!({}))).await;
        assert_eq!(status, 201);
        let key = created["key"].as_str().unwrap().to_owned();
        delays.push(until_status(&b, &key, 200, Duration::from_secs(1)).await);
    }
    eprintln!("propagation delays to the other replica: {delays:?}");
    assert_eq!(b.client.get(&b.admin_url("/readyz"), None).await.json()["store"]["backend"], "postgres");
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_fails_no_requests_and_loses_no_usage() {
    let db = fresh_postgres().await;
    db.connect().await; // migrate directly
    let pg: std::net::SocketAddr = "127.0.0.1:5432".parse().unwrap();
    let link = Link::start(pg).await;
    let store = sluice_store_postgres::PostgresStore::connect(&db.url_via(link.addr)).await.unwrap();
    let store: std::sync::Arc<dyn sluice_store::Backend> = std::sync::Arc::new(store);
    let gw = TestGateway::start(1, GatewayOptions { store: Some(TestStore(store)), ..Default::default() }).await;
    let direct = db.connect().await;

    let mut sent = 0;
    for _ in 0..5 {
        assert_eq!(gw.chat(&chat_body("before", json!({"max_tokens": 2}))).await.status, 200);
        sent += 1;
    }
    link.cut();
    let degraded = wait_until_async(Duration::from_secs(10), || async {
        gw.client.get(&gw.admin_url("/readyz"), None).await.json()["status"] == "degraded"
    })
    .await;
    assert!(degraded, "/readyz reports the lost database");
    for _ in 0..20 {
        assert_eq!(gw.chat(&chat_body("during", json!({"max_tokens": 2}))).await.status, 200);
        sent += 1;
    }
    link.restore();
    let recovered = wait_until_async(Duration::from_secs(15), || async {
        gw.client.get(&gw.admin_url("/readyz"), None).await.json()["status"] == "ready"
    })
    .await;
    assert!(recovered, "the gateway reconnects");
    for _ in 0..5 {
        assert_eq!(gw.chat(&chat_body("after", json!({"max_tokens": 2}))).await.status, 200);
        sent += 1;
    }
    gw.shutdown().await;
    let rows = direct
        .usage(&UsageQuery { tenant: Some(TENANT.into()), from: 0, to: i64::MAX, ..Default::default() })
        .await
        .unwrap();
    assert_eq!(rows.iter().map(|r| r.counts.requests).sum::<i64>(), sent, "every request is in the usage rows");
    assert!(rows.iter().all(|r| r.key.model == MODEL));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_cannot_be_framed_and_key_names_cannot_hide_characters() {
    let (store, _dir) = fresh_sqlite().await;
    let gw = TestGateway::start(1, GatewayOptions { store: Some(TestStore(store)), ..GatewayOptions::default() }).await;
    let page = TestClient::http1().get(&gw.admin_url("/"), None).await;
    assert_eq!(page.status, 200);
    assert_eq!(page.headers["content-security-policy"], "frame-ancestors 'none'");
    assert_eq!(page.headers["x-frame-options"], "DENY");
    assert_eq!(page.headers["referrer-policy"], "no-referrer");

    // A right-to-left override would show "admin\u{202E}txt.exe" as "admintxe.txt".
    let body = json!({"name": "admin\u{202E}txt.exe"}).to_string();
    let mut req = request(
        Method::POST,
        &gw.admin_url(&format!("/admin/api/tenants/{TENANT}/keys")),
        Some(ADMIN_TOKEN),
        full_body(body),
    );
    req.headers_mut().insert("content-type", "application/json".parse().unwrap());
    let reply = read_whole(TestClient::http1().send(req).await).await;
    assert_eq!(reply.status, 422, "{}", reply.text());
    assert_eq!(reply.json()["error"]["param"], "name");
    gw.shutdown().await;
}
