//! Request bodies. Each struct names the fields Sluice reads or rewrites and keeps the rest in
//! `extra`, so unknown and vendor-specific fields (`top_k`, `guided_json`, …) reach the upstream
//! exactly as the client sent them; a chat's messages are kept as their text ([`Messages`]).
//! Serialisation is derived; parsing is written out, in [`crate::request_parse`], because every
//! request pays for it. A body held as `Bytes` is read with `from_body`, which keeps the
//! messages as a slice of it; `Deserialize` reads the same from any other input.

use bytes::Bytes;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::from_body::{self, BodyError};
use crate::messages::Messages;

/// `stream_options` on chat and completion requests.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StreamOptions {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub include_usage: Option<bool>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `POST /v1/chat/completions`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChatCompletionRequest {
    pub model: String,
    pub messages: Messages,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_completion_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One chat message, as [`Messages::iter`] reads it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChatMessage {
    pub role: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<MessageContent>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Message content is either a string or a list of typed parts (text, image_url, …).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum MessageContent {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ContentPart {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl MessageContent {
    /// The text a tokenizer would see; non-text parts contribute nothing.
    pub fn text(&self) -> impl Iterator<Item = &str> {
        let (single, parts) = match self {
            MessageContent::Text(t) => (Some(t.as_str()), &[][..]),
            MessageContent::Parts(p) => (None, p.as_slice()),
        };
        single.into_iter().chain(parts.iter().filter_map(|p| p.text.as_deref()))
    }
}

/// `POST /v1/completions`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CompletionRequest {
    pub model: String,
    pub prompt: Prompt,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A completion prompt: text, a batch of texts, token ids, or a batch of token-id lists.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Prompt {
    Text(String),
    Texts(Vec<String>),
    Tokens(Vec<u32>),
    TokenBatches(Vec<Vec<u32>>),
}

/// `POST /v1/embeddings`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EmbeddingRequest {
    pub model: String,
    pub input: EmbeddingInput,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encoding_format: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dimensions: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Embedding input has the same four shapes as a completion prompt.
pub type EmbeddingInput = Prompt;

impl EmbeddingRequest {
    /// Reads an embeddings request from its body.
    pub fn from_body(body: &Bytes) -> Result<Self, BodyError> {
        from_body::read(body)
    }
}

impl Prompt {
    /// Number of prompts in the request (a batch counts each member).
    pub fn len(&self) -> usize {
        match self {
            Prompt::Text(_) | Prompt::Tokens(_) => 1,
            Prompt::Texts(v) => v.len(),
            Prompt::TokenBatches(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        match self {
            Prompt::Text(t) => t.is_empty(),
            Prompt::Tokens(t) => t.is_empty(),
            Prompt::Texts(v) => v.is_empty(),
            Prompt::TokenBatches(v) => v.is_empty(),
        }
    }
}

impl ChatCompletionRequest {
    /// Reads a chat request from its body; the messages stay a slice of it.
    pub fn from_body(body: &Bytes) -> Result<Self, BodyError> {
        from_body::read(body)
    }

    pub fn is_stream(&self) -> bool {
        self.stream.unwrap_or(false)
    }

    /// Whether the client itself asked for the final usage chunk.
    pub fn wants_usage_chunk(&self) -> bool {
        self.stream_options.as_ref().and_then(|o| o.include_usage).unwrap_or(false)
    }

    /// The output limit the client set, under either of its names.
    pub fn output_limit(&self) -> Option<u32> {
        self.max_completion_tokens.or(self.max_tokens)
    }
}

impl CompletionRequest {
    /// Reads a completion request from its body.
    pub fn from_body(body: &Bytes) -> Result<Self, BodyError> {
        from_body::read(body)
    }

    pub fn is_stream(&self) -> bool {
        self.stream.unwrap_or(false)
    }

    pub fn wants_usage_chunk(&self) -> bool {
        self.stream_options.as_ref().and_then(|o| o.include_usage).unwrap_or(false)
    }
}

/// Sets `stream_options.include_usage = true`, keeping any other stream options.
pub fn force_include_usage(options: &mut Option<StreamOptions>) {
    options.get_or_insert_with(StreamOptions::default).include_usage = Some(true);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_fields_round_trip_untouched() {
        let body = json!({
            "model": "m",
            "messages": [{"role": "user", "content": "hi", "name": "bob"}],
            "top_k": 5,
            "guided_json": {"type": "object"},
            "stream": true,
            "stream_options": {"include_usage": false, "continuous_usage_stats": true}
        });
        let req: ChatCompletionRequest = serde_json::from_value(body.clone()).unwrap();
        assert_eq!(req.extra["top_k"], json!(5));
        assert!(req.is_stream());
        assert!(!req.wants_usage_chunk());
        assert_eq!(serde_json::to_value(&req).unwrap(), body);
    }

    #[test]
    fn numbers_in_unknown_fields_are_forwarded_exactly() {
        // Found by fuzz/request_body: without serde_json's exact float parsing, a number too large
        // for an integer came back one unit in the last place off when a streamed request was
        // re-serialised to ask for usage.
        let body = r#"{"model":"m","messages":[],"x":[15555555555555555555555,0.1,1e-7]}"#;
        let req: ChatCompletionRequest = serde_json::from_str(body).unwrap();
        let again: ChatCompletionRequest = serde_json::from_slice(&serde_json::to_vec(&req).unwrap()).unwrap();
        assert_eq!(req, again);
    }

    #[test]
    fn force_include_usage_keeps_other_options() {
        let mut req: ChatCompletionRequest = serde_json::from_value(json!({
            "model": "m", "messages": [],
            "stream_options": {"continuous_usage_stats": true}
        }))
        .unwrap();
        force_include_usage(&mut req.stream_options);
        let v = serde_json::to_value(&req).unwrap();
        assert_eq!(v["stream_options"], json!({"include_usage": true, "continuous_usage_stats": true}));
    }

    #[test]
    fn content_parts_expose_their_text() {
        let m: ChatMessage = serde_json::from_value(json!({
            "role": "user",
            "content": [{"type": "text", "text": "a"}, {"type": "image_url", "image_url": {"url": "x"}}, {"type": "text", "text": "b"}]
        }))
        .unwrap();
        let text: Vec<&str> = m.content.as_ref().unwrap().text().collect();
        assert_eq!(text, ["a", "b"]);
    }

    #[test]
    fn prompt_shapes_parse() {
        for (v, n) in [(json!("x"), 1), (json!(["a", "b"]), 2), (json!([1, 2, 3]), 1), (json!([[1], [2, 3]]), 2)] {
            let p: Prompt = serde_json::from_value(v).unwrap();
            assert_eq!(p.len(), n);
        }
    }

    #[test]
    fn missing_model_is_an_error_naming_the_field() {
        let err = serde_json::from_value::<ChatCompletionRequest>(json!({"messages": []})).unwrap_err();
        assert!(err.to_string().contains("model"), "{err}");
    }
}
