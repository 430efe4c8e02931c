//! Tenants, their limits, SLOs and keys.

use http::StatusCode;
use serde_json::json;

use super::{Audit, assert_error};
use crate::common::Admin;

pub async fn tenants_keys_limits_slos(admin: &Admin) {
    let mut audit = Audit::start(admin).await;

    let created = admin.post("/admin/api/tenants", json!({"name": "acme"})).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    assert_eq!((created.body["name"].as_str(), created.body["status"].as_str()), (Some("acme"), Some("active")));
    assert_eq!(created.body["priority"], "normal");
    audit.expect(admin, "tenant").await;

    assert_error(&admin.post("/admin/api/tenants", json!({"name": "acme"})).await, StatusCode::CONFLICT, None);
    assert_error(
        &admin.post("/admin/api/tenants", json!({"name": "Not OK"})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("name"),
    );
    assert_error(&admin.post("/admin/api/tenants", json!({"name": 5})).await, StatusCode::BAD_REQUEST, Some("name"));
    assert_error(
        &admin.post("/admin/api/tenants", json!({"name": "b", "priority": "urgent"})).await,
        StatusCode::BAD_REQUEST,
        Some("priority"),
    );
    assert_error(&admin.post("/admin/api/tenants", json!({"nam": "b"})).await, StatusCode::BAD_REQUEST, Some("nam"));
    let no_type = admin
        .send(
            http::Method::POST,
            "/admin/api/tenants",
            Some(crate::common::TOKEN),
            Some(("text/plain", r#"{"name":"b"}"#.into())),
        )
        .await;
    assert_error(&no_type, StatusCode::BAD_REQUEST, Some("Content-Type"));
    let broken = admin
        .send(
            http::Method::POST,
            "/admin/api/tenants",
            Some(crate::common::TOKEN),
            Some(("application/json", "{\"name\":".into())),
        )
        .await;
    assert_error(&broken, StatusCode::BAD_REQUEST, None);
    audit.expect_none(admin).await;

    let list = admin.get("/admin/api/tenants").await;
    assert_eq!(list.status, StatusCode::OK);
    assert!(list.body.as_array().unwrap().iter().any(|t| t["name"] == "acme"));
    assert_error(&admin.get("/admin/api/tenants/nope").await, StatusCode::NOT_FOUND, None);

    let patched = admin.patch("/admin/api/tenants/acme", json!({"priority": "high"})).await;
    assert_eq!((patched.status, patched.body["priority"].as_str()), (StatusCode::OK, Some("high")), "{}", patched.text);
    audit.expect(admin, "tenant").await;
    let suspended = admin.patch("/admin/api/tenants/acme", json!({"status": "suspended"})).await;
    assert_eq!(suspended.body["status"], "suspended");
    assert_eq!(suspended.body["priority"], "high", "absent fields stay");
    audit.expect(admin, "tenant").await;
    assert_eq!(admin.patch("/admin/api/tenants/acme", json!({"status": "active"})).await.body["status"], "active");
    audit.expect(admin, "tenant").await;
    assert_error(
        &admin.patch("/admin/api/tenants/nope", json!({"status": "active"})).await,
        StatusCode::NOT_FOUND,
        None,
    );

    // Limits: exactly the four counters (null = unlimited) and optional allowed models.
    let limits = json!({"requests_per_minute": 60, "tokens_per_minute": null, "max_concurrency": 4, "monthly_token_budget": 1_000_000});
    let set = admin.put("/admin/api/tenants/acme/limits", limits).await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.text);
    assert_eq!(set.body["requests_per_minute"], 60);
    assert!(set.body["tokens_per_minute"].is_null());
    audit.expect(admin, "limits").await;
    let only_rpm = admin
        .put("/admin/api/tenants/acme/limits", json!({"requests_per_minute": 600, "allowed_models": ["llama"]}))
        .await;
    assert_eq!(only_rpm.status, StatusCode::OK, "{}", only_rpm.text);
    assert!(only_rpm.body["max_concurrency"].is_null(), "PUT replaces all limits");
    audit.expect(admin, "limits").await;
    assert_error(
        &admin.put("/admin/api/tenants/acme/limits", json!({"requests_per_minute": -1})).await,
        StatusCode::BAD_REQUEST,
        Some("requests_per_minute"),
    );
    assert_error(
        &admin.put("/admin/api/tenants/acme/limits", json!({"rpm": 1})).await,
        StatusCode::BAD_REQUEST,
        Some("rpm"),
    );
    assert_error(
        &admin.put("/admin/api/tenants/acme/limits", json!({"allowed_models": ["a b"]})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("allowed_models"),
    );
    assert_error(
        &admin.put("/admin/api/tenants/acme/limits", json!({"monthly_token_budget": u64::MAX})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("monthly_token_budget"),
    );
    assert_error(&admin.put("/admin/api/tenants/nope/limits", json!({})).await, StatusCode::NOT_FOUND, None);

    let slos = json!([{"model": "llama", "ttft_p95_ms": 500, "tpot_p95_ms": 50, "target_attainment": 0.95}, {"model": "*", "ttft_p95_ms": 900, "target_attainment": 0.9}]);
    let set = admin.put("/admin/api/tenants/acme/slos", slos).await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.text);
    assert_eq!(set.body.as_array().unwrap().len(), 2);
    audit.expect(admin, "slos").await;
    let bad_target = json!([{"model": "llama", "ttft_p95_ms": 500, "target_attainment": 1.5}]);
    assert_error(
        &admin.put("/admin/api/tenants/acme/slos", bad_target).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("target_attainment"),
    );
    let twice = json!([{"model": "m", "ttft_p95_ms": 1, "target_attainment": 0.5}, {"model": "m", "ttft_p95_ms": 2, "target_attainment": 0.5}]);
    assert_error(
        &admin.put("/admin/api/tenants/acme/slos", twice).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("model"),
    );
    assert_error(
        &admin.put("/admin/api/tenants/acme/slos", json!({"model": "m"})).await,
        StatusCode::BAD_REQUEST,
        None,
    );
    let nested = json!([{"model": "m", "ttft_p95_ms": 1, "target_attainment": 0.5}, ["m", 1, 2, 0.5]]);
    assert_error(&admin.put("/admin/api/tenants/acme/slos", nested).await, StatusCode::BAD_REQUEST, Some("[1]"));
    let huge = json!([{"model": "m", "ttft_p95_ms": 2_147_483_648_u64, "target_attainment": 0.5}]);
    let reply = admin.put("/admin/api/tenants/acme/slos", huge).await;
    assert_error(&reply, StatusCode::UNPROCESSABLE_ENTITY, Some("ttft_p95_ms"));
    assert_error(&admin.patch("/admin/api/tenants/acme", json!([null, null])).await, StatusCode::BAD_REQUEST, None);
    audit.expect_none(admin).await;

    // Keys: the secret once, then never again.
    let first = admin.post("/admin/api/tenants/acme/keys", json!({"name": "ci"})).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.text);
    let secret = first.body["key"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("sk-") && secret.starts_with(first.body["prefix"].as_str().unwrap()));
    assert_eq!((first.body["tenant"].as_str(), first.body["name"].as_str()), (Some("acme"), Some("ci")));
    audit.expect(admin, "key").await;
    let unnamed =
        admin.send(http::Method::POST, "/admin/api/tenants/acme/keys", Some(crate::common::TOKEN), None).await;
    assert_eq!(unnamed.status, StatusCode::CREATED, "{}", unnamed.text);
    assert!(unnamed.body["name"].is_null());
    let second_secret = unnamed.body["key"].as_str().unwrap().to_owned();
    audit.expect(admin, "key").await;
    assert_error(
        &admin.post("/admin/api/tenants/acme/keys", json!({"name": ""})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("name"),
    );
    assert_error(&admin.post("/admin/api/tenants/nope/keys", json!({})).await, StatusCode::NOT_FOUND, None);

    let keys = admin.get("/admin/api/tenants/acme/keys").await;
    assert_eq!(keys.body.as_array().unwrap().len(), 2, "{}", keys.text);
    assert!(keys.body.as_array().unwrap().iter().all(|k| k.get("key").is_none()));
    let detail = admin.get("/admin/api/tenants/acme").await;
    assert_eq!(detail.status, StatusCode::OK);
    assert_eq!(detail.body["limits"]["requests_per_minute"], 600);
    assert_eq!(detail.body["limits"]["allowed_models"], json!(["llama"]));
    assert_eq!(detail.body["slos"].as_array().unwrap().len(), 2);
    assert_eq!(detail.body["keys"].as_array().unwrap().len(), 2);

    let id = first.body["id"].as_i64().unwrap();
    let revoked = admin.delete(&format!("/admin/api/tenants/acme/keys/{id}")).await;
    assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.text);
    assert!(revoked.body["revoked_at"].is_string());
    audit.expect(admin, "key").await;
    assert_error(&admin.delete("/admin/api/tenants/acme/keys/abc").await, StatusCode::BAD_REQUEST, Some("id"));
    assert_error(&admin.delete("/admin/api/tenants/acme/keys/999999").await, StatusCode::NOT_FOUND, None);

    for text in [&keys.text, &detail.text, &revoked.text, &admin.get("/admin/api/audit?limit=1000").await.text] {
        assert!(!text.contains(&secret) && !text.contains(&second_secret), "a key secret leaked: {text}");
    }
    // Paging backwards: `before` is the last id of the previous page.
    let page = admin.audit(2).await;
    let last = page[1]["id"].as_i64().unwrap();
    let next = admin.get(&format!("/admin/api/audit?limit=2&before={last}")).await;
    let ids: Vec<i64> = next.body.as_array().unwrap().iter().map(|e| e["id"].as_i64().unwrap()).collect();
    assert!(ids.len() == 2 && ids[0] < last && ids[1] < ids[0], "{ids:?} after {last}");
    let full_audit = admin.get("/admin/api/audit?limit=1000").await;
    assert!(full_audit.body.as_array().unwrap().iter().all(|e| e["actor"] == "admin"));

    let deleted = admin.delete("/admin/api/tenants/acme").await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.text);
    audit.expect(admin, "tenant").await;
    assert_error(&admin.get("/admin/api/tenants/acme").await, StatusCode::NOT_FOUND, None);
    assert_error(&admin.delete("/admin/api/tenants/acme").await, StatusCode::NOT_FOUND, None);
    audit.expect_none(admin).await;
}
