//! The APIs agents speak, through the whole gateway against simulated workers: OpenAI's
//! Responses API (`POST /v1/responses`) and Anthropic's Messages API (`POST /v1/messages`),
//! whole and streamed, with the usage the worker reported recorded exactly, each API's errors
//! in its own shape (401, 404, 400, 429 with its headers), Anthropic's `x-api-key`, Messages
//! translated to chat completions for a pool whose workers speak only those, a pool that
//! cannot serve an API refusing it clearly, and a pool made through the admin API speaking the
//! APIs it was given there.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests fail loudly")]

use std::time::Duration;

use http::{Method, header};
use serde_json::{Value, json};
use sluice_sim::{OutputLength, SimConfig};
use sluice_test_support::{
    ADMIN_TOKEN, GatewayOptions, MODEL, Reply, TENANT, TestGateway, TestStore, TimedEvent, fresh_sqlite, full_body,
    request, wait_until_async,
};

const ALL_APIS: &str = r#"apis = ["chat", "completions", "embeddings", "responses", "messages"]"#;
const LIMITED: &str = "limited";
const LIMITED_KEY: &str = "sk-limited-0123456789";

/// Workers that always plan 20 output tokens (a client limit below that cuts the answer).
fn options(pool_toml: &str) -> GatewayOptions {
    GatewayOptions {
        sim: SimConfig { output: OutputLength { min: 20, max: 20, fixed: Some(20) }, ..SimConfig::default() },
        pool_toml: pool_toml.to_owned(),
        extra_toml: format!(
            "[[tenants]]\nname = \"{LIMITED}\"\napi_keys = [\"{LIMITED_KEY}\"]\n\n[tenants.limits]\nrequests_per_minute = 1\n"
        ),
        ..GatewayOptions::default()
    }
}

fn responses_body(extra: Value) -> Value {
    let mut body = json!({"model": MODEL, "instructions": "be brief", "input": [
        {"role": "user", "content": [{"type": "input_text", "text": "what is a gateway?"}]}
    ]});
    body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    body
}

fn messages_body(extra: Value) -> Value {
    let mut body = json!({"model": MODEL, "max_tokens": 64, "system": "be brief", "messages": [
        {"role": "user", "content": [{"type": "text", "text": "what is a gateway?"}]}
    ]});
    body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    body
}

/// `POST /v1/messages` as Anthropic's SDKs send it: the key in `x-api-key`, the API version.
async fn anthropic_post(gw: &TestGateway, key: Option<&str>, body: &Value) -> Reply {
    let mut req = request(Method::POST, &gw.url("/v1/messages"), None, full_body(body.to_string()));
    req.headers_mut().insert("anthropic-version", "2023-06-01".parse().unwrap());
    if let Some(key) = key {
        req.headers_mut().insert("x-api-key", key.parse().unwrap());
    }
    gw.client.send_whole(req).await
}

async fn tokens(gw: &TestGateway, kind: &str) -> f64 {
    gw.metric("sluice_tokens_total", &[("tenant", TENANT), ("model", MODEL), ("type", kind)]).await
}

fn event_type(e: &TimedEvent) -> String {
    e.json().and_then(|v| v["type"].as_str().map(str::to_owned)).unwrap_or_default()
}

