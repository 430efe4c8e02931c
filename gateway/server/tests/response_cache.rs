//! The response cache end to end: the built-in `cache` plugin bound in the config file exactly
//! as operators bind it, in front of simulated workers, with the in-process and Redis backends.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests fail loudly")]

use std::time::Duration;

use http::{HeaderValue, Method};
use serde_json::{Value, json};
use sluice_test_support::{
    GatewayOptions, Reply, TENANT_KEY, TestGateway, TimedEvent, chat_body, concat_content, full_body, read_whole,
    request, wait_until_async,
};

const BIND: &str = "[[plugins]]\nname = \"cache\"\nsource = \"builtin:cache\"\n";
const OTHER_KEY: &str = "sk-globex-0123456789";

fn options(extra: &str) -> GatewayOptions {
    let toml = format!("{BIND}{extra}\n[[tenants]]\nname = \"globex\"\napi_keys = [\"{OTHER_KEY}\"]\n");
    GatewayOptions { extra_toml: toml, ..GatewayOptions::default() }
}

fn deterministic(prompt: &str) -> Value {
    chat_body(prompt, json!({"temperature": 0, "max_tokens": 12}))
}

fn cache_header(headers: &http::HeaderMap) -> &str {
    headers.get("x-sluice-cache").and_then(|v| v.to_str().ok()).unwrap_or("(none)")
}

fn served(gw: &TestGateway) -> u64 {
    gw.sims.iter().map(|s| s.stats().requests_received).sum()
}

