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
    assert_eq!(admin.get("/admin/api/pools").await.body.as_array().unwrap().len(), 1);
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
