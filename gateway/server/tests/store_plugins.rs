//! Plugins managed through the admin API: an uploaded version runs once activated, only where
//! it is bound (globally, for a tenant or for a model), and activating another version, rolling
//! back or unbinding takes effect on the data plane without a restart.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests fail loudly")]

use std::time::Duration;

use http::Method;
use serde_json::{Value, json};
use sluice_plugin_host::Origin;
use sluice_plugin_host::testing::{TEST_GUEST, variant};
use sluice_test_support::{
    ADMIN_TOKEN, GatewayOptions, MODEL, TENANT, TENANT_KEY, TestClient, TestGateway, TestStore, chat_body,
    fresh_sqlite, full_body, read_whole, request, wait_until_async,
};

/// What the test guest imports, granted at activation.
const GRANTS: [&str; 6] = ["log", "clock", "counters", "cache", "config", "metrics"];

async fn admin(gw: &TestGateway, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let bytes = body.map(|b| serde_json::to_vec(&b).unwrap()).unwrap_or_default();
    send(gw, method, path, "application/json", bytes).await
}

async fn send(gw: &TestGateway, method: Method, path: &str, content_type: &str, bytes: Vec<u8>) -> (u16, Value) {
    let mut req = request(method, &gw.admin_url(path), Some(ADMIN_TOKEN), full_body(bytes));
    req.headers_mut().insert("content-type", content_type.parse().unwrap());
    let reply = read_whole(TestClient::http1().send(req).await).await;
    let value = if reply.body.is_empty() { Value::Null } else { reply.json() };
    (reply.status.as_u16(), value)
}

async fn chat_status(gw: &TestGateway, key: &str) -> u16 {
    let body = chat_body("hello", json!({"max_tokens": 2}));
    gw.client.post_json_whole(&gw.url("/v1/chat/completions"), Some(key), &body).await.status.as_u16()
}

/// Waits until requests with `key` get `status` (the snapshot reaches the plugin host within a
/// poll interval plus a compile).
async fn until_status(gw: &TestGateway, key: &str, status: u16) {
    let ok = wait_until_async(Duration::from_secs(10), || async { chat_status(gw, key).await == status }).await;
    assert!(ok, "requests with this key did not get {status}");
}

