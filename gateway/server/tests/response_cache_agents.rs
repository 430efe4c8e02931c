//! The response cache for the APIs agents speak, end to end: the built-in `cache` plugin bound
//! as operators bind it, in front of simulated workers speaking OpenAI's Responses API and
//! Anthropic's Messages API (and a chat-only pool, which Messages reaches through the
//! translation). Each API's answer is stored from a whole body or a stream and told again, in
//! either form, in its own dialect; Responses requests that lean on a worker's stored state are
//! never cached.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests fail loudly")]

use std::time::Duration;

use http::{HeaderMap, header};
use serde_json::{Value, json};
use sluice_sim::{OutputLength, SimConfig};
use sluice_test_support::{
    GatewayOptions, MODEL, Reply, SseStream, TestGateway, TimedEvent, read_whole, wait_until_async,
};

const BIND: &str = "[[plugins]]\nname = \"cache\"\nsource = \"builtin:cache\"\n";
const ALL_APIS: &str = r#"apis = ["chat", "completions", "embeddings", "responses", "messages"]"#;
const OTHER_KEY: &str = "sk-globex-0123456789";

/// Workers that plan 20 output tokens; a pool speaking `pool_toml`'s APIs; a second tenant.
fn options(pool_toml: &str) -> GatewayOptions {
    GatewayOptions {
        sim: SimConfig { output: OutputLength { min: 20, max: 20, fixed: Some(20) }, ..SimConfig::default() },
        pool_toml: pool_toml.to_owned(),
        extra_toml: format!("{BIND}\n[[tenants]]\nname = \"globex\"\napi_keys = [\"{OTHER_KEY}\"]\n"),
        ..GatewayOptions::default()
    }
}

/// A deterministic Responses request that asks the worker to store nothing.
fn responses_body(prompt: &str, extra: Value) -> Value {
    let mut body = json!({"model": MODEL, "instructions": "be brief", "temperature": 0, "store": false,
        "max_output_tokens": 8, "input": [{"role": "user", "content": [{"type": "input_text", "text": prompt}]}]});
    body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    body
}

/// A deterministic Messages request (Messages has no seed: temperature 0).
fn messages_body(prompt: &str, extra: Value) -> Value {
    let mut body = json!({"model": MODEL, "max_tokens": 8, "temperature": 0, "system": "be brief",
        "messages": [{"role": "user", "content": [{"type": "text", "text": prompt}]}]});
    body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    body
}

fn cache_header(headers: &HeaderMap) -> &str {
    headers.get("x-sluice-cache").and_then(|v| v.to_str().ok()).unwrap_or("(none)")
}

fn served(gw: &TestGateway) -> u64 {
    gw.sims.iter().map(|s| s.stats().requests_received).sum()
}

async fn whole(gw: &TestGateway, path: &str, key: &str, body: &Value) -> Reply {
    read_whole(gw.client.post_json(&gw.url(path), Some(key), body).await).await
}

/// A streamed answer's headers and events.
async fn stream(gw: &TestGateway, path: &str, body: &Value) -> (HeaderMap, Vec<TimedEvent>) {
    let response = gw.client.post_json(&gw.url(path), Some(gw.key), body).await;
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    assert_eq!(headers.get(header::CONTENT_TYPE).unwrap(), "text/event-stream");
    let mut events = SseStream::new(response);
    let events = events.rest().await;
    (headers, events)
}

/// Each event's name, checked against its data's `type`.
fn names(events: &[TimedEvent]) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            let name = e.event.clone().unwrap_or_default();
            assert_eq!(e.json().unwrap()["type"], name.as_str(), "the event's name is its type");
            name
        })
        .collect()
}

fn data_of(events: &[TimedEvent], name: &str) -> Vec<Value> {
    events.iter().filter(|e| e.event.as_deref() == Some(name)).map(|e| e.json().unwrap()).collect()
}

fn responses_deltas(events: &[TimedEvent]) -> String {
    data_of(events, "response.output_text.delta").iter().map(|d| d["delta"].as_str().unwrap().to_owned()).collect()
}

fn messages_deltas(events: &[TimedEvent]) -> String {
    data_of(events, "content_block_delta").iter().map(|d| d["delta"]["text"].as_str().unwrap().to_owned()).collect()
}

/// Waits until `n` answers were stored (a stream's is stored once it ended).
async fn stored(gw: &TestGateway, n: f64) {
    let done = wait_until_async(Duration::from_secs(5), || async {
        gw.metric("sluice_cache_stores_total", &[("result", "stored")]).await >= n
    })
    .await;
    assert!(done, "{n} answers stored");
}

const RESPONSES_EVENTS: [&str; 8] = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.incomplete",
];

