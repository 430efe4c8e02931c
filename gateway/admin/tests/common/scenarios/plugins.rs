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
    assert_eq!(v1.body["manifest"]["contract"], "sluice:policy@0.2.0");
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
    // The test guest imports most capabilities (its requested capabilities, what activation
    // must grant); granting more than it imports is allowed.
    let requested = json!(["log", "clock", "counters", "cache", "config", "metrics"]);
    assert_eq!(v2.body["manifest"]["capabilities"], requested, "the requested capabilities, in contract order");
    let all = json!(["log", "clock", "counters", "cache", "config", "metrics", "embeddings", "http"]);
    assert!(v2.body["granted"].is_null(), "nothing granted before the first activation: {}", v2.text);
    let ungranted = admin.post("/admin/api/plugins/guard/activate", json!({"version": 2})).await;
    assert_error(&ungranted, StatusCode::UNPROCESSABLE_ENTITY, Some("grants"));
    assert_eq!(ungranted.body["error"]["code"], "capability_not_granted");
    assert!(
        ungranted.message().contains("sluice:policy/log@0.2.0 needs capability `log`")
            && ungranted.message().contains("sluice:policy/metrics@0.2.0 needs capability `metrics`"),
        "no grants: every import is named: {}",
        ungranted.text
    );
    let no_metrics = json!({"version": 2, "grants": ["log", "clock", "counters", "cache", "config", "http"]});
    let partial = admin.post("/admin/api/plugins/guard/activate", no_metrics).await;
    assert_error(&partial, StatusCode::UNPROCESSABLE_ENTITY, Some("grants"));
    assert!(partial.message().contains("sluice:policy/metrics@0.2.0 needs capability `metrics`"), "{}", partial.text);
    assert!(!partial.message().contains("`log`"), "only what is missing is named: {}", partial.text);
    let unknown =
        admin.post("/admin/api/plugins/guard/activate", json!({"version": 2, "grants": ["filesystem"]})).await;
    assert_error(&unknown, StatusCode::UNPROCESSABLE_ENTITY, Some("grants"));
    assert!(unknown.message().contains("filesystem"), "{}", unknown.text);
    audit.expect_none(admin).await;

    // Grants are normalised: repeats dropped, contract order.
    let shuffled = json!(["http", "log", "clock", "counters", "cache", "config", "metrics", "embeddings", "log"]);
    let active = admin.post("/admin/api/plugins/guard/activate", json!({"version": 2, "grants": shuffled})).await;
    assert_eq!((active.status, active.body["active_version"].as_i64()), (StatusCode::OK, Some(2)), "{}", active.text);
    assert_eq!(active.body["granted"], all);
    audit.expect(admin, "plugin").await;
    let versions = admin.get("/admin/api/plugins/guard/versions").await;
    assert_eq!(versions.body[0]["granted"], all, "the grants are kept with the version");
    assert_eq!(admin.get("/admin/api/plugins").await.body[0]["granted"], all);
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
    // Version 1 never ran, so it has no grants to roll back with: a rollback grants nothing on
    // its own, and is refused naming what is missing.
    let never_granted = admin.call(http::Method::POST, "/admin/api/plugins/guard/rollback", None).await;
    assert_error(&never_granted, StatusCode::CONFLICT, Some("grants"));
    assert!(never_granted.message().contains("sluice:policy/log@0.2.0"), "{}", never_granted.text);
    audit.expect_none(admin).await;

    // Once version 1 has run with grants, rolling back to it grants those again.
    let v1_active = admin.post("/admin/api/plugins/guard/activate", json!({"version": 1, "grants": requested})).await;
    assert_eq!(v1_active.status, StatusCode::OK, "{}", v1_active.text);
    audit.expect(admin, "plugin").await;
    let again = admin.post("/admin/api/plugins/guard/activate", json!({"version": 2, "grants": all})).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text);
    audit.expect(admin, "plugin").await;
    let rolled = admin.call(http::Method::POST, "/admin/api/plugins/guard/rollback", None).await;
    assert_eq!((rolled.status, rolled.body["active_version"].as_i64()), (StatusCode::OK, Some(1)), "{}", rolled.text);
    assert_eq!(rolled.body["granted"], requested, "rolled back with version 1's own grants");
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
    assert!(global.body["timeout_ms"].is_null() && global.body["max_memory_bytes"].is_null(), "{}", global.text);
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
    // Limits within the host's maxima: 1..=1000 ms, 1 MiB up to the engine's 64 MiB.
    for (limits, field) in [
        (json!({"timeout_ms": 0}), "timeout_ms"),
        (json!({"timeout_ms": 1001}), "timeout_ms"),
        (json!({"max_memory_bytes": (64u64 << 20) + 1}), "max_memory_bytes"),
        (json!({"max_memory_bytes": 65536}), "max_memory_bytes"),
    ] {
        let mut body = json!({"plugin": "guard", "scope": {"kind": "global"}});
        body.as_object_mut().unwrap().extend(limits.as_object().unwrap().clone());
        let refused = admin.post("/admin/api/bindings", body).await;
        assert_error(&refused, StatusCode::UNPROCESSABLE_ENTITY, Some(field));
        assert!(refused.message().contains("maximum"), "the message says the bound: {}", refused.text);
    }
    audit.expect_none(admin).await;

    let list = admin.get("/admin/api/bindings").await;
    let ids: Vec<i64> = list.body.as_array().unwrap().iter().map(|b| b["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, vec![tenant.body["id"].as_i64().unwrap(), global.body["id"].as_i64().unwrap()], "by order");
    let id = global.body["id"].as_i64().unwrap();
    assert_eq!(admin.delete(&format!("/admin/api/bindings/{id}")).await.status, StatusCode::NO_CONTENT);
    audit.expect(admin, "plugin").await;
    assert_error(&admin.delete(&format!("/admin/api/bindings/{id}")).await, StatusCode::NOT_FOUND, None);
    assert_error(&admin.delete("/admin/api/bindings/x").await, StatusCode::BAD_REQUEST, Some("id"));

    let limited = json!({"plugin": "guard", "scope": {"kind": "global"}, "timeout_ms": 1000,
        "max_memory_bytes": 64u64 << 20});
    let limited = admin.post("/admin/api/bindings", limited).await;
    assert_eq!(limited.status, StatusCode::CREATED, "{}", limited.text);
    assert_eq!(
        (limited.body["timeout_ms"].as_u64(), limited.body["max_memory_bytes"].as_u64()),
        (Some(1000), Some(64 << 20))
    );
    audit.expect(admin, "plugin").await;
    let listed = admin.get("/admin/api/bindings").await;
    let shown = listed.body.as_array().unwrap().iter().find(|b| b["id"] == limited.body["id"]).unwrap().clone();
    assert_eq!(shown, limited.body, "listed with its limits");
}
