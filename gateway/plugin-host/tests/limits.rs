//! The `limits` capability and the built-in `ratelimit` plugin, through the chain: in-process,
//! and shared by two hosts (two replicas) through a real Redis at 127.0.0.1:6379.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests fail loudly")]

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use http::HeaderMap;
use sluice_plugin_host::limits::{RequestEnd, Usage};
use sluice_plugin_host::{
    BindingSpec, Fallback, HostSettings, PluginHost, RequestLimits, RequestVerdict, RequestView, SharedMode,
    SharedSettings,
};

const REDIS: &str = "redis://127.0.0.1:6379";

fn ratelimit_host(shared: Option<SharedSettings>, limits: serde_json::Value) -> PluginHost {
    ratelimit_host_in(&prometheus::Registry::new(), shared, limits)
}

fn ratelimit_host_in(
    registry: &prometheus::Registry,
    shared: Option<SharedSettings>,
    limits: serde_json::Value,
) -> PluginHost {
    let settings = HostSettings { shared_limits: shared, ..settings() };
    let host = PluginHost::new(settings, registry).unwrap();
    host.load_and_activate(BindingSpec::builtin_ratelimit()).unwrap();
    let tenant = serde_json::json!({ "name": "acme", "priority": "normal", "limits": limits }).to_string();
    host.services().set_tenants(HashMap::from([("acme".to_owned(), tenant)]));
    host.services().set_limited_tenants(HashSet::from(["acme".to_owned()]));
    host
}

fn shared(prefix: &str, fallback: Fallback) -> SharedSettings {
    SharedSettings {
        url: REDIS.to_owned(),
        timeout: Duration::from_millis(200),
        fallback,
        // A fresh prefix per test run: the counters of an earlier run do not count.
        key_prefix: format!("sluice-test:{prefix}:{}:", std::process::id() ^ rand_suffix()),
        // Leased, the default: the limits here are small enough to be decided exactly anyway.
        mode: SharedMode::default(),
    }
}

fn rand_suffix() -> u32 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos()
}

fn request(host: &PluginHost, max_tokens: u32) -> RequestView {
    let mut v = view("acme");
    v.info.summary.max_tokens = Some(max_tokens);
    v.limits = Some(RequestLimits::new(Arc::clone(&host.services().limits)));
    v
}

/// Runs on-request; `Ok(view)` when admitted, `Err(status, headers, body)` when answered.
async fn ask(
    host: &PluginHost,
    max_tokens: u32,
) -> Result<RequestView, (u16, Vec<(String, String)>, serde_json::Value)> {
    let mut v = request(host, max_tokens);
    match host.chain().on_request(&mut v).await.unwrap() {
        RequestVerdict::Continue(_) => Ok(v),
        RequestVerdict::Respond { response, .. } => {
            // As the gateway does: the headers the limiter asked the host for go on the answer.
            let mut added = HeaderMap::new();
            v.limits.as_ref().unwrap().apply_response_headers(&mut added);
            let mut headers: Vec<(String, String)> = response.headers.into_iter().map(|h| (h.name, h.value)).collect();
            headers.extend(added.iter().map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned())));
            Err((response.status, headers, serde_json::from_slice(&response.body).unwrap()))
        }
        other => panic!("unexpected {other:?}"),
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

/// The request ends as `end` says: what the gateway does when it emits the request's record.
fn end(v: &RequestView, end: RequestEnd) {
    v.limits.as_ref().expect("requests here carry their holds").finish(end);
}

fn used(prompt: u64, completion: u64) -> RequestEnd {
    RequestEnd::Used(Usage { prompt, cached: 0, completion })
}