async fn send(gw: &TestGateway, key: &str, body: &Value, headers: &[(&str, &str)]) -> Reply {
    let mut req = request(Method::POST, &gw.url("/v1/chat/completions"), Some(key), full_body(body.to_string()));
    req.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    for (name, value) in headers {
        req.headers_mut()
            .insert(http::HeaderName::from_bytes(name.as_bytes()).unwrap(), HeaderValue::from_str(value).unwrap());
    }
    read_whole(gw.client.send(req).await).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deterministic_request_is_answered_from_the_cache_the_second_time() {
    let gw = TestGateway::start(1, options("")).await;
    let first = gw.chat(&deterministic("what is a sluice?")).await;
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(cache_header(&first.headers), "miss");
    assert_eq!(served(&gw), 1);

    let second = gw.chat(&deterministic("what is a sluice?")).await;
    assert_eq!(second.status, 200, "{}", second.text());
    assert_eq!(cache_header(&second.headers), "hit");
    assert!(second.headers.contains_key("age"));
    assert_eq!(second.headers.get("x-sluice-cache-key"), first.headers.get("x-sluice-cache-key"));
    assert_eq!(served(&gw), 1, "a hit reaches no worker");
    let (a, b) = (first.json(), second.json());
    assert_eq!(a["choices"][0]["message"], b["choices"][0]["message"]);
    assert_eq!(a["choices"][0]["finish_reason"], b["choices"][0]["finish_reason"]);
    assert_eq!(a["usage"]["prompt_tokens"], b["usage"]["prompt_tokens"]);
    assert_eq!(b["usage"]["prompt_tokens_details"]["cached_tokens"], b["usage"]["prompt_tokens"]);
    assert_eq!(a["usage"]["completion_tokens"], b["usage"]["completion_tokens"]);

    let hits = gw.metric("sluice_cache_requests_total", &[("tenant", "acme"), ("result", "hit")]).await;
    assert_eq!(hits, 1.0);
    assert!(gw.metric("sluice_cache_saved_tokens_total", &[("kind", "completion")]).await > 0.0);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_answer_is_replayed_as_a_stream_and_as_a_whole_body() {
    let gw = TestGateway::start(1, options("")).await;
    let body = chat_body(
        "tell me about rivers",
        json!({"temperature": 0, "max_tokens": 16, "stream": true,
        "stream_options": {"include_usage": true}}),
    );
    let mut original = gw.chat_stream(&body).await;
    let original = original.rest().await;
    let text = concat_content(&original);
    assert!(!text.is_empty());
    // The store follows the stream's end; wait for the entry rather than for luck.
    assert!(
        wait_until_async(Duration::from_secs(5), || async {
            gw.metric("sluice_cache_stores_total", &[("result", "stored")]).await >= 1.0
        })
        .await
    );

    let mut replay = gw.chat_stream(&body).await;
    let replay = replay.rest().await;
    assert_eq!(concat_content(&replay), text, "content-equal to the original");
    assert_eq!(served(&gw), 1);
    let finish = |events: &[TimedEvent]| {
        events
            .iter()
            .filter_map(|e| e.json())
            .find_map(|j| j["choices"][0]["finish_reason"].as_str().map(str::to_owned))
    };
    assert_eq!(finish(&original), finish(&replay));
    let role = |events: &[TimedEvent]| {
        events
            .iter()
            .filter_map(|e| e.json())
            .find_map(|j| j["choices"][0]["delta"]["role"].as_str().map(str::to_owned))
    };
    assert_eq!(role(&replay).as_deref(), Some("assistant"));
    assert_eq!(role(&original), role(&replay));
    let usage = |events: &[TimedEvent]| {
        events.iter().filter_map(|e| e.json()).find(|j| j["usage"].is_object()).map(|j| j["usage"].clone()).unwrap()
    };
    assert_eq!(usage(&original)["completion_tokens"], usage(&replay)["completion_tokens"]);
    assert_eq!(usage(&replay)["prompt_tokens_details"]["cached_tokens"], usage(&replay)["prompt_tokens"]);
    assert!(replay.last().unwrap().is_done());

    // A whole-body request is answered from the streamed entry.
    let whole = gw.chat(&chat_body("tell me about rivers", json!({"temperature": 0, "max_tokens": 16}))).await;
    assert_eq!(cache_header(&whole.headers), "hit");
    assert_eq!(whole.json()["choices"][0]["message"]["content"], text.as_str());
    assert_eq!(served(&gw), 1);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_answer_is_replayed_as_a_stream() {
    let gw = TestGateway::start(1, options("")).await;
    let whole = gw.chat(&deterministic("whole first")).await;
    assert_eq!(cache_header(&whole.headers), "miss");
    let text = whole.json()["choices"][0]["message"]["content"].as_str().unwrap().to_owned();
    let mut stream =
        gw.chat_stream(&chat_body("whole first", json!({"temperature": 0, "max_tokens": 12, "stream": true}))).await;
    let events = stream.rest().await;
    assert_eq!(concat_content(&events), text);
    assert!(!events.iter().any(|e| e.has_usage()), "no usage chunk unless asked");
    assert_eq!(served(&gw), 1);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_never_share_entries() {
    let gw = TestGateway::start(1, options("")).await;
    let body = deterministic("the same prompt");
    assert_eq!(cache_header(&send(&gw, TENANT_KEY, &body, &[]).await.headers), "miss");
    assert_eq!(cache_header(&send(&gw, TENANT_KEY, &body, &[]).await.headers), "hit");
    let other = send(&gw, OTHER_KEY, &body, &[]).await;
    assert_eq!(other.status, 200, "{}", other.text());
    assert_eq!(cache_header(&other.headers), "miss", "another tenant's entry is never served");
    assert_ne!(other.headers.get("x-sluice-cache-key"), None);
    assert_eq!(served(&gw), 2);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_that_are_not_deterministic_or_opt_out_bypass() {
    let gw = TestGateway::start(1, options("")).await;
    for body in [
        chat_body("sampled", json!({"temperature": 0.7})),
        chat_body("no temperature", json!({})),
        chat_body("tools", json!({"temperature": 0, "tools": [{"type": "function", "function": {"name": "f"}}]})),
        chat_body("choices", json!({"temperature": 0, "n": 2})),
    ] {
        for _ in 0..2 {
            let reply = gw.chat(&body).await;
            assert_eq!(reply.status, 200, "{}", reply.text());
            assert_eq!(cache_header(&reply.headers), "bypass", "{body}");
        }
    }
    let seeded = chat_body("seeded", json!({"temperature": 0.7, "seed": 7}));
    gw.chat(&seeded).await;
    assert_eq!(cache_header(&gw.chat(&seeded).await.headers), "hit", "a fixed seed is deterministic");

    let body = deterministic("opt out");
    assert_eq!(cache_header(&send(&gw, TENANT_KEY, &body, &[("x-sluice-cache", "no-store")]).await.headers), "bypass");
    assert_eq!(cache_header(&send(&gw, TENANT_KEY, &body, &[("cache-control", "no-store")]).await.headers), "bypass");
    // no-cache: not answered from the cache, but the fresh answer is kept.
    assert_eq!(cache_header(&send(&gw, TENANT_KEY, &body, &[("x-sluice-cache", "no-cache")]).await.headers), "miss");
    assert_eq!(cache_header(&send(&gw, TENANT_KEY, &body, &[("x-sluice-cache", "no-cache")]).await.headers), "miss");
    assert_eq!(cache_header(&send(&gw, TENANT_KEY, &body, &[]).await.headers), "hit");
    assert!(gw.metric("sluice_cache_bypasses_total", &[("reason", "not-deterministic")]).await >= 4.0);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_expire_after_their_ttl() {
    let gw = TestGateway::start(1, options("[plugins.config]\nttl_seconds = 1\n")).await;
    let body = deterministic("short lived");
    assert_eq!(cache_header(&gw.chat(&body).await.headers), "miss");
    assert_eq!(cache_header(&gw.chat(&body).await.headers), "hit");
    // Past the TTL (with margin): an expired entry is never served.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(cache_header(&gw.chat(&body).await.headers), "miss");
    gw.shutdown().await;
}

/// A Redis key prefix of this test's own, so that parallel tests never share entries.
fn redis_options(prefix: &str, url: &str) -> GatewayOptions {
    options(&format!("\n[redis]\nurl = \"{url}\"\nkey_prefix = \"{prefix}\"\ntimeout = \"200ms\"\n"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_entries_through_redis() {
    let prefix = format!("test-{}-{}:", std::process::id(), rand_suffix());
    let a = TestGateway::start(1, redis_options(&prefix, "redis://127.0.0.1:6379")).await;
    let b = TestGateway::start(1, redis_options(&prefix, "redis://127.0.0.1:6379")).await;
    let body = deterministic("shared across replicas");
    assert_eq!(cache_header(&a.chat(&body).await.headers), "miss");
    assert!(
        wait_until_async(Duration::from_secs(5), || async {
            a.metric("sluice_cache_stores_total", &[("result", "stored")]).await >= 1.0
        })
        .await
    );
    let reply = b.chat(&body).await;
    assert_eq!(cache_header(&reply.headers), "hit", "{}", reply.text());
    assert_eq!(served(&b), 0, "the other replica's answer was served");
    // And never another tenant's, through Redis too.
    assert_eq!(cache_header(&send(&b, OTHER_KEY, &body, &[]).await.headers), "miss");
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_down_the_cache_is_bypassed_and_requests_still_served() {
    // Nothing listens on port 1.
    let gw = TestGateway::start(1, redis_options("down:", "redis://127.0.0.1:1")).await;
    for _ in 0..2 {
        let reply = gw.chat(&deterministic("redis is away")).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(cache_header(&reply.headers), "bypass");
    }
    assert_eq!(served(&gw), 2);
    assert!(gw.metric("sluice_cache_bypasses_total", &[("reason", "unavailable")]).await >= 2.0);
    gw.shutdown().await;
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0);
    h.finish()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paraphrase_is_a_semantic_hit_and_a_near_miss_is_not() {
    // The simulator embeds with hashed character n-grams, so paraphrases are close.
    let semantic = format!(
        "[plugins.config]\nsemantic = {{ embedding_model = \"{}\", threshold = 0.88 }}\n",
        sluice_test_support::MODEL
    );
    let gw = TestGateway::start(1, options(&semantic)).await;
    let first = gw.chat(&deterministic("What is the capital of France?")).await;
    assert_eq!(cache_header(&first.headers), "miss", "{}", first.text());
    assert!(
        wait_until_async(Duration::from_secs(5), || async {
            gw.metric("sluice_cache_stores_total", &[("result", "stored")]).await >= 1.0
        })
        .await
    );
    let text = first.json()["choices"][0]["message"]["content"].clone();

    let paraphrase = gw.chat(&deterministic("what is the capital of france")).await;
    assert_eq!(cache_header(&paraphrase.headers), "semantic-hit", "{}", paraphrase.text());
    let similarity: f32 =
        paraphrase.headers.get("x-sluice-cache-similarity").unwrap().to_str().unwrap().parse().unwrap();
    assert!((0.88..=1.0).contains(&similarity), "{similarity}");
    assert_eq!(paraphrase.json()["choices"][0]["message"]["content"], text);

    // Close in n-grams, but another name: the guard refuses it.
    let near_miss = gw.chat(&deterministic("What is the capital of Germany?")).await;
    assert_eq!(cache_header(&near_miss.headers), "miss");
    // Another tenant's paraphrase never reaches the first tenant's entry.
    let other = send(&gw, OTHER_KEY, &deterministic("what is the capital of france"), &[]).await;
    assert_eq!(cache_header(&other.headers), "miss");
    assert_eq!(gw.metric("sluice_cache_requests_total", &[("result", "semantic-hit")]).await, 1.0);
    gw.shutdown().await;
}

async fn purge(gw: &TestGateway, body: Value) -> Reply {
    let mut req = request(
        Method::POST,
        &gw.admin_url("/admin/api/cache/purge"),
        Some(sluice_test_support::ADMIN_TOKEN),
        full_body(body.to_string()),
    );
    req.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    read_whole(gw.client.send(req).await).await
}

/// Stores the answers to `prompts` for `key`'s tenant and waits until the cache holds them.
async fn fill(gw: &TestGateway, key: &str, prompts: &[&str], stored_before: f64) -> Vec<String> {
    let mut keys = Vec::new();
    for prompt in prompts {
        let reply = send(gw, key, &deterministic(prompt), &[]).await;
        assert_eq!(cache_header(&reply.headers), "miss", "{}", reply.text());
        keys.push(reply.headers.get("x-sluice-cache-key").unwrap().to_str().unwrap().to_owned());
    }
    let want = stored_before + prompts.len() as f64;
    assert!(
        wait_until_async(Duration::from_secs(5), || async {
            gw.metric("sluice_cache_stores_total", &[("result", "stored")]).await >= want
        })
        .await
    );
    keys
}

async fn purges_remove_what_they_name(backend_toml: &str) {
    let (store, _dir) = sluice_test_support::fresh_sqlite().await;
    let opts = GatewayOptions { store: Some(sluice_test_support::TestStore(store)), ..options(backend_toml) };
    let gw = TestGateway::start(1, opts).await;
    let status = |reply: &Reply| cache_header(&reply.headers).to_owned();
    let ask = |key: &'static str, prompt: &'static str| {
        let gw = &gw;
        async move { status(&send(gw, key, &deterministic(prompt), &[]).await) }
    };
    let acme = fill(&gw, TENANT_KEY, &["purge one", "purge two"], 0.0).await;
    fill(&gw, OTHER_KEY, &["purge one"], 2.0).await;

    // A purge must name what it removes; an empty request never empties the cache.
    for body in [json!({}), json!({"all": true, "tenant": "acme"}), json!({"key_prefix": "not-hex"})] {
        let refused = purge(&gw, body.clone()).await;
        assert_eq!(refused.status, 422, "{body}: {}", refused.text());
        assert_eq!(refused.json()["error"]["code"], "invalid_value");
    }
    assert_eq!(ask(TENANT_KEY, "purge one").await, "hit");

    // One tenant's entry by key: the other tenant's entry for the same request stays.
    let prefix = &acme[0][..12];
    let reply = purge(&gw, json!({"tenant": "acme", "key_prefix": prefix.to_uppercase()})).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["purged"], 1);
    assert_eq!(ask(TENANT_KEY, "purge one").await, "miss");
    assert_eq!(ask(OTHER_KEY, "purge one").await, "hit");
    assert_eq!(ask(TENANT_KEY, "purge two").await, "hit");

    // A whole tenant.
    let reply = purge(&gw, json!({"tenant": "globex"})).await;
    assert_eq!(reply.json()["purged"], 1, "{}", reply.text());
    assert_eq!(ask(OTHER_KEY, "purge one").await, "miss");
    assert_eq!(ask(TENANT_KEY, "purge two").await, "hit");

    // A model, then everything.
    let reply = purge(&gw, json!({"model": sluice_test_support::MODEL})).await;
    assert!(reply.json()["purged"].as_u64().unwrap() >= 1, "{}", reply.text());
    assert_eq!(ask(TENANT_KEY, "purge two").await, "miss");
    let reply = purge(&gw, json!({"all": true})).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(gw.metric("sluice_cache_evictions_total", &[("cause", "purged")]).await >= 3.0);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purges_through_the_admin_api_remove_what_they_name_in_memory() {
    purges_remove_what_they_name("").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purges_through_the_admin_api_remove_what_they_name_in_redis() {
    let prefix = format!("purge-{}-{}:", std::process::id(), rand_suffix());
    purges_remove_what_they_name(&format!(
        "\n[redis]\nurl = \"redis://127.0.0.1:6379\"\nkey_prefix = \"{prefix}\"\ntimeout = \"500ms\"\n"
    ))
    .await;
}
