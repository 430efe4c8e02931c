//! The body sent upstream. Untouched when nothing needs changing; otherwise re-serialised from
//! the typed request (which keeps every unknown field).

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use sluice_metrics::Api;
use sluice_openai::agents::translate;
use sluice_openai::request::force_include_usage;

use crate::error::GatewayError;
use crate::stages::parse::ParsedRequest;

pub struct UpstreamBody {
    pub bytes: Bytes,
    /// Headers plugins asked to send to the worker.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// The gateway asked for the usage chunk the client did not: strip it from the stream.
    pub strip_usage: bool,
    /// The most a whole (non-streamed) answer may hold in the gateway's memory: in proportion
    /// to what the client asked for, so a worker cannot make the gateway buffer more.
    pub answer_limit: usize,
}

/// Whole answers above this are refused whatever was asked for.
pub const MAX_ANSWER_BYTES: usize = 256 << 20;
/// Room for an answer's envelope (ids, usage, an error's text).
const ANSWER_BASE_BYTES: usize = 1 << 20;
/// A generated token's share of a JSON answer is a few bytes of text and escaping; with
/// log-probabilities (up to 20 alternatives each) it is a few kilobytes.
const BYTES_PER_TOKEN: usize = 64;
const BYTES_PER_TOKEN_WITH_LOGPROBS: usize = 4096;
/// When the client sets no output limit, the worker's own (its context) applies: assume a long one.
const ASSUMED_MAX_TOKENS: usize = 128 * 1024;
/// An embedding as JSON floats: 8,192 dimensions at up to ~24 bytes each.
const BYTES_PER_EMBEDDING: usize = 200 * 1024;

/// The answer limit for `parsed` (see [`UpstreamBody::answer_limit`]).
pub fn answer_limit(parsed: &ParsedRequest) -> usize {
    let choices = |extra: &serde_json::Map<String, serde_json::Value>| {
        extra.get("n").and_then(serde_json::Value::as_u64).map_or(1, |n| usize::try_from(n.clamp(1, 128)).unwrap_or(1))
    };
    let logprobs = |extra: &serde_json::Map<String, serde_json::Value>| {
        extra.get("logprobs").is_some_and(|v| v.as_bool() == Some(true) || v.as_u64().is_some_and(|n| n > 0))
    };
    let generated = |max_tokens: Option<u32>, n: usize, logprobs: bool| {
        let tokens = max_tokens.map_or(ASSUMED_MAX_TOKENS, |t| usize::try_from(t).unwrap_or(ASSUMED_MAX_TOKENS));
        let per_token = if logprobs { BYTES_PER_TOKEN_WITH_LOGPROBS } else { BYTES_PER_TOKEN };
        tokens.saturating_mul(n).saturating_mul(per_token)
    };
    let variable = match parsed {
        ParsedRequest::Chat(r) => {
            generated(r.max_completion_tokens.or(r.max_tokens), choices(&r.extra), logprobs(&r.extra))
        }
        ParsedRequest::Completion(r) => {
            generated(r.max_tokens, choices(&r.extra).saturating_mul(r.prompt.len().max(1)), logprobs(&r.extra))
        }
        ParsedRequest::Embedding(r) => r.input.len().saturating_mul(BYTES_PER_EMBEDDING),
        ParsedRequest::Agent(r) => generated(r.output_limit, 1, false),
    };
    ANSWER_BASE_BYTES.saturating_add(variable).min(MAX_ANSWER_BYTES)
}

/// The client's headers the worker must see: Anthropic's API version and beta features, on
/// Messages requests (vLLM and Anthropic-compatible servers read them). Nothing else of the
/// client's headers is forwarded; its key never is.
pub fn passthrough_headers(api: Api, headers: &HeaderMap) -> Vec<(HeaderName, HeaderValue)> {
    const ANTHROPIC: [HeaderName; 2] =
        [HeaderName::from_static("anthropic-version"), HeaderName::from_static("anthropic-beta")];
    if api != Api::Messages {
        return Vec::new();
    }
    ANTHROPIC
        .iter()
        .flat_map(|name| headers.get_all(name).iter().map(move |value| (name.clone(), value.clone())))
        .collect()
}

/// A Messages request's body as a chat completion request, for a pool whose workers speak only
/// chat completions. What the translation cannot carry is refused with a `400` naming it.
pub fn messages_to_chat(body: &[u8]) -> Result<Bytes, GatewayError> {
    translate::messages_to_chat(body)
        .map(Bytes::from)
        .map_err(|e| GatewayError::InvalidBody { message: e.to_string(), param: None })
}