#[tokio::test]
async fn requests_per_minute_refuse_with_openai_headers() {
    // 120/min with the default half-second burst: one request at once.
    let host = ratelimit_host(None, serde_json::json!({ "requests_per_minute": 120 }));
    let admitted = ask(&host, 5).await.unwrap();
    let mut headers = HeaderMap::new();
    admitted.limits.as_ref().unwrap().apply_response_headers(&mut headers);
    assert_eq!(headers.get("x-ratelimit-limit-requests").unwrap(), "120");
    assert_eq!(headers.get("x-ratelimit-remaining-requests").unwrap(), "0");
    let (status, headers, body) = ask(&host, 5).await.unwrap_err();
    assert_eq!(status, 429);
    assert_eq!(body["error"]["type"], "rate_limit_exceeded");
    assert_eq!(header(&headers, "retry-after"), Some("1"));
    assert_eq!(header(&headers, "x-ratelimit-limit-requests"), Some("120"));
    assert_eq!(header(&headers, "x-ratelimit-remaining-requests"), Some("0"));
    assert!(header(&headers, "x-ratelimit-reset-requests").unwrap().ends_with("ms"));
}

/// `on-request` calls of the built-in so far.
fn plugin_calls(registry: &prometheus::Registry) -> f64 {
    registry
        .gather()
        .iter()
        .filter(|f| f.name() == "sluice_plugin_calls_total")
        .flat_map(|f| f.get_metric())
        .filter(|m| m.get_label().iter().any(|l| l.name() == "hook" && l.value() == "on-request"))
        .map(|m| m.get_counter().get_value())
        .sum()
}

#[tokio::test]
async fn standing_limits_are_taken_by_the_host_until_the_settings_change_or_they_refuse() {
    let registry = prometheus::Registry::new();
    let host =
        ratelimit_host_in(&registry, None, serde_json::json!({ "requests_per_minute": 360, "max_concurrency": 2 }));
    let first = ask(&host, 5).await.unwrap();
    assert_eq!(plugin_calls(&registry), 1.0);
    // Same tenant, key and model, same settings: the host takes the plugin's limits itself.
    let second = ask(&host, 5).await.unwrap();
    assert_eq!(plugin_calls(&registry), 1.0, "no plugin call");
    let mut headers = HeaderMap::new();
    second.limits.as_ref().unwrap().apply_response_headers(&mut headers);
    assert_eq!(headers.get("x-ratelimit-limit-requests").unwrap(), "360");
    let remaining = registry
        .gather()
        .into_iter()
        .filter(|f| f.name() == "sluice_limits_remaining")
        .flat_map(|f| f.get_metric().to_vec())
        .find(|m| m.get_label().iter().any(|l| l.name() == "kind" && l.value() == "requests"))
        .map(|m| m.get_gauge().get_value());
    assert_eq!(remaining, headers.get("x-ratelimit-remaining-requests").unwrap().to_str().unwrap().parse().ok());
    // Both slots are held: the host's attempt refuses, and the plugin answers.
    let (status, headers, body) = ask(&host, 5).await.unwrap_err();
    assert_eq!((status, body["error"]["code"].as_str()), (429, Some("concurrency_limit_exceeded")));
    assert_eq!(header(&headers, "x-ratelimit-limit-requests"), Some("360"));
    assert_eq!(plugin_calls(&registry), 2.0);
    end(&first, RequestEnd::NoWork);
    end(&second, RequestEnd::NoWork);
    drop((first, second));
    // New settings: the plugin decides again, under the new limit.
    let tenant = serde_json::json!({ "name": "acme", "limits": { "max_concurrency": 1 } }).to_string();
    host.services().set_tenants(HashMap::from([("acme".to_owned(), tenant)]));
    let only = ask(&host, 5).await.unwrap();
    assert_eq!(plugin_calls(&registry), 3.0);
    let (status, _, _) = ask(&host, 5).await.unwrap_err();
    assert_eq!(status, 429, "the new limit holds on the host's path too");
    drop(only);
}

#[tokio::test]
async fn concurrency_slots_come_back_however_the_request_ends() {
    let host = ratelimit_host(None, serde_json::json!({ "max_concurrency": 1 }));
    let first = ask(&host, 5).await.unwrap();
    let (status, _, body) = ask(&host, 5).await.unwrap_err();
    assert_eq!((status, body["error"]["code"].as_str()), (429, Some("concurrency_limit_exceeded")));
    // Ended by the gateway with the request (an upstream error: nothing used).
    end(&first, RequestEnd::NoWork);
    drop(first);
    let second = ask(&host, 5).await.unwrap();
    // Never settled (a cancelled request whose plugin call never came): dropping the request
    // frees the slot.
    drop(second);
    ask(&host, 5).await.unwrap();
}