/// The versions of the store's bindings now active in the plugin host.
fn store_versions(gw: &TestGateway) -> Vec<String> {
    let chain = gw.running.gateway().plugins.chain();
    chain
        .bindings()
        .iter()
        .filter(|b| matches!(b.origin, Origin::Store { .. }))
        .map(|b| b.version.version.to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_bindings_run_where_bound_and_follow_activation() {
    let (store, _dir) = fresh_sqlite().await;
    let opts = GatewayOptions { store: Some(TestStore(store)), ..GatewayOptions::default() };
    let gw = TestGateway::start(1, opts).await;
    let own_key = TENANT_KEY;

    // A second tenant, who must never see a binding made for the first.
    assert_eq!(admin(&gw, Method::POST, "/admin/api/tenants", Some(json!({"name": "other"}))).await.0, 201);
    let (_, created) = admin(&gw, Method::POST, "/admin/api/tenants/other/keys", Some(json!({}))).await;
    let other_key = created["key"].as_str().unwrap().to_owned();
    until_status(&gw, &other_key, 200).await;

    let (status, v1) =
        send(&gw, Method::POST, "/admin/api/plugins/guard/versions", "application/wasm", TEST_GUEST.to_vec()).await;
    assert_eq!(status, 201, "{v1}");
    let (status, v2) =
        send(&gw, Method::POST, "/admin/api/plugins/guard/versions", "application/wasm", variant(TEST_GUEST, "second"))
            .await;
    assert_eq!(status, 201, "{v2}");

    // Bound for the bootstrap tenant, refusing its requests; inert until a version is active.
    let binding = json!({"plugin": "guard", "scope": {"kind": "tenant", "name": TENANT}, "order": 1,
        "failure_policy": "closed", "config": {"mode": "deny"}});
    let (status, bound) = admin(&gw, Method::POST, "/admin/api/bindings", Some(binding)).await;
    assert_eq!(status, 201, "{bound}");
    assert_eq!(chat_status(&gw, own_key).await, 200, "a plugin with no active version does not run");

    assert_eq!(
        admin(&gw, Method::POST, "/admin/api/plugins/guard/activate", Some(json!({"version": 1, "grants": GRANTS})))
            .await
            .0,
        200
    );
    until_status(&gw, own_key, 403).await;
    let reply = gw
        .client
        .post_json_whole(&gw.url("/v1/chat/completions"), Some(own_key), &chat_body("x", json!({"max_tokens": 1})))
        .await;
    assert!(reply.openai_error()["message"].as_str().unwrap().contains("denied by test guest"), "{:?}", reply.body);
    assert_eq!(chat_status(&gw, &other_key).await, 200, "the binding is for one tenant only");
    let first = store_versions(&gw);
    assert_eq!(first.len(), 1);

    // Activating version 2 swaps the component in; rolling back brings version 1 back.
    assert_eq!(
        admin(&gw, Method::POST, "/admin/api/plugins/guard/activate", Some(json!({"version": 2, "grants": GRANTS})))
            .await
            .0,
        200
    );
    let swapped = wait_until_async(Duration::from_secs(10), || async {
        let now = store_versions(&gw);
        now.len() == 1 && now != first
    })
    .await;
    assert!(swapped, "version 2 became active");
    assert_eq!(chat_status(&gw, own_key).await, 403);
    assert_eq!(admin(&gw, Method::POST, "/admin/api/plugins/guard/rollback", None).await.0, 200);
    let rolled_back = wait_until_async(Duration::from_secs(10), || async { store_versions(&gw) == first }).await;
    assert!(rolled_back, "rollback re-activated version 1");

    // Unbinding removes it; a model-scoped binding answering locally applies to everyone
    // asking for that model.
    let id = bound["id"].as_i64().unwrap();
    assert_eq!(admin(&gw, Method::DELETE, &format!("/admin/api/bindings/{id}"), None).await.0, 204);
    until_status(&gw, own_key, 200).await;
    let binding = json!({"plugin": "guard", "scope": {"kind": "model", "name": MODEL}, "config": {"mode": "respond"}});
    assert_eq!(admin(&gw, Method::POST, "/admin/api/bindings", Some(binding)).await.0, 201);
    let answered = wait_until_async(Duration::from_secs(10), || async {
        let reply = gw
            .client
            .post_json_whole(&gw.url("/v1/chat/completions"), Some(&other_key), &chat_body("x", json!({})))
            .await;
        reply.status == 200 && reply.json()["answered_by"] == "test-guest"
    })
    .await;
    assert!(answered, "the model-scoped binding answered locally");
    let elsewhere = json!({"model": "no-such-model", "messages": [{"role": "user", "content": "x"}]});
    let reply = gw.client.post_json_whole(&gw.url("/v1/chat/completions"), Some(own_key), &elsewhere).await;
    assert_eq!(reply.status, 404, "another model is not covered by the binding");

    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_binding_survives_a_restart() {
    let (store, _dir) = fresh_sqlite().await;
    let opts = || GatewayOptions { store: Some(TestStore(store.clone())), ..GatewayOptions::default() };
    let gw = TestGateway::start(1, opts()).await;
    send(&gw, Method::POST, "/admin/api/plugins/guard/versions", "application/wasm", TEST_GUEST.to_vec()).await;
    admin(&gw, Method::POST, "/admin/api/plugins/guard/activate", Some(json!({"version": 1, "grants": GRANTS}))).await;
    let binding = json!({"plugin": "guard", "scope": {"kind": "global"}, "config": {"mode": "deny"}});
    assert_eq!(admin(&gw, Method::POST, "/admin/api/bindings", Some(binding)).await.0, 201);
    until_status(&gw, TENANT_KEY, 403).await;
    gw.shutdown().await;

    // A new gateway on the same store applies the binding before it serves its first request.
    let gw = TestGateway::start(1, opts()).await;
    assert_eq!(chat_status(&gw, TENANT_KEY).await, 403);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_built_in_cache_is_published_and_bound_through_the_admin_api_like_any_plugin() {
    const OTHER_KEY: &str = "sk-globex-0123456789";
    let (store, _dir) = fresh_sqlite().await;
    let opts = GatewayOptions {
        store: Some(TestStore(store.clone())),
        extra_toml: format!("[[tenants]]\nname = \"globex\"\napi_keys = [\"{OTHER_KEY}\"]\n"),
        ..GatewayOptions::default()
    };
    let gw = TestGateway::start(1, opts.clone()).await;

    // The built-in cache is a plugin with an active version, granted what it needs; the router
    // and the rate limiter, bound by default, are not published (a stored binding would run
    // them twice).
    let (status, plugins) = admin(&gw, Method::GET, "/admin/api/plugins", None).await;
    assert_eq!(status, 200);
    let names: Vec<&str> = plugins.as_array().unwrap().iter().filter_map(|p| p["name"].as_str()).collect();
    assert_eq!(names, ["cache"], "{plugins}");
    let cache = &plugins[0];
    assert_eq!(cache["active_version"], 1, "{cache}");
    assert!(cache["granted"].as_array().unwrap().contains(&json!("response-cache")), "{cache}");
    // The name is the built-in's: an upload under it is refused.
    let (status, body) =
        send(&gw, Method::POST, "/admin/api/plugins/cache/versions", "application/wasm", TEST_GUEST.to_vec()).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["param"], "name");

    // Bound for one tenant through the admin API: that tenant's deterministic requests are
    // cached, the other tenant's never reach the cache.
    let binding = json!({"plugin": "cache", "scope": {"kind": "tenant", "name": TENANT}});
    let (status, body) = admin(&gw, Method::POST, "/admin/api/bindings", Some(binding)).await;
    assert_eq!(status, 201, "{body}");
    let deterministic = chat_body("cache me", json!({"max_tokens": 4, "temperature": 0}));
    let header = |key: &'static str| {
        let gw = &gw;
        let body = deterministic.clone();
        async move {
            let reply = gw.client.post_json_whole(&gw.url("/v1/chat/completions"), Some(key), &body).await;
            reply.headers.get("x-sluice-cache").map(|v| v.to_str().unwrap().to_owned())
        }
    };
    assert!(
        wait_until_async(Duration::from_secs(10), || async { header(TENANT_KEY).await.as_deref() == Some("hit") })
            .await,
        "the bound cache answers the tenant's repeated request"
    );
    assert_eq!(header(OTHER_KEY).await, None, "not bound for globex");
    gw.shutdown().await;

    // A second start finds its built-ins published already: nothing new is stored.
    let again = TestGateway::start(1, opts).await;
    let (_, plugins) = admin(&again, Method::GET, "/admin/api/plugins/cache/versions", None).await;
    assert_eq!(plugins.as_array().unwrap().len(), 1, "{plugins}");
    again.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_uploaded_as_cache_before_the_name_was_reserved_is_left_alone() {
    let (store, _dir) = fresh_sqlite().await;
    let own = sluice_store::model::NewPluginVersion {
        plugin: "cache".into(),
        bytes: TEST_GUEST.to_vec(),
        sha256: "0".repeat(64),
        manifest: json!({"hooks": ["on-request"], "capabilities": []}),
    };
    store.add_plugin_version(&sluice_store::model::Actor::admin(), &own).await.unwrap();
    let gw = TestGateway::start(1, GatewayOptions { store: Some(TestStore(store)), ..GatewayOptions::default() }).await;
    let (status, versions) = admin(&gw, Method::GET, "/admin/api/plugins/cache/versions", None).await;
    assert_eq!(status, 200);
    assert_eq!(versions.as_array().unwrap().len(), 1, "nothing added to the operator's own plugin: {versions}");
    let (_, plugins) = admin(&gw, Method::GET, "/admin/api/plugins", None).await;
    assert_eq!(plugins[0]["active_version"], Value::Null, "and nothing activated: {plugins}");
    gw.shutdown().await;
}
