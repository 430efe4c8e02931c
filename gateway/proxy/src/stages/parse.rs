//! The request body → a typed request. Unknown fields are kept for the upstream.

use bytes::Bytes;
use sluice_metrics::Api;
use sluice_openai::{ChatCompletionRequest, CompletionRequest, EmbeddingRequest};

use crate::error::GatewayError;

#[derive(Debug, Clone)]
pub enum ParsedRequest {
    Chat(ChatCompletionRequest),
    Completion(CompletionRequest),
    Embedding(EmbeddingRequest),
}

impl ParsedRequest {
    pub fn model(&self) -> &str {
        match self {
            ParsedRequest::Chat(r) => &r.model,
            ParsedRequest::Completion(r) => &r.model,
            ParsedRequest::Embedding(r) => &r.model,
        }
    }

    pub fn is_stream(&self) -> bool {
        match self {
            ParsedRequest::Chat(r) => r.is_stream(),
            ParsedRequest::Completion(r) => r.is_stream(),
            ParsedRequest::Embedding(_) => false,
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
    // JSON is UTF-8 (RFC 8259). Checking the whole body at once lets the parser skip checking
    // each string it meets, which it would otherwise do string by string.
    let text = std::str::from_utf8(body).map_err(|e| GatewayError::InvalidBody {
        message: format!("the request body is not valid UTF-8 (at byte {})", e.valid_up_to()),
        param: None,
    })?;
    let parsed = match api {
        Api::ChatCompletions => serde_json::from_str(text).map(ParsedRequest::Chat),
        Api::Completions => serde_json::from_str(text).map(ParsedRequest::Completion),
        Api::Embeddings => serde_json::from_str(text).map(ParsedRequest::Embedding),
    }
    .map_err(|e| {
        let message = e.to_string();
        GatewayError::InvalidBody { param: param_of(&message), message }
    })?;
    if parsed.model().trim().is_empty() {
        return Err(GatewayError::InvalidBody {
            message: "model must not be empty".into(),
            param: Some("model".into()),
        });
    }
    Ok(parsed)
}

/// serde names the culprit in backticks ("missing field `model`"); OpenAI's `param` wants it.
fn param_of(message: &str) -> Option<String> {
    let rest = message.strip_prefix("missing field `")?;
    Some(rest[..rest.find('`')?].to_owned())
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
    }
}
