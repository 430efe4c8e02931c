//! Anthropic's Messages API carried over OpenAI chat completions, for pools whose workers
//! speak only chat completions: [`messages_to_chat`] rewrites the request,
//! [`chat_to_messages`] rewrites a whole answer and [`MessagesStream`] rewrites a streamed one.
//!
//! The supported subset, and what happens to the rest:
//!
//! - `model`, `max_tokens` (required), `temperature`, `top_p`, `stop_sequences` (→ `stop`),
//!   `metadata.user_id` (→ `user`) and `stream` carry over; a stream also asks for
//!   `stream_options.include_usage`, because the gateway meters usage. `top_k` is passed as the
//!   vLLM/SGLang extension of the same name.
//! - `system` as a string or as text blocks (joined with a blank line) becomes the first,
//!   `system`, message.
//! - Message content: `text`, `image` (a `base64` or `url` source, user messages only),
//!   `tool_use` (assistant only, → `tool_calls`) and `tool_result` (user only, → a `tool`
//!   message placed before the rest of that user message, since chat wants tool results right
//!   after the call). A `tool_result` with `is_error` has its text prefixed with `Error: `,
//!   because chat has no error flag and the model should still see that the call failed.
//! - `tools` of the custom kind (→ functions) and every `tool_choice`, including
//!   `disable_parallel_tool_use` (→ `parallel_tool_calls: false`).
//! - `cache_control` is ignored wherever it appears (it is a hint), and so is `service_tier`
//!   (a pool has no tiers); `thinking` may be absent or `disabled`.
//!
//! Refused with [`TranslateError::Unsupported`], naming what was refused, rather than dropped:
//! extended thinking, server tools (`web_search_…`, `bash_…`, `text_editor_…`, `computer_…`),
//! content blocks other than the four above (`document`, `thinking`, `search_result`, …),
//! images in assistant messages or inside tool results, `container`, `mcp_servers` and any
//! other top-level member this module does not know.
//!
//! Not carried: a final assistant message is sent as an ordinary assistant turn, so a worker
//! that does not continue it (vLLM's `continue_final_message`) answers after it rather than
//! completing it; a worker's `reasoning_content` is not turned into `thinking` blocks, since
//! thinking is refused on the way in.

mod request;
mod response;
mod stream;

use serde_json::Value;

pub use stream::MessagesStream;

/// Why a request or an answer could not be translated.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TranslateError {
    /// The request uses something the translation cannot carry to a chat-completions worker. The message names
    /// it (e.g. "content block type `document` is not supported for models served through chat completions")
    /// and is shown to the client in a 400.
    #[error("{0}")]
    Unsupported(String),
    /// The body is not a valid Messages request (or, for answers, not a chat completion); message says why.
    #[error("{0}")]
    Invalid(String),
}

/// A Messages request body -> the chat completions request body to send to the worker.
pub fn messages_to_chat(body: &[u8]) -> Result<Vec<u8>, TranslateError> {
    request::messages_to_chat(body)
}

/// A whole (non-streamed, successful) chat completion body -> the Messages response body. `model` is the model
/// name the client asked for (put in the answer's `model`).
pub fn chat_to_messages(body: &[u8], model: &str) -> Result<Vec<u8>, TranslateError> {
    response::chat_to_messages(body, model)
}

/// The end of the refusal messages, so every refusal reads the same way.
const NOT_SUPPORTED: &str = "is not supported for models served through chat completions";

fn unsupported(what: impl std::fmt::Display) -> TranslateError {
    TranslateError::Unsupported(format!("{what} {NOT_SUPPORTED}"))
}

fn invalid(why: impl Into<String>) -> TranslateError {
    TranslateError::Invalid(why.into())
}

/// Why the worker stopped, as the Messages API says it: `stop_reason` and `stop_sequence`.
/// `choice` is a chat choice (whole or streamed); `called_tools` is whether the answer holds tool calls.
fn stop_reason(choice: &Value, called_tools: bool) -> (&'static str, Option<String>) {
    match choice.get("finish_reason").and_then(Value::as_str) {
        // vLLM names the stop string it matched in `stop_reason` (a token id there is an EOS-like stop).
        Some("stop") => match choice.get("stop_reason").and_then(Value::as_str) {
            Some(sequence) => ("stop_sequence", Some(sequence.to_owned())),
            // Some tool parsers finish a tool call with `stop`; an agent loop only runs tools on `tool_use`.
            None if called_tools => ("tool_use", None),
            None => ("end_turn", None),
        },
        Some("length") => ("max_tokens", None),
        Some("tool_calls" | "function_call") => ("tool_use", None),
        Some("content_filter") => ("refusal", None),
        _ if called_tools => ("tool_use", None),
        _ => ("end_turn", None),
    }
}

