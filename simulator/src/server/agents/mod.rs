//! `POST /v1/responses` (OpenAI's Responses API) and `POST /v1/messages` (Anthropic's Messages
//! API), as vLLM serves them: the same engine and tokenizer as chat completions, with each
//! API's own answer, stream events and usage. Enough of each for the gateway's tests and the
//! demo's traffic: text in, text out; tools and images are accepted and ignored. Responses are
//! stored as vLLM stores them ([`stored`]): a request continuing one this worker did not store
//! (`previous_response_id`) gets vLLM's 404.

mod events;
mod stored;

use std::sync::Arc;

use http::Response;
use hyper::body::Incoming;
use serde_json::{Value, json};
use sluice_openai::{Dialect, Usage};

use super::generate::{Collected, collect};
use super::http::{ApiError, Body, dropped_response, json_response, read_json};
use super::{App, ResponseMeta};
use crate::sampling::FinishReason;

pub(crate) use events::agent_stream;
pub(crate) use stored::StoredResponses;

/// What the handlers read from a request.
struct AgentAsk {
    model: String,
    stream: bool,
    limit: Option<u32>,
    prompt: String,
    /// Responses: the stored response this request continues.
    previous: Option<String>,
    /// Responses: store this one (`store` unset or `true`).
    store: bool,
}

fn ask(dialect: Dialect, body: &Value) -> Result<AgentAsk, ApiError> {
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::bad_request("missing field `model`", Some("model")))?;
    let (limit, prompt) = match dialect {
        Dialect::Responses => {
            let limit = body.get("max_output_tokens").and_then(Value::as_u64);
            let mut text = Vec::new();
            push_text(&mut text, body.get("instructions"));
            push_text(&mut text, body.get("input"));
            (limit, text.join("\n"))
        }
        Dialect::Messages => {
            let Some(messages) = body.get("messages").and_then(Value::as_array) else {
                return Err(ApiError::bad_request("missing field `messages`", Some("messages")));
            };
            let limit = body.get("max_tokens").and_then(Value::as_u64);
            if limit.is_none() {
                return Err(ApiError::bad_request("missing field `max_tokens`", Some("max_tokens")));
            }
            let mut text = Vec::new();
            push_text(&mut text, body.get("system"));
            for m in messages {
                push_text(&mut text, m.get("content"));
            }
            (limit, text.join("\n"))
        }
    };
    let responses = dialect == Dialect::Responses;
    Ok(AgentAsk {
        model: model.to_owned(),
        stream: body.get("stream").and_then(Value::as_bool).unwrap_or(false),
        limit: limit.map(|l| u32::try_from(l).unwrap_or(u32::MAX)),
        prompt,
        previous: body.get("previous_response_id").and_then(Value::as_str).filter(|_| responses).map(str::to_owned),
        store: responses && body.get("store").and_then(Value::as_bool).unwrap_or(true),
    })
}

/// The text in a string, a list of parts with `text`, or a list of items with `content`.
fn push_text(out: &mut Vec<String>, value: Option<&Value>) {
    match value {
        Some(Value::String(s)) => out.push(s.clone()),
        Some(Value::Array(items)) => {
            for item in items {
                match item {
                    Value::String(s) => out.push(s.clone()),
                    Value::Object(o) => {
                        if let Some(Value::String(t)) = o.get("text") {
                            out.push(t.clone());
                        }
                        if let Some(content) = o.get("content") {
                            push_text(out, Some(content));
                        }
                    }
                    _ => {}
                }
            }
        }
        _ => {}
    }
}

pub(crate) async fn responses_handler(app: Arc<App>, body: Incoming) -> Result<Response<Body>, ApiError> {
    agent_handler(app, body, Dialect::Responses).await
}

pub(crate) async fn messages_handler(app: Arc<App>, body: Incoming) -> Result<Response<Body>, ApiError> {
    agent_handler(app, body, Dialect::Messages).await
}

