//! The request body → a typed request. Unknown fields are kept for the upstream.

use bytes::Bytes;
use sluice_metrics::Api;
use sluice_openai::{AgentRequest, BodyError, ChatCompletionRequest, CompletionRequest, Dialect, EmbeddingRequest};

use crate::error::GatewayError;

#[derive(Debug, Clone)]
pub enum ParsedRequest {
    Chat(ChatCompletionRequest),
    Completion(CompletionRequest),
    Embedding(EmbeddingRequest),
    /// A Responses or Messages request: only what the gateway reads of it.
    Agent(AgentRequest),
}

impl ParsedRequest {
    pub fn model(&self) -> &str {
        match self {
            ParsedRequest::Chat(r) => &r.model,
            ParsedRequest::Completion(r) => &r.model,
            ParsedRequest::Embedding(r) => &r.model,
            ParsedRequest::Agent(r) => &r.model,
        }
    }

    pub fn is_stream(&self) -> bool {
        match self {
            ParsedRequest::Chat(r) => r.is_stream(),
            ParsedRequest::Completion(r) => r.is_stream(),
            ParsedRequest::Embedding(_) => false,
            ParsedRequest::Agent(r) => r.stream,
        }
    }
}

pub fn run(api: Api, body: &Bytes) -> Result<ParsedRequest, GatewayError> {
    if body.is_empty() {
        return Err(GatewayError::InvalidBody {
            message: "the request body is empty; send a JSON object".into(),
            param: None,
        });
    }
    // Read from the body itself: what the request keeps of it in bulk (a chat's messages) stays
    // a slice of it, so the parsed request costs little beyond the body the request holds anyway.
    let parsed = match api {
        Api::ChatCompletions => ChatCompletionRequest::from_body(body).map(ParsedRequest::Chat),
        Api::Completions => CompletionRequest::from_body(body).map(ParsedRequest::Completion),
        Api::Embeddings => EmbeddingRequest::from_body(body).map(ParsedRequest::Embedding),
        Api::Responses => AgentRequest::from_body(Dialect::Responses, body).map(ParsedRequest::Agent),
        Api::Messages => AgentRequest::from_body(Dialect::Messages, body).map(ParsedRequest::Agent),
    }
    .map_err(|e| match e {
        BodyError::NotUtf8 { .. } => GatewayError::InvalidBody { message: e.to_string(), param: None },
        BodyError::Invalid(e) => {
            let message = e.to_string();
            GatewayError::InvalidBody { param: param_of(&message), message }
        }
    })?;
    if parsed.model().trim().is_empty() {
        return Err(GatewayError::InvalidBody {
            message: "model must not be empty".into(),
            param: Some("model".into()),
        });
    }
    Ok(parsed)
}

/// serde names the culprit in backticks ("missing field `model`"), and the message it is in if
/// it is in one ("missing field `role` in messages[2]"); OpenAI's `param` wants it
/// (`messages[2].role`).
fn param_of(message: &str) -> Option<String> {
    let rest = message.strip_prefix("missing field `")?;
    let (field, rest) = rest.split_once('`')?;
    let message_index = rest.strip_prefix(" in messages[").and_then(|r| r.split_once(']')).map(|(i, _)| i);
    Some(match message_index {
        Some(i) => format!("messages[{i}].{field}"),
        None => field.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(api: Api, body: &str) -> GatewayError {
        run(api, &Bytes::copy_from_slice(body.as_bytes())).unwrap_err()
    }

    #[test]
    fn malformed_json_and_missing_fields_are_400_with_param() {
        assert!(matches!(err(Api::ChatCompletions, "{nope"), GatewayError::InvalidBody { param: None, .. }));
        match err(Api::ChatCompletions, r#"{"model":"m"}"#) {
            GatewayError::InvalidBody { param, message } => {
                assert_eq!(param.as_deref(), Some("messages"));
                assert!(message.contains("messages"));
            }
            other => panic!("{other:?}"),
        }
        match err(Api::ChatCompletions, r#"{"model":"m","messages":[{"role":"user"},{"content":"x"}]}"#) {
            GatewayError::InvalidBody { param, message } => {
                assert_eq!(param.as_deref(), Some("messages[1].role"), "{message}");
                assert!(message.starts_with("missing field `role` in messages[1]"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(err(Api::Embeddings, ""), GatewayError::InvalidBody { .. }));
        assert!(matches!(err(Api::Completions, r#"{"model":" ","prompt":"x"}"#), GatewayError::InvalidBody { .. }));
        let latin1 = Bytes::from_static(b"{\"model\":\"m\",\"prompt\":\"caf\xe9\"}");
        match run(Api::Completions, &latin1).unwrap_err() {
            GatewayError::InvalidBody { message, param: None } => {
                assert!(message.contains("UTF-8 (at byte 26)"), "{message}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn parses_each_api() {
        let chat =
            run(Api::ChatCompletions, &Bytes::from_static(br#"{"model":"m","messages":[],"stream":true}"#)).unwrap();
        assert!(chat.is_stream());
        let emb = run(Api::Embeddings, &Bytes::from_static(br#"{"model":"e","input":["a","b"]}"#)).unwrap();
        assert_eq!(emb.model(), "e");
        assert!(!emb.is_stream());
        let responses =
            run(Api::Responses, &Bytes::from_static(br#"{"model":"r","input":"hi","stream":true}"#)).unwrap();
        assert!(responses.is_stream());
        assert_eq!(responses.model(), "r");
        match err(Api::Messages, r#"{"model":"m","max_tokens":5}"#) {
            GatewayError::InvalidBody { param, .. } => assert_eq!(param.as_deref(), Some("messages")),
            other => panic!("{other:?}"),
        }
    }
}
