//! The admin API over HTTP against a real SQLite store on a temporary file.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "test code")]

mod common;

use bytes::Bytes;
use common::{TOKEN, scenarios};
use http::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn token_required_and_compared() {
    let admin = common::sqlite(Some(TOKEN)).await;
    let path = "/admin/api/tenants";
    let missing = admin.send(Method::GET, path, None, None).await;
    assert_eq!(missing.status, StatusCode::UNAUTHORIZED, "{}", missing.text);
    assert_eq!(missing.body["error"]["type"], "authentication_error");
    assert_eq!(missing.headers.get("www-authenticate").unwrap(), "Bearer");
    let wrong = admin.send(Method::GET, path, Some("test-admin-token-012345678"), None).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    // A refused request's body is never read or acted on.
    let body = Some(("application/json", Bytes::from(r#"{"name":"sneaky"}"#)));
    assert_eq!(admin.send(Method::POST, path, Some("nope"), body).await.status, StatusCode::UNAUTHORIZED);
    let right = admin.send(Method::GET, path, Some(TOKEN), None).await;
    assert_eq!((right.status, right.body.clone()), (StatusCode::OK, json!([])), "{}", right.text);
    // The document holds no data and is served without a token.
    let doc = admin.send(Method::GET, sluice_admin::OPENAPI_PATH, None, None).await;
    assert_eq!(doc.status, StatusCode::OK);
    assert_eq!(doc.body["openapi"], "3.1.0");
    assert_eq!(doc.text, sluice_admin::openapi_json());
}

#[tokio::test]
async fn without_a_configured_token_every_data_route_is_closed() {
    let admin = common::sqlite(None).await;
    for (method, path) in [
        (Method::GET, "/admin/api/tenants"),
        (Method::POST, "/admin/api/tenants"),
        (Method::GET, "/admin/api/audit"),
        (Method::POST, "/admin/api/plugins/x/versions"),
    ] {
        let reply = admin.send(method, path, Some(TOKEN), None).await;
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{path}: {}", reply.text);
        assert!(reply.message().contains("[admin] token") && reply.message().contains("SLUICE_ADMIN_TOKEN"));
    }
    assert_eq!(admin.send(Method::GET, sluice_admin::OPENAPI_PATH, None, None).await.status, StatusCode::OK);
}

#[tokio::test]
async fn reload_without_a_gateway_behind_it_is_a_conflict_not_a_server_error() {
    let admin = common::sqlite(Some(TOKEN)).await;
    let reply = admin.call(Method::POST, "/admin/api/reload", None).await;
    assert_eq!(reply.status, StatusCode::CONFLICT, "{}", reply.text);
    assert_eq!(reply.body["error"]["code"], "reload_unavailable");
}

#[tokio::test]
async fn unknown_paths_and_wrong_methods_answer_json() {
    let admin = common::sqlite(Some(TOKEN)).await;
    let missing = admin.get("/admin/api/nothing-here").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.body["error"]["code"], "not_found");
    let wrong = admin.call(Method::PATCH, "/admin/api/pools", None).await;
    assert_eq!(wrong.status, StatusCode::METHOD_NOT_ALLOWED, "{}", wrong.text);
    assert_eq!(wrong.body["error"]["code"], "method_not_allowed");
    let allow = wrong.headers.get("allow").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    assert!(allow.contains("GET") && allow.contains("POST"), "Allow: {allow:?}");
}

#[tokio::test]
async fn changed_is_notified_after_mutations_only() {
    let admin = common::sqlite(Some(TOKEN)).await;
    admin.get("/admin/api/tenants").await;
    assert!(!admin.take_changed().await, "reads do not notify");
    assert_eq!(admin.post("/admin/api/tenants", json!({"name": "n1"})).await.status, StatusCode::CREATED);
    admin.expect_changed().await;
    assert_eq!(admin.post("/admin/api/tenants", json!({"name": "n1"})).await.status, StatusCode::CONFLICT);
    assert!(!admin.take_changed().await, "failed mutations do not notify");
}

#[tokio::test]
async fn tenants_keys_limits_slos() {
    scenarios::tenants_keys_limits_slos(&common::sqlite(Some(TOKEN)).await).await;
}

#[tokio::test]
async fn pools_and_endpoints() {
    scenarios::pools_and_endpoints(&common::sqlite(Some(TOKEN)).await).await;
}

#[tokio::test]
async fn usage_reports() {
    scenarios::usage_reports(&common::sqlite(Some(TOKEN)).await).await;
}

#[tokio::test]
async fn plugins_and_bindings() {
    scenarios::plugins_and_bindings(&common::sqlite(Some(TOKEN)).await).await;
}

#[tokio::test]
async fn key_and_model_limits() {
    scenarios::key_and_model_limits(&common::sqlite(Some(TOKEN)).await).await;
}