/// The events of a Responses stream apart from its deltas.
fn responses_frame(events: &[TimedEvent]) -> Vec<String> {
    names(events).into_iter().filter(|n| n != "response.output_text.delta").collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_are_answered_from_the_cache_whole_and_streamed() {
    let gw = TestGateway::start(1, options(ALL_APIS)).await;
    let body = responses_body("what is a sluice?", json!({}));
    let first = whole(&gw, "/v1/responses", gw.key, &body).await;
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(cache_header(&first.headers), "miss");
    let second = whole(&gw, "/v1/responses", gw.key, &body).await;
    assert_eq!(cache_header(&second.headers), "hit", "{}", second.text());
    assert!(second.headers.contains_key("age"));
    assert_eq!(second.headers.get("x-sluice-cache-key"), first.headers.get("x-sluice-cache-key"));
    assert_eq!(served(&gw), 1, "a hit reaches no worker");
    let (a, b) = (first.json(), second.json());
    assert_eq!(b["object"], "response");
    assert_ne!(a["id"], b["id"], "a response id of its own");
    assert_eq!(b["id"], format!("resp_{}", second.headers["x-request-id"].to_str().unwrap()));
    assert_eq!((&a["status"], &a["output"][0]["content"]), (&b["status"], &b["output"][0]["content"]));
    assert_eq!(b["status"], "incomplete", "cut by max_output_tokens, as the original");
    assert_eq!(a["incomplete_details"], b["incomplete_details"]);
    assert_eq!(a["usage"]["input_tokens"], b["usage"]["input_tokens"]);
    assert_eq!(a["usage"]["output_tokens"], b["usage"]["output_tokens"]);
    assert_eq!(b["usage"]["input_tokens_details"]["cached_tokens"], b["usage"]["input_tokens"]);

    // The whole answer, told again as the stream the SDKs read.
    let (headers, events) =
        stream(&gw, "/v1/responses", &responses_body("what is a sluice?", json!({"stream": true}))).await;
    assert_eq!(cache_header(&headers), "hit");
    assert_eq!(responses_frame(&events), RESPONSES_EVENTS);
    assert_eq!(responses_deltas(&events), a["output"][0]["content"][0]["text"].as_str().unwrap());
    let done = &data_of(&events, "response.incomplete")[0]["response"];
    assert_eq!(done["usage"]["input_tokens_details"]["cached_tokens"], a["usage"]["input_tokens"]);
    assert_eq!(served(&gw), 1);

    // A streamed miss, stored as it streamed, told again as a stream and whole.
    let streamed = responses_body("tell me about rivers", json!({"stream": true}));
    let (headers, original) = stream(&gw, "/v1/responses", &streamed).await;
    assert_eq!(cache_header(&headers), "miss");
    stored(&gw, 2.0).await;
    let (headers, replay) = stream(&gw, "/v1/responses", &streamed).await;
    assert_eq!(cache_header(&headers), "hit");
    assert_eq!(responses_frame(&replay), RESPONSES_EVENTS);
    assert_eq!(responses_deltas(&replay), responses_deltas(&original));
    assert_eq!(
        data_of(&replay, "response.output_text.delta").len(),
        data_of(&original, "response.output_text.delta").len()
    );
    let w = whole(&gw, "/v1/responses", gw.key, &responses_body("tell me about rivers", json!({}))).await;
    assert_eq!(cache_header(&w.headers), "hit");
    assert_eq!(w.json()["output"][0]["content"][0]["text"], responses_deltas(&original).as_str());
    assert_eq!(served(&gw), 2);

    // Usage: the hits' prompts count as cached, and no worker time.
    let hits = gw.metric("sluice_cache_requests_total", &[("tenant", "acme"), ("result", "hit")]).await;
    assert_eq!(hits, 4.0);
    assert!(gw.metric("sluice_cache_saved_tokens_total", &[("kind", "prompt")]).await > 0.0);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_that_lean_on_stored_state_are_never_cached() {
    let gw = TestGateway::start(1, options(ALL_APIS)).await;
    let stored_by_default = responses_body("remember me", json!({}));
    let stored_by_default = {
        let mut b = stored_by_default;
        b.as_object_mut().unwrap().remove("store");
        b
    };
    for body in [
        stored_by_default,
        responses_body("remember me", json!({"store": true})),
        responses_body("and then?", json!({"previous_response_id": "resp_earlier"})),
    ] {
        for _ in 0..2 {
            let reply = whole(&gw, "/v1/responses", gw.key, &body).await;
            assert_eq!(cache_header(&reply.headers), "bypass", "{body}: {}", reply.text());
        }
    }
    assert_eq!(gw.metric("sluice_cache_bypasses_total", &[("reason", "stored-state")]).await, 6.0);
    gw.shutdown().await;
}

const MESSAGES_EVENTS: [&str; 6] =
    ["message_start", "content_block_start", "ping", "content_block_stop", "message_delta", "message_stop"];

fn messages_frame(events: &[TimedEvent]) -> Vec<String> {
    names(events).into_iter().filter(|n| n != "content_block_delta").collect()
}

/// Miss then hits for Messages, whole and streamed, against `pool_toml`'s pool.
async fn messages_are_answered_from_the_cache(pool_toml: &str) {
    let gw = TestGateway::start(1, options(pool_toml)).await;
    let body = messages_body("what is a sluice?", json!({}));
    let first = whole(&gw, "/v1/messages", gw.key, &body).await;
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(cache_header(&first.headers), "miss");
    let second = whole(&gw, "/v1/messages", gw.key, &body).await;
    assert_eq!(cache_header(&second.headers), "hit", "{}", second.text());
    assert_eq!(served(&gw), 1);
    let (a, b) = (first.json(), second.json());
    assert_eq!(b["type"], "message");
    assert_eq!(b["id"], format!("msg_{}", second.headers["x-request-id"].to_str().unwrap()));
    assert_eq!((&a["content"], &a["stop_reason"], &a["model"]), (&b["content"], &b["stop_reason"], &b["model"]));
    assert_eq!(b["stop_reason"], "max_tokens");
    let prompt = |v: &Value| {
        v["usage"]["input_tokens"].as_u64().unwrap() + v["usage"]["cache_read_input_tokens"].as_u64().unwrap_or(0)
    };
    assert_eq!(prompt(&a), prompt(&b));
    assert_eq!(
        (b["usage"]["input_tokens"].as_u64(), b["usage"]["cache_read_input_tokens"].as_u64()),
        (Some(0), Some(prompt(&a)))
    );
    assert_eq!(a["usage"]["output_tokens"], b["usage"]["output_tokens"]);

    let (headers, events) =
        stream(&gw, "/v1/messages", &messages_body("what is a sluice?", json!({"stream": true}))).await;
    assert_eq!(cache_header(&headers), "hit");
    assert_eq!(messages_frame(&events), MESSAGES_EVENTS);
    assert_eq!(messages_deltas(&events), a["content"][0]["text"].as_str().unwrap());
    let delta = &data_of(&events, "message_delta")[0];
    assert_eq!(delta["delta"]["stop_reason"], "max_tokens");
    assert_eq!(delta["usage"]["cache_read_input_tokens"].as_u64(), Some(prompt(&a)));
    assert_eq!(served(&gw), 1);

    let streamed = messages_body("tell me about rivers", json!({"stream": true}));
    let (headers, original) = stream(&gw, "/v1/messages", &streamed).await;
    assert_eq!(cache_header(&headers), "miss");
    stored(&gw, 2.0).await;
    let (headers, replay) = stream(&gw, "/v1/messages", &streamed).await;
    assert_eq!(cache_header(&headers), "hit");
    assert_eq!(messages_frame(&replay), MESSAGES_EVENTS);
    assert_eq!(messages_deltas(&replay), messages_deltas(&original));
    assert_eq!(data_of(&replay, "content_block_delta").len(), data_of(&original, "content_block_delta").len());
    let w = whole(&gw, "/v1/messages", gw.key, &messages_body("tell me about rivers", json!({}))).await;
    assert_eq!(cache_header(&w.headers), "hit");
    assert_eq!(w.json()["content"][0]["text"], messages_deltas(&original).as_str());
    assert_eq!(served(&gw), 2);

    // Another tenant's identical request reaches none of these entries.
    let other = whole(&gw, "/v1/messages", OTHER_KEY, &body).await;
    assert_eq!(cache_header(&other.headers), "miss");
    assert_eq!(served(&gw), 3);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_are_answered_from_the_cache_whole_and_streamed() {
    messages_are_answered_from_the_cache(ALL_APIS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_through_chat_are_answered_from_the_cache_whole_and_streamed() {
    // The default pool speaks chat completions only: the answers were translated.
    messages_are_answered_from_the_cache("").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_is_only_ever_told_again_in_its_own_api() {
    let gw = TestGateway::start(1, options(ALL_APIS)).await;
    // The same conversation asked of chat and then of Messages: two entries, two workers' answers.
    let chat = json!({"model": MODEL, "max_tokens": 8, "temperature": 0,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "same words"}]}]});
    let reply = whole(&gw, "/v1/chat/completions", gw.key, &chat).await;
    assert_eq!(cache_header(&reply.headers), "miss");
    let reply = whole(&gw, "/v1/messages", gw.key, &chat).await;
    assert_eq!(cache_header(&reply.headers), "miss", "{}", reply.text());
    assert_eq!(reply.json()["type"], "message");
    let reply = whole(&gw, "/v1/messages", gw.key, &chat).await;
    assert_eq!(cache_header(&reply.headers), "hit");
    assert_eq!(reply.json()["type"], "message");
    assert_ne!(
        reply.headers.get("x-sluice-cache-key"),
        whole(&gw, "/v1/chat/completions", gw.key, &chat).await.headers.get("x-sluice-cache-key")
    );
    assert_eq!(served(&gw), 2);
    gw.shutdown().await;
}
