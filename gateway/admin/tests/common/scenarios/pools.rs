//! Pools and endpoints.

use http::StatusCode;
use serde_json::json;

use super::{Audit, assert_error};
use crate::common::Admin;

pub async fn pools_and_endpoints(admin: &Admin) {
    let mut audit = Audit::start(admin).await;
    let pool =
        admin.post("/admin/api/pools", json!({"name": "gpu-a", "models": ["meta-llama/Llama-3.1-8B-Instruct"]})).await;
    assert_eq!(pool.status, StatusCode::CREATED, "{}", pool.text);
    assert_eq!(pool.body["endpoints"], json!([]));
    assert_eq!(pool.body["apis"], json!(["chat", "completions", "embeddings"]), "the default when none are named");
    audit.expect(admin, "pool").await;
    assert_error(
        &admin.post("/admin/api/pools", json!({"name": "gpu-a", "models": ["m"]})).await,
        StatusCode::CONFLICT,
        None,
    );
    assert_error(
        &admin.post("/admin/api/pools", json!({"name": "gpu-b", "models": []})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("models"),
    );
    assert_error(
        &admin.post("/admin/api/pools", json!({"name": "GPU", "models": ["m"]})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("name"),
    );

    audit.expect_none(admin).await;

    apis(admin, &mut audit).await;

    let endpoints = "/admin/api/pools/gpu-a/endpoints";
    let added = admin.post(endpoints, json!({"name": "w1", "url": "http://127.0.0.1:8000"})).await;
    assert_eq!(added.status, StatusCode::CREATED, "{}", added.text);
    let w1 = &added.body["endpoints"][0];
    assert_eq!(
        (w1["name"].as_str(), w1["flavor"].as_str(), w1["weight"].as_u64()),
        (Some("w1"), Some("vllm"), Some(1))
    );
    assert_eq!(w1["drained"], false);
    audit.expect(admin, "endpoint").await;
    let added = admin
        .post(
            endpoints,
            json!({"name": "w2", "url": "https://gpu.example/v1", "flavor": "sglang", "weight": 3, "http2": true}),
        )
        .await;
    assert_eq!(added.body["endpoints"].as_array().unwrap().len(), 2, "{}", added.text);
    audit.expect(admin, "endpoint").await;
    assert_error(
        &admin.post(endpoints, json!({"name": "w1", "url": "http://127.0.0.1:8001"})).await,
        StatusCode::CONFLICT,
        None,
    );
    assert_error(
        &admin.post(endpoints, json!({"name": "w3", "url": "10.0.0.1:8000"})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("url"),
    );
    assert_error(
        &admin.post(endpoints, json!({"name": "w3", "url": "http://a", "weight": 0})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("weight"),
    );
    assert_error(
        &admin.post(endpoints, json!({"name": "w3", "url": "http://a", "flavor": "tgi"})).await,
        StatusCode::BAD_REQUEST,
        Some("flavor"),
    );
    assert_error(
        &admin.post("/admin/api/pools/nope/endpoints", json!({"name": "w3", "url": "http://a"})).await,
        StatusCode::NOT_FOUND,
        None,
    );

    let drained = admin.put("/admin/api/pools/gpu-a/endpoints/w1", json!({"drained": true})).await;
    assert_eq!(drained.status, StatusCode::OK, "{}", drained.text);
    let w1 = drained.body["endpoints"].as_array().unwrap().iter().find(|e| e["name"] == "w1").unwrap().clone();
    assert_eq!(w1["drained"], true);
    audit.expect(admin, "endpoint").await;
    assert_error(
        &admin.put("/admin/api/pools/gpu-a/endpoints/w1", json!({"drained": "yes"})).await,
        StatusCode::BAD_REQUEST,
        Some("drained"),
    );
    assert_error(
        &admin.put("/admin/api/pools/gpu-a/endpoints/w9", json!({"drained": true})).await,
        StatusCode::NOT_FOUND,
        None,
    );
    audit.expect_none(admin).await;

    let got = admin.get("/admin/api/pools/gpu-a").await;
    assert_eq!(got.body["models"], json!(["meta-llama/Llama-3.1-8B-Instruct"]));
    assert_eq!(admin.get("/admin/api/pools").await.body.as_array().unwrap().len(), 2);
    assert_error(&admin.get("/admin/api/pools/nope").await, StatusCode::NOT_FOUND, None);

    let removed = admin.delete("/admin/api/pools/gpu-a/endpoints/w1").await;
    assert_eq!(removed.status, StatusCode::OK, "{}", removed.text);
    assert_eq!(removed.body["endpoints"].as_array().unwrap().len(), 1);
    audit.expect(admin, "endpoint").await;
    assert_error(&admin.delete("/admin/api/pools/gpu-a/endpoints/w1").await, StatusCode::NOT_FOUND, None);

    assert_eq!(admin.delete("/admin/api/pools/gpu-a").await.status, StatusCode::NO_CONTENT);
    audit.expect(admin, "pool").await;
    assert_error(&admin.delete("/admin/api/pools/gpu-a").await, StatusCode::NOT_FOUND, None);
}

/// A pool's `apis`: given at creation, changed by `PATCH`, shown in every answer; an unknown
/// name is a 400 naming it, an empty list a 422.
async fn apis(admin: &Admin, audit: &mut Audit) {
    let created = admin
        .post(
            "/admin/api/pools",
            json!({"name": "vllm", "models": ["qwen"], "apis": ["messages", "chat", "responses", "chat"]}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    assert_eq!(created.body["apis"], json!(["chat", "responses", "messages"]), "a set, in one order");
    let entry = audit.expect(admin, "pool").await;
    assert_eq!(entry["detail"]["apis"], json!(["chat", "responses", "messages"]), "{entry}");
    assert_eq!(admin.get("/admin/api/pools/vllm").await.body["apis"], created.body["apis"]);

    let unknown =
        admin.post("/admin/api/pools", json!({"name": "sgl", "models": ["m"], "apis": ["chat", "anthropic"]})).await;
    assert_error(&unknown, StatusCode::BAD_REQUEST, Some("apis[1]"));
    assert!(unknown.message().contains("anthropic"), "the bad value is named: {}", unknown.text);
    assert!(unknown.message().contains("messages"), "and the names allowed: {}", unknown.text);
    assert_error(
        &admin.post("/admin/api/pools", json!({"name": "sgl", "models": ["m"], "apis": []})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("apis"),
    );
    assert_error(
        &admin.post("/admin/api/pools", json!({"name": "sgl", "models": ["m"], "apis": "chat"})).await,
        StatusCode::BAD_REQUEST,
        Some("apis"),
    );
    audit.expect_none(admin).await;

    let updated = admin.patch("/admin/api/pools/vllm", json!({"apis": ["embeddings"]})).await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.text);
    assert_eq!(updated.body["apis"], json!(["embeddings"]));
    assert_eq!(updated.body["models"], json!(["qwen"]), "only the APIs change");
    let entry = audit.expect(admin, "pool").await;
    assert_eq!(entry["action"], "pool.set_apis", "{entry}");
    assert_eq!(entry["detail"]["before"], json!(["chat", "responses", "messages"]), "{entry}");
    let unchanged = admin.patch("/admin/api/pools/vllm", json!({})).await;
    assert_eq!((unchanged.status, &unchanged.body), (StatusCode::OK, &updated.body), "{}", unchanged.text);

    let unknown = admin.patch("/admin/api/pools/vllm", json!({"apis": ["chat", "completions", "grpc"]})).await;
    assert_error(&unknown, StatusCode::BAD_REQUEST, Some("apis[2]"));
    assert!(unknown.message().contains("grpc"), "{}", unknown.text);
    assert_error(
        &admin.patch("/admin/api/pools/vllm", json!({"apis": []})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("apis"),
    );
    assert_error(
        &admin.patch("/admin/api/pools/vllm", json!({"models": ["m"]})).await,
        StatusCode::BAD_REQUEST,
        Some("models"),
    );
    assert_error(&admin.patch("/admin/api/pools/nope", json!({"apis": ["chat"]})).await, StatusCode::NOT_FOUND, None);
    audit.expect_none(admin).await;
    assert_eq!(admin.get("/admin/api/pools/vllm").await.body["apis"], json!(["embeddings"]));
}