#[tokio::test]
async fn tokens_are_reserved_then_settled_to_usage() {
    // 1,000 tokens per minute; each request reserves 10 (prompt estimate) + max_tokens.
    let host = ratelimit_host(None, serde_json::json!({ "tokens_per_minute": 1000 }));
    let big = ask(&host, 890).await.unwrap();
    let (status, _, _) = ask(&host, 890).await.unwrap_err();
    assert_eq!(status, 429, "900 of 1,000 reserved");
    // It used 40: 860 come back.
    end(&big, used(10, 30));
    drop(big);
    ask(&host, 890).await.unwrap();
    // More than the whole minute can never pass: a distinct message, no Retry-After.
    let (status, headers, body) = ask(&host, 5_000).await.unwrap_err();
    assert_eq!(status, 429);
    assert_eq!(body["error"]["code"], "request_too_large");
    assert_eq!(header(&headers, "retry-after"), None);
}

#[tokio::test]
async fn an_exhausted_monthly_budget_is_insufficient_quota() {
    let host = ratelimit_host(None, serde_json::json!({ "monthly_token_budget": 100 }));
    let v = ask(&host, 50).await.unwrap();
    end(&v, used(10, 85));
    drop(v);
    let (status, headers, body) = ask(&host, 50).await.unwrap_err();
    assert_eq!(status, 429);
    assert_eq!(body["error"]["type"], "insufficient_quota");
    assert!(header(&headers, "retry-after").is_some());
}

#[tokio::test]
async fn a_tenant_without_limits_is_not_limited() {
    let registry = prometheus::Registry::new();
    let host = ratelimit_host_in(&registry, None, serde_json::json!({}));
    for _ in 0..100 {
        let admitted = ask(&host, 5).await.unwrap();
        let mut headers = HeaderMap::new();
        admitted.limits.as_ref().unwrap().apply_response_headers(&mut headers);
        assert!(headers.is_empty(), "no limit, no x-ratelimit headers");
    }
    // The plugin promised nothing for this tenant, key and model: the host stopped calling it.
    assert_eq!(plugin_calls(&registry), 1.0);
}

#[tokio::test]
async fn two_replicas_share_one_limit_through_redis() {
    let settings = shared("two", Fallback::Local { replicas: 2 });
    // 600/min, burst 5: two hosts with one Redis admit 5 at once between them, not 10.
    let a = ratelimit_host(Some(settings.clone()), serde_json::json!({ "requests_per_minute": 600 }));
    let b = ratelimit_host(Some(settings), serde_json::json!({ "requests_per_minute": 600 }));
    let mut admitted = 0;
    for i in 0..10 {
        let host = if i % 2 == 0 { &a } else { &b };
        if ask(host, 5).await.is_ok() {
            admitted += 1;
        }
    }
    assert!(!a.services().limits.shared().unwrap().degraded(), "Redis answered");
    // Between 5 and 6: a 100 ms emission interval may pass while the ten run.
    assert!((5..=6).contains(&admitted), "{admitted} admitted");
}

