//! Flows through the API, run against each real store: every route's happy path, the field named
//! by each validation error, 409 on duplicates, 404 on missing things, and after every mutation an
//! audit entry by `admin` and a change notification.

use http::StatusCode;
use serde_json::{Value, json};
use sluice_store_model::{UsageCounts, UsageKey};

use super::Admin;

/// Follows the audit log: each mutation must add exactly one entry, by `admin`.
pub struct Audit {
    last_id: i64,
}

impl Audit {
    pub async fn start(admin: &Admin) -> Audit {
        let last_id = admin.audit(1).await.first().map_or(0, |e| e["id"].as_i64().unwrap());
        // Whatever happened before (setup) is not this flow's business.
        admin.take_changed().await;
        Audit { last_id }
    }

    /// The mutation just made left one audit entry whose action starts with `noun.` and woke the
    /// gateway's reload.
    pub async fn expect(&mut self, admin: &Admin, noun: &str) -> Value {
        let entries = admin.audit(20).await;
        let new: Vec<&Value> = entries.iter().filter(|e| e["id"].as_i64().unwrap() > self.last_id).collect();
        assert_eq!(new.len(), 1, "one audit entry per mutation, got {new:#?}");
        let entry = new[0].clone();
        assert_eq!(entry["actor"], "admin", "{entry}");
        let action = entry["action"].as_str().unwrap();
        assert!(action.starts_with(&format!("{noun}.")), "action {action:?} for a {noun} mutation");
        self.last_id = entry["id"].as_i64().unwrap();
        admin.expect_changed().await;
        entry
    }

    /// A refused request changed nothing.
    pub async fn expect_none(&self, admin: &Admin) {
        let newest = admin.audit(1).await.first().map_or(0, |e| e["id"].as_i64().unwrap());
        assert_eq!(newest, self.last_id, "a refused request must not be audited");
        assert!(!admin.take_changed().await, "a refused request must not notify a change");
    }
}

fn assert_error(reply: &super::Reply, status: StatusCode, param: Option<&str>) {
    assert_eq!(reply.status, status, "{}", reply.text);
    assert!(reply.body["error"]["message"].is_string(), "{}", reply.text);
    assert!(reply.body["error"]["type"].is_string(), "{}", reply.text);
    assert_eq!(reply.param(), param, "{}", reply.text);
}

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
            Some(super::TOKEN),
            Some(("text/plain", r#"{"name":"b"}"#.into())),
        )
        .await;
    assert_error(&no_type, StatusCode::BAD_REQUEST, Some("Content-Type"));
    let broken = admin
        .send(
            http::Method::POST,
            "/admin/api/tenants",
            Some(super::TOKEN),
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
    let unnamed = admin.send(http::Method::POST, "/admin/api/tenants/acme/keys", Some(super::TOKEN), None).await;
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
    let full_audit = admin.get("/admin/api/audit?limit=1000").await;
    assert!(full_audit.body.as_array().unwrap().iter().all(|e| e["actor"] == "admin"));

    let deleted = admin.delete("/admin/api/tenants/acme").await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.text);
    audit.expect(admin, "tenant").await;
    assert_error(&admin.get("/admin/api/tenants/acme").await, StatusCode::NOT_FOUND, None);
    assert_error(&admin.delete("/admin/api/tenants/acme").await, StatusCode::NOT_FOUND, None);
    audit.expect_none(admin).await;
}

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

pub async fn usage_reports(admin: &Admin) {
    let now = sluice_store_model::Timestamp::now().unix_seconds() / 60 * 60;
    let counts = |requests: i64| UsageCounts {
        requests,
        prompt_tokens: requests * 100,
        completion_tokens: requests * 10,
        ttft_count: requests,
        ttft_sum_ms: requests * 50,
        ttft_max_ms: 80,
        ..UsageCounts::default()
    };
    let key = |tenant: &str, model: &str, minute: i64| UsageKey { tenant: tenant.into(), model: model.into(), minute };
    admin
        .store
        .add_usage(&[
            (key("acme", "llama", now - 600), counts(3)),
            (key("acme", "qwen", now - 1200), counts(2)),
            (key("acme", "llama", now - 3 * 86_400), counts(7)),
            (key("other", "llama", now - 600), counts(5)),
        ])
        .await
        .unwrap();

    let recent = admin.get("/admin/api/tenants/acme/usage").await;
    assert_eq!(recent.status, StatusCode::OK, "{}", recent.text);
    assert_eq!(recent.body["rows"].as_array().unwrap().len(), 2, "the default range is the last 24 h: {}", recent.text);
    assert_eq!(recent.body["totals"]["requests"], 5);
    assert_eq!(recent.body["totals"]["prompt_tokens"], 500);
    assert_eq!(recent.body["tenant"], "acme");

    let from = sluice_store_model::Timestamp((now - 4 * 86_400) * 1000).to_string();
    let week = admin.get(&format!("/admin/api/tenants/acme/usage?from={}&model=llama", &from[..10])).await;
    assert_eq!(week.status, StatusCode::OK, "{}", week.text);
    assert_eq!(week.body["totals"]["requests"], 10, "{}", week.text);

    let all = admin.get("/admin/api/usage").await;
    assert_eq!(all.body["totals"]["requests"], 10, "{}", all.text);
    let other = admin.get("/admin/api/usage?tenant=other&model=llama").await;
    assert_eq!(other.body["totals"]["requests"], 5, "{}", other.text);

    assert_error(&admin.get("/admin/api/usage?from=yesterday").await, StatusCode::UNPROCESSABLE_ENTITY, Some("from"));
    let backwards = admin.get("/admin/api/usage?from=2026-01-02&to=2026-01-01T00:00:00Z").await;
    assert_error(&backwards, StatusCode::UNPROCESSABLE_ENTITY, Some("to"));
    assert_error(&admin.get("/admin/api/audit?limit=0").await, StatusCode::UNPROCESSABLE_ENTITY, Some("limit"));
    assert_error(&admin.get("/admin/api/audit?limit=many").await, StatusCode::BAD_REQUEST, None);
}

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
            Some(super::TOKEN),
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
    assert_eq!(v1.body["manifest"]["hooks"], json!(["on-request", "route", "on-response-headers", "on-response-done"]));
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
