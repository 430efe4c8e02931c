//! What the gateway learns from one streamed event of the Responses or Messages API.
//!
//! Both APIs name each event (`event:` and the data's `type` agree), so most events are
//! classified by their name alone and only the few that carry usage are parsed:
//!
//! - Responses: every `*.delta` event is output (`response.output_text.delta`, reasoning,
//!   refusal, function-call arguments, …); `response.completed` and `response.incomplete`
//!   carry `response.usage`; `response.failed` and `error` are failures; `response.created`
//!   names the response (its id).
//! - Messages: `content_block_delta` is output; `message_start` carries the input usage,
//!   `message_delta` the output usage (a running total); `error` is a failure.

use serde::Deserialize;

use super::Dialect;
use super::usage::{MessagesUsage, ResponsesUsage};
use crate::response::Usage;

/// One event's meaning for the gateway's accounting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentEvent {
    /// Generated output.
    Token,
    /// Responses' last event, `response.completed` or `response.incomplete`: the response is
    /// done (and stored, when it was to be), with the whole request's usage when it carries it.
    Completed(Option<Usage>),
    /// Messages' `message_start`: the prompt's tokens, and how many of them were cached.
    Input { prompt: u64, cached: u64 },
    /// Messages' `message_delta`: output tokens so far, and the input figures when the worker
    /// repeats them there.
    Output { completion: u64, input: Option<(u64, u64)> },
    /// The worker reported a failure in the stream (its usage, when it gave one).
    Error(Option<Usage>),
    /// Responses' `response.created`: the response's id is in it
    /// ([`super::response_id::of_created_event`]).
    Created,
    /// Anything else (`response.in_progress`, `content_block_start`, `ping`, …).
    Other,
}

#[derive(Deserialize)]
struct Kind<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<std::borrow::Cow<'a, str>>,
}

#[derive(Deserialize)]
struct ResponseEnvelope {
    #[serde(default)]
    response: Option<ResponseProbe>,
}

#[derive(Deserialize)]
struct ResponseProbe {
    #[serde(default)]
    usage: Option<ResponsesUsage>,
}

#[derive(Deserialize)]
struct MessageStart {
    message: MessageProbe,
}

#[derive(Deserialize)]
struct MessageProbe {
    #[serde(default)]
    usage: Option<MessagesUsage>,
}

#[derive(Deserialize)]
struct MessageDelta {
    #[serde(default)]
    usage: Option<MessagesUsage>,
}

/// Classifies one event of `dialect`: `name` is its `event:` field, when it has one; the
/// data's `type` is read only when it has none.
pub fn agent_event(dialect: Dialect, name: Option<&str>, data: &[u8]) -> AgentEvent {
    let owned;
    let name = match name {
        Some(name) => name,
        None => {
            let Ok(kind) = serde_json::from_slice::<Kind<'_>>(data) else { return AgentEvent::Other };
            let Some(kind) = kind.kind else { return AgentEvent::Other };
            owned = kind.into_owned();
            owned.as_str()
        }
    };
    match dialect {
        Dialect::Responses => responses_event(name, data),
        Dialect::Messages => messages_event(name, data),
    }
}

fn responses_event(name: &str, data: &[u8]) -> AgentEvent {
    let usage =
        || serde_json::from_slice::<ResponseEnvelope>(data).ok()?.response?.usage.map(ResponsesUsage::into_usage);
    match name {
        "response.completed" | "response.incomplete" => AgentEvent::Completed(usage()),
        "response.created" => AgentEvent::Created,
        "response.failed" => AgentEvent::Error(usage()),
        "error" => AgentEvent::Error(None),
        _ if name.ends_with(".delta") => AgentEvent::Token,
        _ => AgentEvent::Other,
    }
}

fn messages_event(name: &str, data: &[u8]) -> AgentEvent {
    match name {
        "content_block_delta" => AgentEvent::Token,
        "message_start" => {
            let usage = serde_json::from_slice::<MessageStart>(data).ok().and_then(|s| s.message.usage);
            match usage {
                Some(u) => AgentEvent::Input { prompt: u.prompt(), cached: u.cache_read_input_tokens },
                None => AgentEvent::Other,
            }
        }
        "message_delta" => match serde_json::from_slice::<MessageDelta>(data).ok().and_then(|d| d.usage) {
            Some(u) => AgentEvent::Output {
                completion: u.output_tokens,
                input: (u.prompt() > 0).then(|| (u.prompt(), u.cache_read_input_tokens)),
            },
            None => AgentEvent::Other,
        },
        "error" => AgentEvent::Error(None),
        _ => AgentEvent::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_events() {
        let ev = |name: Option<&str>, data: &str| agent_event(Dialect::Responses, name, data.as_bytes());
        assert_eq!(ev(Some("response.created"), r#"{"type":"response.created","response":{}}"#), AgentEvent::Created);
        assert_eq!(ev(None, r#"{"type":"response.created","response":{"id":"r"}}"#), AgentEvent::Created);
        assert_eq!(ev(Some("response.in_progress"), r#"{"response":{}}"#), AgentEvent::Other);
        assert_eq!(ev(Some("response.output_text.delta"), r#"{"delta":"hi"}"#), AgentEvent::Token);
        assert_eq!(ev(None, r#"{"type":"response.reasoning_text.delta","delta":"hm"}"#), AgentEvent::Token);
        let completed = r#"{"type":"response.completed","response":{"id":"r","output":[],"usage":{"input_tokens":12,"input_tokens_details":{"cached_tokens":4},"output_tokens":7,"total_tokens":19}}}"#;
        assert_eq!(ev(None, completed), AgentEvent::Completed(Some(Usage::new(12, 4, 7))));
        assert_eq!(ev(Some("response.completed"), completed), AgentEvent::Completed(Some(Usage::new(12, 4, 7))));
        assert_eq!(ev(Some("response.incomplete"), r#"{"response":{"id":"r"}}"#), AgentEvent::Completed(None));
        assert_eq!(ev(Some("response.failed"), r#"{"response":{"error":{}}}"#), AgentEvent::Error(None));
        assert_eq!(ev(Some("error"), r#"{"type":"error","message":"x"}"#), AgentEvent::Error(None));
        assert_eq!(ev(None, "not json"), AgentEvent::Other);
    }

    #[test]
    fn messages_events() {
        let ev = |name: &str, data: &str| agent_event(Dialect::Messages, Some(name), data.as_bytes());
        let start = r#"{"type":"message_start","message":{"id":"m","usage":{"input_tokens":10,"cache_read_input_tokens":5,"output_tokens":1}}}"#;
        assert_eq!(ev("message_start", start), AgentEvent::Input { prompt: 15, cached: 5 });
        assert_eq!(ev("content_block_delta", r#"{"delta":{"type":"text_delta","text":"x"}}"#), AgentEvent::Token);
        assert_eq!(
            ev("message_delta", r#"{"delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":9}}"#),
            AgentEvent::Output { completion: 9, input: None }
        );
        assert_eq!(ev("ping", r#"{"type":"ping"}"#), AgentEvent::Other);
        assert_eq!(
            ev("error", r#"{"type":"error","error":{"type":"overloaded_error","message":"x"}}"#),
            AgentEvent::Error(None)
        );
        assert_eq!(
            agent_event(
                Dialect::Messages,
                None,
                br#"{"type":"message_delta","usage":{"input_tokens":3,"output_tokens":2}}"#
            ),
            AgentEvent::Output { completion: 2, input: Some((3, 0)) }
        );
    }
}