#[tokio::test]
async fn redis_slots_are_global_and_given_back() {
    let settings = shared("slots", Fallback::Closed);
    let a = ratelimit_host(Some(settings.clone()), serde_json::json!({ "max_concurrency": 1 }));
    let b = ratelimit_host(Some(settings), serde_json::json!({ "max_concurrency": 1 }));
    let held = ask(&a, 5).await.unwrap();
    assert_eq!(ask(&b, 5).await.unwrap_err().0, 429);
    end(&held, RequestEnd::Unknown);
    drop(held);
    // The slot's return went to Redis from a task; wait for it (bounded).
    let mut ok = false;
    for _ in 0..100 {
        if ask(&b, 5).await.is_ok() {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(ok, "the slot came back");
}

#[tokio::test]
async fn unreachable_redis_falls_back_or_fails_closed() {
    // Nothing listens on port 1.
    let mut local = shared("down", Fallback::Local { replicas: 2 });
    local.url = "redis://127.0.0.1:1".to_owned();
    let host = ratelimit_host(Some(local), serde_json::json!({ "max_concurrency": 4 }));
    // Each replica's share of 4 is 2.
    let _a = ask(&host, 5).await.unwrap();
    let _b = ask(&host, 5).await.unwrap();
    assert_eq!(ask(&host, 5).await.unwrap_err().0, 429);
    assert!(host.services().limits.shared().unwrap().degraded());

    let mut closed = shared("down-closed", Fallback::Closed);
    closed.url = "redis://127.0.0.1:1".to_owned();
    let host = ratelimit_host(Some(closed), serde_json::json!({ "max_concurrency": 4 }));
    let (status, headers, body) = ask(&host, 5).await.unwrap_err();
    assert_eq!(status, 503);
    assert_eq!(header(&headers, "retry-after"), Some("1"));
    assert_eq!(body["error"]["code"], "rate_limits_unavailable");
}

/// 50 requests at once against tokens per minute: exactly what the limit allows passes, in
/// process and through Redis (peers have shipped several times the limit on this).
async fn burst_of_fifty(host: PluginHost) -> usize {
    let host = Arc::new(host);
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let host = Arc::clone(&host);
            // Each reserves its 10-token prompt estimate and max_tokens 90: 100 tokens.
            tokio::spawn(async move { ask(&host, 90).await.map(|v| v.limits).is_ok() })
        })
        .collect();
    let mut admitted = 0;
    for t in tasks {
        admitted += usize::from(t.await.unwrap());
    }
    admitted
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_fifty_never_overshoots_tokens_per_minute() {
    let limits = serde_json::json!({ "tokens_per_minute": 1000 });
    // 1,000 tokens: ten reservations of 100; the bucket refills 17 tokens a second, far less
    // than one more reservation while the burst runs.
    assert_eq!(burst_of_fifty(ratelimit_host(None, limits.clone())).await, 10);
    let redis = shared("burst", Fallback::Closed);
    assert_eq!(burst_of_fifty(ratelimit_host(Some(redis), limits)).await, 10);
}

#[test]
fn the_builtin_is_bound_unless_switched_off_or_replaced() {
    use sluice_plugin_host::Builtins;
    let names = |builtins: Builtins, specs: Vec<BindingSpec>| -> Vec<String> {
        let host = PluginHost::with_bindings(settings(), &prometheus::Registry::new(), specs, builtins).unwrap();
        host.chain().bindings().iter().map(|b| format!("{}:{:?}", b.name, b.order)).collect()
    };
    // It runs only for tenants the gateway marked as limited: others cost no call.
    let host = ratelimit_host(None, serde_json::json!({ "requests_per_minute": 1 }));
    let chain = host.chain();
    let builtin = chain.get("ratelimit").unwrap();
    assert!(builtin.runs_for("acme", "m"));
    assert!(!builtin.runs_for("unlimited", "m"));
    let default = names(Builtins::default(), Vec::new());
    assert!(default.contains(&format!("ratelimit:{}", sluice_plugin_host::RATELIMIT_ORDER)), "{default:?}");
    let off = names(Builtins { ratelimit: false, ..Builtins::default() }, Vec::new());
    assert!(!off.iter().any(|n| n.starts_with("ratelimit:")), "{off:?}");
    // A binding named `ratelimit` replaces the built-in (here: the test guest, at order 7).
    let mine = BindingSpec { order: 7, ..guest("ratelimit", "continue", "mine") };
    let replaced = names(Builtins::default(), vec![mine]);
    assert_eq!(replaced.iter().filter(|n| n.starts_with("ratelimit:")).collect::<Vec<_>>(), ["ratelimit:7"]);
}
