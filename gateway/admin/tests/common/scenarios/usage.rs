//! Usage reports, and the bounds of the audit query.

use http::StatusCode;
use sluice_store_model::{UsageCounts, UsageKey};

use super::assert_error;
use crate::common::Admin;

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