async fn agent_handler(app: Arc<App>, body: Incoming, dialect: Dialect) -> Result<Response<Body>, ApiError> {
    let body: Value = read_json(body).await?;
    let ask = ask(dialect, &body)?;
    app.check_model(&ask.model)?;
    if let Some(previous) = &ask.previous
        && !app.responses.holds(previous)
    {
        return Err(ApiError::ResponseNotFound(previous.clone()));
    }
    let faults = app.roll_faults()?;
    let prompt = app.tokenizer.encode(&ask.prompt);
    let plan = app.plan(&ask.model, prompt, ask.limit, faults)?;
    let meta = match dialect {
        Dialect::Responses => app.response_meta(&ask.model),
        Dialect::Messages => app.meta("msg", &ask.model),
    };
    let drop_after = plan.faults.drop_after_tokens;
    let prompt_tokens = plan.prompt.len() as u64;
    let source = app.start(plan)?;
    // Where the response is stored once it is complete.
    let store = ask.store.then(|| Arc::clone(&app.responses));
    if ask.stream {
        return Ok(agent_stream(dialect, source, meta, app.tokenizer, prompt_tokens, drop_after, store));
    }
    match collect(source, drop_after).await {
        Collected::Done(tokens, finish) => {
            if let Some(store) = store {
                store.remember(&meta.id);
            }
            let text = app.tokenizer.decode(&tokens);
            Ok(json_response(&whole(dialect, &meta, &text, finish.reason, finish.usage)))
        }
        Collected::Dropped(n) => Ok(dropped_response(n)),
        Collected::EngineGone => Err(ApiError::EngineUnavailable),
    }
}

/// A whole answer.
pub(crate) fn whole(dialect: Dialect, meta: &ResponseMeta, text: &str, reason: FinishReason, usage: Usage) -> Value {
    match dialect {
        Dialect::Responses => response_object(meta, Some(text), reason, Some(usage)),
        Dialect::Messages => json!({
            "id": meta.id,
            "type": "message",
            "role": "assistant",
            "model": meta.model,
            "content": [{"type": "text", "text": text}],
            "stop_reason": stop_reason(reason),
            "stop_sequence": null,
            "usage": messages_usage(usage),
        }),
    }
}

/// A Responses `response` object: in progress (no text, no usage) or finished.
pub(crate) fn response_object(
    meta: &ResponseMeta,
    text: Option<&str>,
    reason: FinishReason,
    usage: Option<Usage>,
) -> Value {
    let (status, incomplete) = match (text, reason) {
        (None, _) => ("in_progress", Value::Null),
        (Some(_), FinishReason::Stop) => ("completed", Value::Null),
        (Some(_), FinishReason::Length) => ("incomplete", json!({"reason": "max_output_tokens"})),
    };
    let output = match text {
        Some(text) => json!([message_item(meta, text, "completed")]),
        None => json!([]),
    };
    json!({
        "id": meta.id,
        "object": "response",
        "created_at": meta.created,
        "status": status,
        "error": null,
        "incomplete_details": incomplete,
        "instructions": null,
        "model": meta.model,
        "output": output,
        "parallel_tool_calls": true,
        "tool_choice": "auto",
        "tools": [],
        "usage": usage.map(responses_usage),
    })
}

pub(crate) fn message_item(meta: &ResponseMeta, text: &str, status: &str) -> Value {
    json!({
        "id": format!("msg_{}", meta.id),
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    })
}

pub(crate) fn responses_usage(usage: Usage) -> Value {
    json!({
        "input_tokens": usage.prompt_tokens,
        "input_tokens_details": {"cached_tokens": usage.cached_tokens()},
        "output_tokens": usage.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
    })
}

/// Anthropic counts cache reads apart from `input_tokens`.
pub(crate) fn messages_usage(usage: Usage) -> Value {
    let cached = usage.cached_tokens().min(usage.prompt_tokens);
    json!({
        "input_tokens": usage.prompt_tokens - cached,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": cached,
        "output_tokens": usage.completion_tokens,
    })
}

pub(crate) fn stop_reason(reason: FinishReason) -> &'static str {
    match reason {
        FinishReason::Stop => "end_turn",
        FinishReason::Length => "max_tokens",
    }
}
