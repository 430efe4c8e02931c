//! The data behind the `headers` and `body` resources: handed to a hook by reference, copied
//! into the component only when it asks for a part of it.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use http::HeaderMap;

/// Headers a hook may read.
#[derive(Debug, Clone)]
pub struct HeadersResource(pub Arc<HeaderMap>);

/// A request body a hook may read.
#[derive(Debug, Clone)]
pub struct BodyResource {
    pub bytes: Bytes,
    prompt: Arc<OnceLock<String>>,
}

impl BodyResource {
    pub fn new(bytes: Bytes) -> Self {
        BodyResource { bytes, prompt: Arc::new(OnceLock::new()) }
    }

    /// The prompt text, extracted on first use (and shared by the hooks of one request).
    pub fn prompt_text(&self) -> &str {
        self.prompt.get_or_init(|| prompt_text(&self.bytes))
    }
}

/// The text of a chat's messages joined by newlines, or a completion's prompt, or an
/// embedding's input; empty when the body is not JSON of a known shape.
pub fn prompt_text(body: &[u8]) -> String {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
        return String::new();
    };
    let mut parts: Vec<&str> = Vec::new();
    if let Some(messages) = value.get("messages").and_then(|m| m.as_array()) {
        for message in messages {
            match message.get("content") {
                Some(serde_json::Value::String(s)) => parts.push(s),
                Some(serde_json::Value::Array(items)) => {
                    parts.extend(items.iter().filter_map(|p| p.get("text").and_then(|t| t.as_str())));
                }
                _ => {}
            }
        }
    } else {
        for field in ["prompt", "input"] {
            match value.get(field) {
                Some(serde_json::Value::String(s)) => parts.push(s),
                Some(serde_json::Value::Array(items)) => parts.extend(items.iter().filter_map(|p| p.as_str())),
                _ => {}
            }
        }
    }
    parts.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_text_of_each_shape() {
        let chat = br#"{"messages":[{"role":"system","content":"be brief"},{"role":"user","content":[{"type":"text","text":"hi"},{"type":"image_url"}]}]}"#;
        assert_eq!(prompt_text(chat), "be brief\nhi");
        assert_eq!(prompt_text(br#"{"prompt":["a","b"]}"#), "a\nb");
        assert_eq!(prompt_text(br#"{"input":"x"}"#), "x");
        assert_eq!(prompt_text(b"not json"), "");
    }
}
