//! Stored plugins run with exactly what the admin granted and the limits their binding sets:
//! the grants stored at activation (not what the component imports) reach the loader, which
//! refuses a component importing more; a binding's `timeout_ms` and `max_memory_bytes` are its
//! call limits, unset ones the host's defaults.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests fail loudly")]

use std::sync::Arc;
use std::time::Duration;

use http::Method;
use serde_json::json;
use sluice_plugin_host::testing::{TEST_GUEST, variant};
use sluice_plugin_host::{Binding, Capability, Origin};
use sluice_store::model::validate::CAPABILITIES;
use sluice_store::model::{Actor, NewBinding, Scope};
use sluice_test_support::{
    ADMIN_TOKEN, GatewayOptions, TENANT, TENANT_KEY, TestClient, TestGateway, TestStore, chat_body, fresh_sqlite,
    full_body, read_whole, request, wait_until_async,
};

/// What the test guest imports.
const IMPORTS: [&str; 6] = ["log", "clock", "counters", "cache", "config", "metrics"];

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

/// Uploads through the admin API (which inspects the component); returns the version's sha256.
async fn upload(gw: &TestGateway, plugin: &str, bytes: Vec<u8>) -> String {
    let url = gw.admin_url(&format!("/admin/api/plugins/{plugin}/versions"));
    let mut req = request(Method::POST, &url, Some(ADMIN_TOKEN), full_body(bytes));
    req.headers_mut().insert("content-type", "application/wasm".parse().unwrap());
    let reply = read_whole(TestClient::http1().send(req).await).await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    let version = reply.json();
    assert_eq!(version["manifest"]["capabilities"], json!(IMPORTS), "the requested capabilities");
    version["sha256"].as_str().unwrap().to_owned()
}

/// The store bindings the plugin host runs now.
fn store_bindings(gw: &TestGateway) -> Vec<Arc<Binding>> {
    let chain = gw.running.gateway().plugins.chain();
    chain.bindings().iter().filter(|b| matches!(b.origin, Origin::Store { .. })).cloned().collect()
}

async fn chat_status(gw: &TestGateway) -> u16 {
    let body = chat_body("hello", json!({"max_tokens": 2}));
    gw.client.post_json_whole(&gw.url("/v1/chat/completions"), Some(TENANT_KEY), &body).await.status.as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_binding_runs_with_exactly_its_grants_and_limits() {
    let (store, _dir) = fresh_sqlite().await;
    let opts = GatewayOptions { store: Some(TestStore(Arc::clone(&store))), ..GatewayOptions::default() };
    let gw = TestGateway::start(1, opts).await;
    let admin = Actor::admin();

    // Written to the store directly, past the admin API's check: version 1 is granted less than
    // it imports. The gateway's loader is the second line of defence and must refuse it.
    let _first = upload(&gw, "guard", TEST_GUEST.to_vec()).await;
    let second = upload(&gw, "guard", variant(TEST_GUEST, "second")).await;
    store.activate_plugin_version(&admin, "guard", 1, &names(&["log"])).await.unwrap();
    let limited = NewBinding {
        config: json!({"mode": "deny"}),
        timeout_ms: Some(250),
        max_memory_bytes: Some(8 << 20),
        ..NewBinding::new("guard", Scope::Tenant(TENANT.into()))
    };
    let limited = store.bind_plugin(&admin, &limited).await.unwrap();
    let defaults = NewBinding { order: 1, ..NewBinding::new("guard", Scope::Model("no-such-model".into())) };
    let defaults = store.bind_plugin(&admin, &defaults).await.unwrap();
    // Give the sync a few snapshots' time: nothing may load.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(store_bindings(&gw).is_empty(), "a component importing ungranted capabilities must not load");
    assert_eq!(chat_status(&gw).await, 200, "the refused binding does not run");

    // Version 2 activated with what it imports plus one more: it loads, with those limits.
    let mut granted = names(&IMPORTS);
    granted.push("http".into());
    store.activate_plugin_version(&admin, "guard", 2, &granted).await.unwrap();
    let loaded = wait_until_async(Duration::from_secs(15), || async { store_bindings(&gw).len() == 2 }).await;
    assert!(loaded, "both bindings load once the grants cover the imports");
    let bindings = store_bindings(&gw);
    let find = |id: i64| bindings.iter().find(|b| b.origin == Origin::Store { binding_id: id }).unwrap();
    let own = find(limited.id);
    assert_eq!(own.limits.timeout, Duration::from_millis(250));
    assert_eq!(own.limits.memory_bytes, 8 << 20);
    assert_eq!(own.version.sha256, second, "{own:?}");
    let unset = find(defaults.id);
    assert_eq!(unset.limits.timeout, Duration::from_millis(10), "unset: the host's default deadline");
    assert_eq!(unset.limits.memory_bytes, 16 << 20, "unset: the host's default memory");
    let denied = wait_until_async(Duration::from_secs(10), || async { chat_status(&gw).await == 403 }).await;
    assert!(denied, "the tenant's binding runs");

    // Re-activating version 1 with its short grant again is refused by the loader too: the
    // binding keeps the version it ran (an admin mistake never takes a working policy away).
    store.activate_plugin_version(&admin, "guard", 1, &names(&["log"])).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let kept = store_bindings(&gw);
    assert!(kept.iter().all(|b| b.version.sha256 == second), "{kept:?}");
    assert_eq!(chat_status(&gw).await, 403);

    gw.shutdown().await;
}

/// The admin API validates grants against the store model's list; the plugin host is the
/// authority on which capabilities exist.
#[test]
fn the_grantable_capabilities_are_the_hosts() {
    let host: Vec<&str> = Capability::ALL.iter().map(|c| c.name()).collect();
    assert_eq!(CAPABILITIES.to_vec(), host);
}