pub fn run(parsed: ParsedRequest, original: Bytes) -> Result<UpstreamBody, GatewayError> {
    let answer_limit = answer_limit(&parsed);
    // Every streamed request must be accounted, so usage is requested even if the client did not.
    let rewritten = match parsed {
        ParsedRequest::Chat(mut r) if r.is_stream() && !r.wants_usage_chunk() => {
            force_include_usage(&mut r.stream_options);
            Some(serde_json::to_vec(&r))
        }
        ParsedRequest::Completion(mut r) if r.is_stream() && !r.wants_usage_chunk() => {
            force_include_usage(&mut r.stream_options);
            Some(serde_json::to_vec(&r))
        }
        // Responses and Messages streams always report usage: they are forwarded untouched.
        ParsedRequest::Chat(_)
        | ParsedRequest::Completion(_)
        | ParsedRequest::Embedding(_)
        | ParsedRequest::Agent(_) => None,
    };
    match rewritten {
        None => Ok(UpstreamBody { bytes: original, headers: Vec::new(), strip_usage: false, answer_limit }),
        Some(Ok(bytes)) => {
            Ok(UpstreamBody { bytes: Bytes::from(bytes), headers: Vec::new(), strip_usage: true, answer_limit })
        }
        Some(Err(e)) => Err(GatewayError::Internal(format!("re-serialising request: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stages::parse;

    fn prepare(body: &'static str) -> UpstreamBody {
        let bytes = Bytes::from_static(body.as_bytes());
        run(parse::run(Api::ChatCompletions, &bytes).unwrap(), bytes).unwrap()
    }

    #[test]
    fn untouched_unless_usage_must_be_requested() {
        let body = r#"{"model":"m", "messages":[], "top_k": 3}"#;
        let out = prepare(body);
        assert_eq!(out.bytes, body.as_bytes(), "non-streaming bodies pass byte-for-byte");
        assert!(!out.strip_usage);

        let out = prepare(r#"{"model":"m","messages":[],"stream":true,"stream_options":{"include_usage":true}}"#);
        assert!(!out.strip_usage, "client asked for usage itself");

        let out = prepare(r#"{"model":"m","messages":[],"stream":true,"top_k":3}"#);
        assert!(out.strip_usage);
        let v: serde_json::Value = serde_json::from_slice(&out.bytes).unwrap();
        assert_eq!(v["stream_options"]["include_usage"], true);
        assert_eq!(v["top_k"], 3);
    }

    #[test]
    fn a_whole_answer_may_hold_what_the_client_asked_for_and_little_more() {
        let limit = |body: &'static str| prepare(body).answer_limit;
        assert_eq!(limit(r#"{"model":"m","messages":[],"max_tokens":16}"#), ANSWER_BASE_BYTES + 16 * BYTES_PER_TOKEN);
        assert_eq!(
            limit(r#"{"model":"m","messages":[],"max_completion_tokens":16,"n":2,"logprobs":true}"#),
            ANSWER_BASE_BYTES + 2 * 16 * BYTES_PER_TOKEN_WITH_LOGPROBS
        );
        assert_eq!(
            limit(r#"{"model":"m","messages":[]}"#),
            ANSWER_BASE_BYTES + ASSUMED_MAX_TOKENS * BYTES_PER_TOKEN,
            "no output limit: the worker's own applies"
        );
        assert_eq!(
            limit(r#"{"model":"m","messages":[],"max_tokens":4000000000,"n":100,"logprobs":true}"#),
            MAX_ANSWER_BYTES
        );
        let embeddings = Bytes::from_static(br#"{"model":"m","input":["a","b","c"]}"#);
        let parsed = parse::run(Api::Embeddings, &embeddings).unwrap();
        assert_eq!(answer_limit(&parsed), ANSWER_BASE_BYTES + 3 * BYTES_PER_EMBEDDING);
    }

    #[test]
    fn anthropic_headers_reach_messages_workers_and_nothing_else_does() {
        let mut headers = HeaderMap::new();
        headers.insert("anthropic-version", HeaderValue::from_static("2023-06-01"));
        headers.append("anthropic-beta", HeaderValue::from_static("a"));
        headers.append("anthropic-beta", HeaderValue::from_static("b"));
        headers.insert("x-api-key", HeaderValue::from_static("sk-secret"));
        headers.insert(http::header::AUTHORIZATION, HeaderValue::from_static("Bearer sk-secret"));
        let passed = passthrough_headers(Api::Messages, &headers);
        let names: Vec<(&str, &str)> = passed.iter().map(|(n, v)| (n.as_str(), v.to_str().unwrap())).collect();
        assert_eq!(names, [("anthropic-version", "2023-06-01"), ("anthropic-beta", "a"), ("anthropic-beta", "b")]);
        assert!(passthrough_headers(Api::Responses, &headers).is_empty());
        assert!(passthrough_headers(Api::ChatCompletions, &headers).is_empty());
    }
}
