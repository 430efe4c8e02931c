//! Plugin uploads, versions, activation, rollback and bindings.

use http::StatusCode;
use serde_json::json;

use super::{Audit, assert_error};
use crate::common::Admin;

pub async fn plugins_and_bindings(admin: &Admin) {
    use sluice_plugin_host::testing::{TEST_GUEST, variant};

    assert_eq!(admin.post("/admin/api/tenants", json!({"name": "acme"})).await.status, StatusCode::CREATED);
    let mut audit = Audit::start(admin).await;

    let junk = admin.upload("guard", b"not a component").await;
    assert_error(&junk, StatusCode::UNPROCESSABLE_ENTITY, Some("body"));
    assert_eq!(junk.body["error"]["code"], "invalid_plugin");
    let plain = admin
        .send(
            http::Method::POST,
            "/admin/api/plugins/guard/versions",
            Some(crate::common::TOKEN),
            Some(("text/plain", "x".into())),
        )
        .await;
    assert_error(&plain, StatusCode::BAD_REQUEST, Some("Content-Type"));
    assert_error(&admin.upload("Guard!", TEST_GUEST).await, StatusCode::UNPROCESSABLE_ENTITY, Some("name"));
    // Past the JSON routes' 2 MB default the body still reaches the inspector...
    assert_error(&admin.upload("guard", &vec![7u8; 3 << 20]).await, StatusCode::UNPROCESSABLE_ENTITY, Some("body"));
    // ...and past the upload limit it is refused as too large.
    let huge = admin.upload("guard", &vec![7u8; sluice_admin::MAX_PLUGIN_BYTES + 1]).await;
    assert_error(&huge, StatusCode::PAYLOAD_TOO_LARGE, None);
    audit.expect_none(admin).await;

    let v1 = admin.upload("guard", TEST_GUEST).await;
    assert_eq!(v1.status, StatusCode::CREATED, "{}", v1.text);
    assert_eq!(v1.body["version"], 1);
    assert_eq!(v1.body["size_bytes"].as_u64(), Some(TEST_GUEST.len() as u64));
    let sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(TEST_GUEST))
    };
    assert_eq!(v1.body["sha256"].as_str(), Some(sha.as_str()));
    assert_eq!(v1.body["manifest"]["contract"], "sluice:policy@0.1.0");
    assert_eq!(
        v1.body["manifest"]["hooks"],
        json!(["on-request", "route", "on-response-headers", "on-response-chunk", "on-response-done"])
    );
    assert!(v1.body["manifest"]["capabilities"].as_array().unwrap().contains(&json!("log")), "{}", v1.text);
    audit.expect(admin, "plugin").await;
    assert_error(&admin.upload("guard", TEST_GUEST).await, StatusCode::CONFLICT, None);
    let v2 = admin.upload("guard", &variant(TEST_GUEST, "two")).await;
    assert_eq!(v2.body["version"], 2, "{}", v2.text);
    audit.expect(admin, "plugin").await;

    let plugins = admin.get("/admin/api/plugins").await;
    assert_eq!(plugins.body[0]["name"], "guard");
    assert!(plugins.body[0]["active_version"].is_null());
    let versions = admin.get("/admin/api/plugins/guard/versions").await;
    let numbers: Vec<i64> = versions.body.as_array().unwrap().iter().map(|v| v["version"].as_i64().unwrap()).collect();
    assert_eq!(numbers, vec![2, 1], "newest first");
    assert_error(&admin.get("/admin/api/plugins/nope/versions").await, StatusCode::NOT_FOUND, None);

    assert_error(
        &admin.call(http::Method::POST, "/admin/api/plugins/guard/rollback", None).await,
        StatusCode::CONFLICT,
        None,
    );
    let active = admin.post("/admin/api/plugins/guard/activate", json!({"version": 2})).await;
    assert_eq!((active.status, active.body["active_version"].as_i64()), (StatusCode::OK, Some(2)), "{}", active.text);
    audit.expect(admin, "plugin").await;
    assert_error(
        &admin.post("/admin/api/plugins/guard/activate", json!({"version": 9})).await,
        StatusCode::NOT_FOUND,
        None,
    );
    assert_error(
        &admin.post("/admin/api/plugins/guard/activate", json!({"version": 0})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("version"),
    );
    assert_error(
        &admin.post("/admin/api/plugins/nope/activate", json!({"version": 1})).await,
        StatusCode::NOT_FOUND,
        None,
    );
    let rolled = admin.call(http::Method::POST, "/admin/api/plugins/guard/rollback", None).await;
    assert_eq!((rolled.status, rolled.body["active_version"].as_i64()), (StatusCode::OK, Some(1)), "{}", rolled.text);
    audit.expect(admin, "plugin").await;
    assert_error(
        &admin.call(http::Method::POST, "/admin/api/plugins/guard/rollback", None).await,
        StatusCode::CONFLICT,
        None,
    );
    assert_error(
        &admin.call(http::Method::POST, "/admin/api/plugins/nope/rollback", None).await,
        StatusCode::NOT_FOUND,
        None,
    );
    audit.expect_none(admin).await;

    let global = admin.post("/admin/api/bindings", json!({"plugin": "guard", "scope": {"kind": "global"}})).await;
    assert_eq!(global.status, StatusCode::CREATED, "{}", global.text);
    assert_eq!((global.body["order"].as_i64(), global.body["failure_policy"].as_str()), (Some(0), Some("open")));
    assert_eq!(global.body["config"], json!({}));
    audit.expect(admin, "plugin").await;
    let scoped = json!({"plugin": "guard", "scope": {"kind": "tenant", "name": "acme"}, "order": -1, "failure_policy": "closed", "config": {"limit": 5}});
    let tenant = admin.post("/admin/api/bindings", scoped).await;
    assert_eq!(tenant.status, StatusCode::CREATED, "{}", tenant.text);
    assert_eq!(tenant.body["scope"], json!({"kind": "tenant", "name": "acme"}));
    audit.expect(admin, "plugin").await;
    assert_error(
        &admin.post("/admin/api/bindings", json!({"plugin": "guard", "scope": {"kind": "planet"}})).await,
        StatusCode::BAD_REQUEST,
        Some("scope"),
    );
    for scope in [json!(["tenant", "acme"]), json!({"kind": "global", "name": "x"}), json!({"kind": "tenant"})] {
        let body = json!({"plugin": "guard", "scope": scope});
        assert_error(&admin.post("/admin/api/bindings", body).await, StatusCode::BAD_REQUEST, Some("scope"));
    }
    assert_error(
        &admin
            .post("/admin/api/bindings", json!({"plugin": "guard", "scope": {"kind": "global"}, "config": "x"}))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("config"),
    );
    assert_error(
        &admin.post("/admin/api/bindings", json!({"plugin": "guard", "scope": {"kind": "model", "name": "a b"}})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("scope.name"),
    );
    assert_error(
        &admin.post("/admin/api/bindings", json!({"plugin": "nope", "scope": {"kind": "global"}})).await,
        StatusCode::NOT_FOUND,
        None,
    );
    audit.expect_none(admin).await;

    let list = admin.get("/admin/api/bindings").await;
    let ids: Vec<i64> = list.body.as_array().unwrap().iter().map(|b| b["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, vec![tenant.body["id"].as_i64().unwrap(), global.body["id"].as_i64().unwrap()], "by order");
    let id = global.body["id"].as_i64().unwrap();
    assert_eq!(admin.delete(&format!("/admin/api/bindings/{id}")).await.status, StatusCode::NO_CONTENT);
    audit.expect(admin, "plugin").await;
    assert_error(&admin.delete(&format!("/admin/api/bindings/{id}")).await, StatusCode::NOT_FOUND, None);
    assert_error(&admin.delete("/admin/api/bindings/x").await, StatusCode::BAD_REQUEST, Some("id"));
}