/// A chat `usage` object's figures in the Messages API's terms: `input_tokens` excludes the cached
/// prompt tokens, which are reported as `cache_read_input_tokens`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Usage {
    input: u64,
    output: u64,
    cached: u64,
}

impl Usage {
    fn from_chat(usage: &Value) -> Self {
        let count = |v: Option<&Value>| v.and_then(Value::as_u64).unwrap_or(0);
        let prompt = count(usage.get("prompt_tokens"));
        let cached = count(usage.pointer("/prompt_tokens_details/cached_tokens")).min(prompt);
        Self { input: prompt - cached, output: count(usage.get("completion_tokens")), cached }
    }
}

/// A tool call's id, or one made up from its position: the client must be able to answer the call.
fn call_id(call: &Value, i: usize) -> String {
    match call.get("id").and_then(Value::as_str) {
        Some(id) if !id.is_empty() => id.to_owned(),
        _ => format!("toolu_sluice_{i}"),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse(bytes: &[u8]) -> Value {
        serde_json::from_slice(bytes).unwrap()
    }

    #[test]
    fn stop_reasons_map_to_the_messages_api() {
        for (choice, tools, want) in [
            (json!({"finish_reason": "stop"}), false, ("end_turn", None)),
            (json!({"finish_reason": "stop", "stop_reason": "###"}), false, ("stop_sequence", Some("###"))),
            (json!({"finish_reason": "stop", "stop_reason": 128_001}), false, ("end_turn", None)),
            (json!({"finish_reason": "stop"}), true, ("tool_use", None)),
            (json!({"finish_reason": "length"}), true, ("max_tokens", None)),
            (json!({"finish_reason": "tool_calls"}), true, ("tool_use", None)),
            (json!({"finish_reason": "function_call"}), true, ("tool_use", None)),
            (json!({"finish_reason": "content_filter"}), false, ("refusal", None)),
            (json!({"finish_reason": null}), false, ("end_turn", None)),
            (json!({"finish_reason": "abort"}), false, ("end_turn", None)),
        ] {
            let (reason, sequence) = stop_reason(&choice, tools);
            assert_eq!((reason, sequence.as_deref()), want, "{choice}");
        }
    }

    #[test]
    fn usage_splits_cached_tokens_out_of_the_input() {
        let usage =
            json!({"prompt_tokens": 100, "completion_tokens": 7, "prompt_tokens_details": {"cached_tokens": 64}});
        assert_eq!(Usage::from_chat(&usage), Usage { input: 36, output: 7, cached: 64 });
        assert_eq!(Usage::from_chat(&json!({"prompt_tokens": 5})), Usage { input: 5, output: 0, cached: 0 });
        assert_eq!(Usage::from_chat(&Value::Null), Usage::default());
    }

    /// A tool-use conversation through both directions: the answer's `tool_use` block, sent back as
    /// the next request's assistant turn, reaches the worker as the same call.
    #[test]
    fn a_tool_use_round_trip() {
        let first = json!({
            "model": "m", "max_tokens": 100,
            "tools": [{"name": "weather", "input_schema": {"type": "object"}}],
            "messages": [{"role": "user", "content": "Weather in Paris?"}],
        });
        let chat = parse(&messages_to_chat(first.to_string().as_bytes()).unwrap());
        assert_eq!(chat["tools"][0]["function"]["name"], "weather");

        let worker = json!({
            "id": "chatcmpl-1",
            "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": null,
                "tool_calls": [{"id": "call_9", "type": "function",
                    "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}}]}}],
            "usage": {"prompt_tokens": 20, "completion_tokens": 5},
        });
        let answer = parse(&chat_to_messages(worker.to_string().as_bytes(), "m").unwrap());
        assert_eq!(answer["stop_reason"], "tool_use");

        let mut second = first.clone();
        second["messages"] = json!([
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": answer["content"]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "call_9", "content": "18°C"},
                {"type": "text", "text": "And tomorrow?"},
            ]},
        ]);
        let chat = parse(&messages_to_chat(second.to_string().as_bytes()).unwrap());
        assert_eq!(
            chat["messages"],
            json!([
                {"role": "user", "content": "Weather in Paris?"},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "call_9", "type": "function",
                    "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}}]},
                {"role": "tool", "tool_call_id": "call_9", "content": "18°C"},
                {"role": "user", "content": "And tomorrow?"},
            ])
        );
    }

    #[test]
    fn errors_display_their_message() {
        let err = unsupported("content block type `document`");
        assert_eq!(
            err.to_string(),
            "content block type `document` is not supported for models served through chat completions"
        );
        assert!(matches!(err, TranslateError::Unsupported(_)));
    }
}
