//! Limits of one API key and of one tenant × model pair.

use http::StatusCode;
use serde_json::json;

use super::{Audit, assert_error};
use crate::common::Admin;

pub async fn key_and_model_limits(admin: &Admin) {
    assert_eq!(admin.post("/admin/api/tenants", json!({"name": "scoped"})).await.status, StatusCode::CREATED);
    let key = admin.post("/admin/api/tenants/scoped/keys", json!({"name": "batch"})).await;
    assert_eq!(key.status, StatusCode::CREATED, "{}", key.text);
    assert!(key.body["limits"]["requests_per_minute"].is_null(), "a new key has no limits of its own");
    let id = key.body["id"].as_i64().unwrap();
    let limits_path = format!("/admin/api/tenants/scoped/keys/{id}/limits");
    let mut audit = Audit::start(admin).await;

    // A key's limits: PUT replaces all four, the key comes back with them, DELETE clears them.
    let set = admin.put(&limits_path, json!({"requests_per_minute": 5, "max_concurrency": 2})).await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.text);
    assert_eq!((set.body["id"].as_i64(), set.body["name"].as_str()), (Some(id), Some("batch")));
    assert_eq!(
        set.body["limits"],
        json!({"requests_per_minute": 5, "tokens_per_minute": null, "max_concurrency": 2, "monthly_token_budget": null})
    );
    assert!(set.body.get("key").is_none(), "never the secret");
    audit.expect(admin, "key_limits").await;
    let listed = admin.get("/admin/api/tenants/scoped/keys").await;
    assert_eq!(listed.body[0]["limits"]["requests_per_minute"], 5);
    let replaced = admin.put(&limits_path, json!({"tokens_per_minute": 1000})).await;
    assert!(replaced.body["limits"]["requests_per_minute"].is_null(), "PUT replaces all limits");
    audit.expect(admin, "key_limits").await;
    let cleared = admin.delete(&limits_path).await;
    assert_eq!(cleared.status, StatusCode::OK, "{}", cleared.text);
    assert!(cleared.body["limits"]["tokens_per_minute"].is_null());
    audit.expect(admin, "key_limits").await;

    assert_error(&admin.put(&limits_path, json!({"rpm": 1})).await, StatusCode::BAD_REQUEST, Some("rpm"));
    assert_error(
        &admin.put(&limits_path, json!({"requests_per_minute": -1})).await,
        StatusCode::BAD_REQUEST,
        Some("requests_per_minute"),
    );
    assert_error(
        &admin.put(&limits_path, json!({"monthly_token_budget": u64::MAX})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("monthly_token_budget"),
    );
    assert_error(
        &admin.put(&limits_path, json!({"allowed_models": ["x"]})).await,
        StatusCode::BAD_REQUEST,
        Some("allowed_models"),
    );
    let missing_key = format!("/admin/api/tenants/scoped/keys/{}/limits", id + 1000);
    assert_error(&admin.put(&missing_key, json!({})).await, StatusCode::NOT_FOUND, None);
    assert_error(&admin.delete(&missing_key).await, StatusCode::NOT_FOUND, None);
    assert_error(
        &admin.put(&format!("/admin/api/tenants/nope/keys/{id}/limits"), json!({})).await,
        StatusCode::NOT_FOUND,
        None,
    );
    assert_error(
        &admin.put("/admin/api/tenants/scoped/keys/x/limits", json!({})).await,
        StatusCode::BAD_REQUEST,
        Some("id"),
    );
    audit.expect_none(admin).await;

    // A model's limits: the name is a path segment, `/` percent-encoded.
    let model_path = "/admin/api/tenants/scoped/models/meta-llama%2FLlama-3.1-8B/limits";
    assert_error(&admin.get(model_path).await, StatusCode::NOT_FOUND, None);
    let set = admin.put(model_path, json!({"tokens_per_minute": 1000})).await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.text);
    assert_eq!(set.body["model"], "meta-llama/Llama-3.1-8B");
    assert_eq!(set.body["limits"]["tokens_per_minute"], 1000);
    audit.expect(admin, "model_limits").await;
    assert_eq!(admin.get(model_path).await.body, set.body);
    let qwen = admin.put("/admin/api/tenants/scoped/models/qwen/limits", json!({"requests_per_minute": 10})).await;
    assert_eq!(qwen.status, StatusCode::OK, "{}", qwen.text);
    audit.expect(admin, "model_limits").await;

    let detail = admin.get("/admin/api/tenants/scoped").await;
    let models: Vec<&str> =
        detail.body["model_limits"].as_array().unwrap().iter().map(|m| m["model"].as_str().unwrap()).collect();
    assert_eq!(models, ["meta-llama/Llama-3.1-8B", "qwen"], "the tenant shows its model limits, by name");
    assert!(detail.body["keys"][0]["limits"].is_object(), "and each key's");

    assert_error(
        &admin.put("/admin/api/tenants/scoped/models/qwen/limits", json!({})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("limits"),
    );
    assert_error(
        &admin.put("/admin/api/tenants/scoped/models/qwen/limits", json!({"requests_per_minute": null})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("limits"),
    );
    assert_error(
        &admin.put("/admin/api/tenants/scoped/models/a%20b/limits", json!({"max_concurrency": 1})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("model"),
    );
    assert_error(
        &admin.put("/admin/api/tenants/scoped/models/qwen/limits", json!({"tpm": 1})).await,
        StatusCode::BAD_REQUEST,
        Some("tpm"),
    );
    assert_error(
        &admin.put("/admin/api/tenants/nope/models/qwen/limits", json!({"max_concurrency": 1})).await,
        StatusCode::NOT_FOUND,
        None,
    );
    audit.expect_none(admin).await;

    let deleted = admin.delete("/admin/api/tenants/scoped/models/qwen/limits").await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.text);
    audit.expect(admin, "model_limits").await;
    assert_error(&admin.delete("/admin/api/tenants/scoped/models/qwen/limits").await, StatusCode::NOT_FOUND, None);
    assert_error(&admin.get("/admin/api/tenants/scoped/models/qwen/limits").await, StatusCode::NOT_FOUND, None);
    assert_error(&admin.get("/admin/api/tenants/nope/models/qwen/limits").await, StatusCode::NOT_FOUND, None);
    audit.expect_none(admin).await;
}
