//! The data behind the `headers` and `body` resources: handed to a hook by reference, copied
//! into the component only when it asks for a part of it.

use std::borrow::Cow;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, header};
use serde_json::{Map, Value};

/// The headers that carry a client's credentials: never shown to a plugin, which sees the key's
/// id instead (`request-info.key-id`).
const CREDENTIALS: [HeaderName; 2] = [header::AUTHORIZATION, HeaderName::from_static("x-api-key")];

/// Headers a hook may read. The host lends the request's own map, shared rather than copied,
/// and withholds the credentials on every read, so no embedder has to remember to strip them.
#[derive(Debug, Clone)]
pub struct HeadersResource(pub Arc<HeaderMap>);

impl HeadersResource {
    /// The values of `name` a plugin may see.
    pub fn get_all(&self, name: &str) -> impl Iterator<Item = &HeaderValue> {
        let shown = !CREDENTIALS.iter().any(|c| c.as_str().eq_ignore_ascii_case(name));
        self.0.get_all(name).iter().filter(move |_| shown)
    }

    /// The names a plugin may see, once each.
    pub fn names(&self) -> impl Iterator<Item = &HeaderName> {
        self.0.keys().filter(|k| !CREDENTIALS.contains(k))
    }
}

/// A request body a hook may read.
#[derive(Debug, Clone)]
pub struct BodyResource {
    pub bytes: Bytes,
    /// What the hooks of one request worked out from the body, shared by them.
    derived: Arc<Derived>,
}

#[derive(Debug, Default)]
struct Derived {
    prompt: OnceLock<String>,
    members: OnceLock<Option<Map<String, Value>>>,
}

impl BodyResource {
    pub fn new(bytes: Bytes) -> Self {
        BodyResource { bytes, derived: Arc::default() }
    }

    /// The JSON text of the top-level member `name`; the body is parsed on first use.
    pub fn field(&self, name: &str) -> Option<String> {
        let members = self.derived.members.get_or_init(|| serde_json::from_slice(&self.bytes).ok());
        members.as_ref()?.get(name).map(Value::to_string)
    }

    /// The prompt text, extracted on first use.
    pub fn prompt_text(&self) -> &str {
        self.derived.prompt.get_or_init(|| prompt_text(&self.bytes))
    }
}

/// The text of a chat's messages joined by newlines, or a completion's prompt, or an
/// embedding's input; for the Messages API its `system` prompt then its messages, for the
/// Responses API its `instructions` then its input (a string, or items whose `content` is text
/// or parts); empty when the body is not JSON of a known shape.
pub fn prompt_text(body: &[u8]) -> String {
    // Only the fields that hold text are deserialized (borrowed where unescaped); everything
    // else is skipped, which is several times cheaper than building a `serde_json::Value`.
    let Ok(shape) = serde_json::from_slice::<Shape<'_>>(body) else {
        return String::new();
    };
    let mut parts: Vec<&str> = Vec::new();
    for field in [&shape.system, &shape.instructions] {
        push_content(&mut parts, field.as_ref());
    }
    if let Some(messages) = &shape.messages {
        for message in messages {
            push_content(&mut parts, message.content.as_ref());
        }
    } else {
        for field in [&shape.prompt, &shape.input] {
            push_content(&mut parts, field.as_ref());
        }
    }
    parts.join("\n")
}

/// A string; parts with text (chat, Messages' blocks), or items holding content of their own
/// (Responses' input items, Messages' tool results), one level down; a list of strings.
fn push_content<'s>(parts: &mut Vec<&'s str>, content: Option<&'s Content<'_>>) {
    match content {
        Some(Content::Text(s)) => parts.push(s),
        Some(Content::Parts(items)) => {
            for item in items {
                if let Some(text) = item.text.as_deref() {
                    parts.push(text);
                }
                match item.content.as_deref() {
                    Some(Content::Text(s)) => parts.push(s),
                    Some(Content::Parts(inner)) => parts.extend(inner.iter().filter_map(|p| p.text.as_deref())),
                    _ => {}
                }
            }
        }
        Some(Content::Strings(items)) => parts.extend(items.iter().filter_map(|p| p.as_deref())),
        Some(Content::Other(_)) | None => {}
    }
}

#[derive(serde::Deserialize)]
struct Shape<'a> {
    #[serde(borrow)]
    messages: Option<Vec<Message<'a>>>,
    #[serde(borrow)]
    prompt: Option<Content<'a>>,
    #[serde(borrow)]
    input: Option<Content<'a>>,
    /// The Messages API's system prompt (a string or text blocks).
    #[serde(borrow)]
    system: Option<Content<'a>>,
    /// The Responses API's system prompt.
    #[serde(borrow)]
    instructions: Option<Content<'a>>,
}

#[derive(serde::Deserialize)]
struct Message<'a> {
    #[serde(borrow)]
    content: Option<Content<'a>>,
}

/// A string, a list of content parts (chat), a list of strings (completions, embeddings), or
/// anything else (token ids, null), which holds no text.
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum Content<'a> {
    #[serde(borrow)]
    Text(Cow<'a, str>),
    #[serde(borrow)]
    Parts(Vec<Part<'a>>),
    #[serde(borrow)]
    Strings(Vec<Option<Cow<'a, str>>>),
    Other(serde::de::IgnoredAny),
}

#[derive(serde::Deserialize)]
struct Part<'a> {
    #[serde(borrow)]
    text: Option<Cow<'a, str>>,
    #[serde(borrow)]
    content: Option<Box<Content<'a>>>,
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
        let messages = br#"{"model":"m","max_tokens":9,"system":[{"type":"text","text":"sys"}],"messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"tool_result","tool_use_id":"t","content":"b"}]}]}"#;
        assert_eq!(prompt_text(messages), "sys\na\nb");
        let responses = br#"{"model":"m","instructions":"be brief","input":[{"role":"user","content":[{"type":"input_text","text":"x"}]},{"role":"user","content":"y"}]}"#;
        assert_eq!(prompt_text(responses), "be brief\nx\ny");
        assert_eq!(prompt_text(br#"{"model":"m","input":"z"}"#), "z");
        assert_eq!(prompt_text(br#"{"prompt":[1,2,3]}"#), "", "token ids hold no text");
        assert_eq!(
            prompt_text(br#"{"messages":[{"role":"user","content":"line\nbreak \u00e9"}],"n":1}"#),
            "line\nbreak é"
        );
        assert_eq!(prompt_text(br#"{"messages":[{"role":"assistant","content":null,"tool_calls":[]}]}"#), "");
    }
}