/// Asserts Anthropic's error shape and returns the error's type.
fn anthropic_error(reply: &Reply) -> String {
    let v = reply.json();
    assert_eq!(v["type"], "error", "{v}");
    assert!(v["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    v["error"]["type"].as_str().unwrap().to_owned()
}

/// The gateway recorded exactly the worker's usage (`prompt`, `completion` tokens), estimated
/// nothing, counted `ok` successful requests of `api` and timed one stream's first token.
async fn assert_recorded(gw: &TestGateway, prompt: f64, completion: f64, api: &str, ok: f64) {
    assert_eq!(tokens(gw, "prompt").await, prompt);
    assert_eq!(tokens(gw, "completion").await, completion);
    let text = gw.metrics_text().await;
    let value = |name: &str, labels: &[(&str, &str)]| sluice_test_support::metrics::value(&text, name, labels);
    assert_eq!(value("sluice_usage_estimated_requests_total", &[]), 0.0, "nothing estimated");
    assert_eq!(value("sluice_api_requests_total", &[("api", api), ("outcome", "ok")]), ok);
    let ttft = value("gen_ai_server_time_to_first_token_seconds_count", &[("tenant", TENANT), ("model", MODEL)]);
    assert_eq!(ttft, 1.0, "the stream's first token was timed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_whole_and_streamed_record_the_workers_usage() {
    let gw = TestGateway::start(1, options(ALL_APIS)).await;
    let url = gw.url("/v1/responses");

    let whole = gw.client.post_json_whole(&url, Some(gw.key), &responses_body(json!({"max_output_tokens": 6}))).await;
    assert_eq!(whole.status, 200, "{}", whole.text());
    let v = whole.json();
    assert_eq!(v["object"], "response");
    assert_eq!(v["status"], "incomplete", "the limit cut the answer: {v}");
    assert!(v["output"][0]["content"][0]["text"].as_str().is_some_and(|t| !t.is_empty()), "{v}");
    let (whole_in, whole_out) =
        (v["usage"]["input_tokens"].as_f64().unwrap(), v["usage"]["output_tokens"].as_f64().unwrap());
    assert_eq!(whole_out, 6.0);

    let mut stream = gw.client.post_stream(&url, Some(gw.key), &responses_body(json!({"stream": true}))).await;
    let events = stream.rest().await;
    assert!(!stream.broke, "the stream ended cleanly");
    let types: Vec<String> = events.iter().map(event_type).collect();
    assert_eq!(types.first().map(String::as_str), Some("response.created"), "{types:?}");
    assert_eq!(types.last().map(String::as_str), Some("response.completed"), "{types:?}");
    assert_eq!(types.iter().filter(|t| *t == "response.output_text.delta").count(), 20, "{types:?}");
    let done = events.last().unwrap().json().unwrap();
    let usage = &done["response"]["usage"];
    let (stream_in, stream_out) = (usage["input_tokens"].as_f64().unwrap(), usage["output_tokens"].as_f64().unwrap());
    assert_eq!(stream_out, 20.0);

    // Exactly what the worker reported, none of it estimated.
    assert_recorded(&gw, whole_in + stream_in, whole_out + stream_out, "responses", 2.0).await;
    let tpot = gw.metric("gen_ai_server_time_per_output_token_seconds_count", &[("tenant", TENANT), ("model", MODEL)]);
    assert_eq!(tpot.await, 1.0);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_whole_and_streamed_with_an_anthropic_key_record_the_workers_usage() {
    let gw = TestGateway::start(1, options(ALL_APIS)).await;

    let whole = anthropic_post(&gw, Some(gw.key), &messages_body(json!({"max_tokens": 5}))).await;
    assert_eq!(whole.status, 200, "{}", whole.text());
    let v = whole.json();
    assert_eq!((v["type"].as_str(), v["role"].as_str()), (Some("message"), Some("assistant")), "{v}");
    assert_eq!(v["stop_reason"], "max_tokens");
    assert!(v["content"][0]["text"].as_str().is_some_and(|t| !t.is_empty()));
    let whole_in =
        v["usage"]["input_tokens"].as_f64().unwrap() + v["usage"]["cache_read_input_tokens"].as_f64().unwrap();
    let whole_out = v["usage"]["output_tokens"].as_f64().unwrap();
    assert_eq!(whole_out, 5.0);

    // Streamed, with the key as a bearer token this time.
    let url = gw.url("/v1/messages");
    // The simulator generates exactly the `max_tokens` a request asks for (Messages requires one).
    let body = messages_body(json!({"stream": true, "max_tokens": 12}));
    let mut stream = gw.client.post_stream(&url, Some(gw.key), &body).await;
    let events = stream.rest().await;
    assert!(!stream.broke);
    let types: Vec<String> = events.iter().map(event_type).collect();
    assert_eq!(types.first().map(String::as_str), Some("message_start"), "{types:?}");
    assert_eq!(types.last().map(String::as_str), Some("message_stop"), "{types:?}");
    assert_eq!(types.iter().filter(|t| *t == "content_block_delta").count(), 12, "{types:?}");
    let start = events[0].json().unwrap();
    let stream_in = start["message"]["usage"]["input_tokens"].as_f64().unwrap();
    let delta = events.iter().find(|e| event_type(e) == "message_delta").unwrap().json().unwrap();
    let stream_out = delta["usage"]["output_tokens"].as_f64().unwrap();
    assert_eq!(stream_out, 12.0);

    assert_recorded(&gw, whole_in + stream_in, whole_out + stream_out, "messages", 2.0).await;
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_errors_are_in_anthropics_shape() {
    let gw = TestGateway::start(1, options(ALL_APIS)).await;
    let body = messages_body(json!({}));

    let missing = anthropic_post(&gw, None, &body).await;
    assert_eq!(missing.status, 401);
    assert_eq!(anthropic_error(&missing), "authentication_error");
    let wrong = anthropic_post(&gw, Some("sk-wrong-0123456789"), &body).await;
    assert_eq!(wrong.status, 401);
    assert_eq!(anthropic_error(&wrong), "authentication_error");

    let unknown = anthropic_post(&gw, Some(gw.key), &messages_body(json!({"model": "no-such-model"}))).await;
    assert_eq!(unknown.status, 404);
    assert_eq!(anthropic_error(&unknown), "not_found_error");
    assert!(unknown.json()["error"]["message"].as_str().unwrap().contains("no-such-model"));

    let bad = anthropic_post(&gw, Some(gw.key), &json!({"model": MODEL, "max_tokens": 5})).await;
    assert_eq!(bad.status, 400);
    assert_eq!(anthropic_error(&bad), "invalid_request_error");
    assert!(bad.json()["error"]["message"].as_str().unwrap().contains("messages"), "{}", bad.text());

    // The rate limiter's refusal, with the headers clients back off by.
    let first = anthropic_post(&gw, Some(LIMITED_KEY), &body).await;
    assert_eq!(first.status, 200, "{}", first.text());
    let limited = anthropic_post(&gw, Some(LIMITED_KEY), &body).await;
    assert_eq!(limited.status, 429, "{}", limited.text());
    assert_eq!(anthropic_error(&limited), "rate_limit_error");
    assert!(limited.headers.get(header::RETRY_AFTER).is_some_and(|v| v.to_str().unwrap().parse::<u64>().is_ok()));
    assert_eq!(limited.headers["x-ratelimit-limit-requests"], "1");
    assert_eq!(limited.headers["x-ratelimit-remaining-requests"], "0");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_errors_are_in_openais_shape() {
    let gw = TestGateway::start(1, options(ALL_APIS)).await;
    let url = gw.url("/v1/responses");
    let body = responses_body(json!({}));

    let missing = gw.client.post_json_whole(&url, None, &body).await;
    assert_eq!(missing.status, 401);
    assert_eq!(missing.openai_error()["code"], "missing_api_key");
    // `x-api-key` is Anthropic's header: OpenAI's API does not take it.
    let mut req = request(Method::POST, &url, None, full_body(body.to_string()));
    req.headers_mut().insert("x-api-key", gw.key.parse().unwrap());
    assert_eq!(gw.client.send_whole(req).await.status, 401);

    let unknown = gw.client.post_json_whole(&url, Some(gw.key), &responses_body(json!({"model": "nope"}))).await;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.openai_error()["code"], "model_not_found");

    let bad = gw.client.post_json_whole(&url, Some(gw.key), &json!({"input": "x"})).await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.openai_error()["param"], "model");

    let first = gw.client.post_json_whole(&url, Some(LIMITED_KEY), &body).await;
    assert_eq!(first.status, 200, "{}", first.text());
    let limited = gw.client.post_json_whole(&url, Some(LIMITED_KEY), &body).await;
    assert_eq!(limited.status, 429);
    assert_eq!(limited.openai_error()["type"], "rate_limit_exceeded");
    assert!(limited.headers.contains_key(header::RETRY_AFTER));
    assert_eq!(limited.headers["x-ratelimit-remaining-requests"], "0");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_that_does_not_declare_an_api_refuses_it_clearly() {
    // No chat either, so Messages cannot go through chat completions.
    let gw = TestGateway::start(1, options(r#"apis = ["completions", "embeddings"]"#)).await;
    let messages = anthropic_post(&gw, Some(gw.key), &messages_body(json!({}))).await;
    assert_eq!(messages.status, 400, "{}", messages.text());
    assert_eq!(anthropic_error(&messages), "invalid_request_error");
    let message = messages.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(message.contains("/v1/messages") && message.contains("apis"), "{message}");

    let responses = gw.client.post_json_whole(&gw.url("/v1/responses"), Some(gw.key), &responses_body(json!({}))).await;
    assert_eq!(responses.status, 400);
    assert_eq!(responses.openai_error()["code"], "api_not_served");
    let chat = gw.chat(&sluice_test_support::chat_body("hi", json!({"max_tokens": 2}))).await;
    assert_eq!(chat.status, 400);
    assert_eq!(chat.openai_error()["code"], "api_not_served");
    assert_eq!(gw.sims[0].stats().requests_received, 0, "no worker saw the refused requests");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_are_never_translated_for_a_chat_only_pool() {
    // Its stored state (`previous_response_id`, `store`) would be lost on a chat worker.
    let gw = TestGateway::start(1, options("")).await;
    let responses = gw.client.post_json_whole(&gw.url("/v1/responses"), Some(gw.key), &responses_body(json!({}))).await;
    assert_eq!(responses.status, 400);
    assert_eq!(responses.openai_error()["code"], "api_not_served");
    assert_eq!(gw.sims[0].stats().requests_received, 0);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_reach_a_chat_only_pool_translated_whole_and_streamed() {
    // The default `apis`: chat, completions and embeddings.
    let gw = TestGateway::start(1, options("")).await;

    let whole = anthropic_post(&gw, Some(gw.key), &messages_body(json!({"max_tokens": 5}))).await;
    assert_eq!(whole.status, 200, "{}", whole.text());
    let v = whole.json();
    assert_eq!((v["type"].as_str(), v["role"].as_str()), (Some("message"), Some("assistant")), "{v}");
    assert_eq!(v["model"], MODEL);
    assert_eq!(v["stop_reason"], "max_tokens", "the chat answer's `length`: {v}");
    assert_eq!(v["content"][0]["type"], "text");
    assert!(v["content"][0]["text"].as_str().is_some_and(|t| !t.is_empty()), "{v}");
    let whole_in =
        v["usage"]["input_tokens"].as_f64().unwrap() + v["usage"]["cache_read_input_tokens"].as_f64().unwrap();
    let whole_out = v["usage"]["output_tokens"].as_f64().unwrap();
    assert_eq!(whole_out, 5.0);

    let body = messages_body(json!({"stream": true, "max_tokens": 12}));
    let mut stream = gw.client.post_stream(&gw.url("/v1/messages"), Some(gw.key), &body).await;
    let events = stream.rest().await;
    assert!(!stream.broke, "the stream ended cleanly");
    let types: Vec<String> = events.iter().map(event_type).collect();
    assert_eq!(types.first().map(String::as_str), Some("message_start"), "{types:?}");
    assert_eq!(types.last().map(String::as_str), Some("message_stop"), "{types:?}");
    let count = |name: &str| types.iter().filter(|t| *t == name).count();
    assert_eq!((count("content_block_start"), count("content_block_stop")), (1, 1), "{types:?}");
    assert_eq!(count("content_block_delta"), 12, "{types:?}");
    // Each event is named as Anthropic names it, for SDKs that dispatch on `event:`.
    assert!(events.iter().all(|e| e.event.as_deref() == Some(event_type(e).as_str())), "{events:?}");
    let delta = events.iter().find(|e| event_type(e) == "message_delta").unwrap().json().unwrap();
    assert_eq!(delta["delta"]["stop_reason"], "max_tokens");
    assert_eq!(delta["usage"]["output_tokens"], 12);
    let stream_in = delta["usage"]["input_tokens"].as_f64().unwrap()
        + delta["usage"]["cache_read_input_tokens"].as_f64().unwrap_or(0.0);

    // The worker's own figures, from its chat usage.
    assert_recorded(&gw, whole_in + stream_in, whole_out + 12.0, "messages", 2.0).await;
    assert_eq!(gw.sims[0].stats().requests_completed, 2);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_use_conversation_reaches_a_chat_only_pool_and_what_cannot_be_carried_is_refused() {
    let gw = TestGateway::start(1, options("")).await;
    let tools = json!([{"name": "get_weather", "description": "the weather in a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]);
    let conversation = json!([
        {"role": "user", "content": "what is the weather in Oslo?"},
        {"role": "assistant", "content": [
            {"type": "text", "text": "Let me look."},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Oslo"}}
        ]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "4°C, rain"}]},
            {"type": "text", "text": "and tomorrow?"}
        ]}
    ]);
    let body = json!({"model": MODEL, "max_tokens": 4, "tools": tools, "tool_choice": {"type": "auto"},
        "messages": conversation});
    let reply = anthropic_post(&gw, Some(gw.key), &body).await;
    assert_eq!(reply.status, 200, "the worker took the translated tool messages: {}", reply.text());
    assert_eq!(reply.json()["content"][0]["type"], "text");

    // A forced call comes back as a tool_use block, whole and streamed.
    let forced = json!({"model": MODEL, "max_tokens": 6, "tools": tools,
        "tool_choice": {"type": "tool", "name": "get_weather"},
        "messages": [{"role": "user", "content": "what is the weather in Oslo?"}]});
    let reply = anthropic_post(&gw, Some(gw.key), &forced).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let v = reply.json();
    let call = &v["content"][0];
    assert_eq!((call["type"].as_str(), call["name"].as_str()), (Some("tool_use"), Some("get_weather")), "{v}");
    assert!(call["input"]["city"].as_str().is_some_and(|c| !c.is_empty()), "{v}");
    let mut streamed = forced.clone();
    streamed["stream"] = json!(true);
    let mut stream = gw.client.post_stream(&gw.url("/v1/messages"), Some(gw.key), &streamed).await;
    let events = stream.rest().await;
    let start = events.iter().find(|e| event_type(e) == "content_block_start").unwrap().json().unwrap();
    assert_eq!(start["content_block"]["type"], "tool_use", "{start}");
    assert_eq!(start["content_block"]["name"], "get_weather");
    let json: String = events
        .iter()
        .filter_map(|e| e.json())
        .filter(|v| v["type"] == "content_block_delta")
        .map(|v| v["delta"]["partial_json"].as_str().unwrap().to_owned())
        .collect();
    let input: Value = serde_json::from_str(&json).unwrap();
    assert!(input["city"].as_str().is_some_and(|c| !c.is_empty()), "{json}");
    // And its result goes back to the worker as a tool message.
    let id = call["id"].as_str().unwrap();
    let follow_up = json!({"model": MODEL, "max_tokens": 4, "tools": tools, "messages": [
        {"role": "user", "content": "what is the weather in Oslo?"},
        {"role": "assistant", "content": [call]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": id, "content": "4°C, rain"}]}
    ]});
    let reply = anthropic_post(&gw, Some(gw.key), &follow_up).await;
    assert_eq!(reply.status, 200, "{}", reply.text());

    // Refused by name, before any worker sees them.
    let before = gw.sims[0].stats().requests_received;
    let thinking = messages_body(json!({"thinking": {"type": "enabled", "budget_tokens": 1024}}));
    let refused = anthropic_post(&gw, Some(gw.key), &thinking).await;
    assert_eq!(refused.status, 400, "{}", refused.text());
    assert_eq!(anthropic_error(&refused), "invalid_request_error");
    assert!(refused.json()["error"]["message"].as_str().unwrap().contains("thinking"), "{}", refused.text());
    let server_tool = messages_body(json!({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}));
    let refused = anthropic_post(&gw, Some(gw.key), &server_tool).await;
    assert_eq!(refused.status, 400, "{}", refused.text());
    assert!(refused.json()["error"]["message"].as_str().unwrap().contains("web_search_20250305"), "{}", refused.text());
    assert_eq!(gw.sims[0].stats().requests_received, before);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_messages_stream_cut_by_the_worker_ends_with_an_anthropic_error_and_is_billed_like_a_chat() {
    let gw = TestGateway::start(1, options(ALL_APIS)).await;
    gw.sims[0].set_faults(sluice_sim::Faults { drop_after_tokens: Some(3), ..sluice_sim::Faults::default() });
    let body = messages_body(json!({"stream": true, "max_tokens": 12}));
    let mut stream = gw.client.post_stream(&gw.url("/v1/messages"), Some(gw.key), &body).await;
    let events = stream.rest().await;
    let types: Vec<String> = events.iter().map(event_type).collect();
    assert_eq!(types.iter().filter(|t| *t == "content_block_delta").count(), 3, "{types:?}");
    let last = events.last().unwrap().json().unwrap();
    assert_eq!(last["type"], "error", "Anthropic's SDKs raise on `event: error`: {last}");
    assert_eq!(last["error"]["type"], "api_error");
    // No usage from the worker: billed the token events relayed, flagged as estimated.
    assert_eq!(tokens(&gw, "completion").await, 3.0);
    assert_eq!(gw.metric("sluice_usage_estimated_requests_total", &[("outcome", "upstream_error")]).await, 1.0);
    gw.shutdown().await;
}

/// A call to the admin API of a gateway started with a store.
async fn admin(gw: &TestGateway, method: Method, path: &str, body: Value) -> (u16, Value) {
    let req = request(method, &gw.admin_url(path), Some(ADMIN_TOKEN), full_body(body.to_string()));
    let reply = gw.client.send_whole(req).await;
    (reply.status.as_u16(), reply.json())
}

/// The id of a Messages answer: the worker's own (`msg-…`) when it got the request as it was
/// sent, the chat completion's (`msg_chatcmpl-…`) when it was translated. `None` when refused.
async fn answer_id(gw: &TestGateway, body: &Value) -> Option<String> {
    let reply = anthropic_post(gw, Some(gw.key), body).await;
    (reply.status == 200).then(|| reply.json()["id"].as_str().unwrap().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_made_through_the_admin_api_speaks_the_apis_it_was_given_there() {
    const AGENTS_MODEL: &str = "agents-model";
    let (store, _dir) = fresh_sqlite().await;
    let mut opts = options("");
    opts.sim.models = vec![MODEL.to_owned(), AGENTS_MODEL.to_owned()];
    opts.store = Some(TestStore(store));
    let gw = TestGateway::start(1, opts).await;

    let pool = json!({"name": "agents", "models": [AGENTS_MODEL], "apis": ["chat", "messages"]});
    let (status, created) = admin(&gw, Method::POST, "/admin/api/pools", pool).await;
    assert_eq!((status, &created["apis"]), (201, &json!(["chat", "messages"])), "{created}");
    let endpoint = json!({"name": "w1", "url": gw.sims[0].base_url()});
    let (status, added) = admin(&gw, Method::POST, "/admin/api/pools/agents/endpoints", endpoint).await;
    assert_eq!(status, 201, "{added}");

    let body = messages_body(json!({"model": AGENTS_MODEL, "max_tokens": 4}));
    let natively = wait_until_async(Duration::from_secs(5), || async {
        answer_id(&gw, &body).await.is_some_and(|id| id.starts_with("msg-"))
    })
    .await;
    assert!(natively, "the pool's workers get Messages requests as they are: {:?}", answer_id(&gw, &body).await);

    // Changed through the admin API, the list takes effect: chat only, Messages go through it…
    let (status, patched) = admin(&gw, Method::PATCH, "/admin/api/pools/agents", json!({"apis": ["chat"]})).await;
    assert_eq!((status, &patched["apis"]), (200, &json!(["chat"])), "{patched}");
    let translated = wait_until_async(Duration::from_secs(5), || async {
        answer_id(&gw, &body).await.is_some_and(|id| id.starts_with("msg_chatcmpl-"))
    })
    .await;
    assert!(translated, "a chat-only pool gets them translated: {:?}", answer_id(&gw, &body).await);

    // …and without chat, they are refused before any worker sees them.
    let (status, _) = admin(&gw, Method::PATCH, "/admin/api/pools/agents", json!({"apis": ["embeddings"]})).await;
    assert_eq!(status, 200);
    let refused = wait_until_async(Duration::from_secs(5), || async {
        anthropic_post(&gw, Some(gw.key), &body).await.status == 400
    })
    .await;
    assert!(refused, "a pool that speaks neither Messages nor chat refuses them");
    let before = gw.sims[0].stats().requests_received;
    let reply = anthropic_post(&gw, Some(gw.key), &body).await;
    assert_eq!(anthropic_error(&reply), "invalid_request_error");
    assert_eq!(gw.sims[0].stats().requests_received, before);

    // The file's pool is untouched: it speaks the default, so its Messages are translated.
    let reply = anthropic_post(&gw, Some(gw.key), &messages_body(json!({"max_tokens": 4}))).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(reply.json()["id"].as_str().unwrap().starts_with("msg_chatcmpl-"), "{}", reply.text());
    gw.shutdown().await;
}
