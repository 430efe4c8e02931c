//! What the gateway reads from a Responses or Messages request body.

use std::borrow::Cow;
use std::fmt;

use bytes::Bytes;
use serde::de::{self, Deserializer, IgnoredAny, SeqAccess, Visitor};
use serde::{Deserialize, de::Error as _};

use super::Dialect;
use crate::from_body::BodyError;

/// A Responses or Messages request as the gateway sees it. The body itself is forwarded as the
/// client sent it; `body` is the same bytes (a reference count, not a copy), kept for the
/// prompt's block hashes.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentRequest {
    pub dialect: Dialect,
    pub model: String,
    pub stream: bool,
    /// `max_output_tokens` (Responses) or `max_tokens` (Messages).
    pub output_limit: Option<u32>,
    pub temperature: Option<f64>,
    /// Responses' `user` (Messages has none at the top level).
    pub user: Option<String>,
    /// Responses: the input items (a string input is one); Messages: the messages.
    pub items: usize,
    /// Whether the request declares tools.
    pub has_tools: bool,
    /// Responses only: the stored response this request continues (`previous_response_id`).
    /// The gateway forwards it, and sends the request to the worker that holds that response.
    pub previous_response_id: Option<String>,
    /// Responses only: the worker is asked to store this response (`store` unset or `true`,
    /// OpenAI's default), so a later request may continue it.
    pub store: bool,
    pub body: Bytes,
}

/// The members the gateway reads; serde skips the rest without building them.
#[derive(Deserialize)]
struct Probe<'a> {
    #[serde(borrow)]
    model: Cow<'a, str>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    max_output_tokens: Option<u32>,
    #[serde(default)]
    max_tokens: Option<u32>,
    #[serde(default)]
    temperature: Option<f64>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    input: Option<ItemCount>,
    #[serde(default)]
    messages: Option<ItemCount>,
    #[serde(default)]
    tools: Option<ItemCount>,
    #[serde(default, borrow)]
    previous_response_id: Option<Cow<'a, str>>,
    #[serde(default)]
    store: Option<bool>,
}

/// How many items a member holds: a string is one, a list its length, without building either.
struct ItemCount(usize);

impl<'de> Deserialize<'de> for ItemCount {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Count;
        impl<'de> Visitor<'de> for Count {
            type Value = ItemCount;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a list")
            }

            fn visit_str<E: de::Error>(self, _: &str) -> Result<ItemCount, E> {
                Ok(ItemCount(1))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ItemCount, A::Error> {
                let mut n = 0;
                while seq.next_element::<IgnoredAny>()?.is_some() {
                    n += 1;
                }
                Ok(ItemCount(n))
            }
        }
        deserializer.deserialize_any(Count)
    }
}

impl AgentRequest {
    /// Reads a request of `dialect` from its body.
    pub fn from_body(dialect: Dialect, body: &Bytes) -> Result<Self, BodyError> {
        let text = std::str::from_utf8(body).map_err(|e| BodyError::NotUtf8 { valid_up_to: e.valid_up_to() })?;
        let probe: Probe<'_> = serde_json::from_str(text)?;
        let (output_limit, items) = match dialect {
            Dialect::Responses => (probe.max_output_tokens, probe.input.map_or(0, |i| i.0)),
            Dialect::Messages => {
                // The one member the gateway needs that the Messages API requires: the prompt.
                let messages = probe.messages.ok_or_else(|| serde_json::Error::missing_field("messages"))?;
                (probe.max_tokens, messages.0)
            }
        };
        let responses = dialect == Dialect::Responses;
        Ok(AgentRequest {
            dialect,
            model: probe.model.into_owned(),
            stream: probe.stream.unwrap_or(false),
            output_limit,
            temperature: probe.temperature,
            user: probe.user,
            items,
            has_tools: probe.tools.is_some_and(|t| t.0 > 0),
            previous_response_id: probe.previous_response_id.filter(|_| responses).map(Cow::into_owned),
            store: responses && probe.store.unwrap_or(true),
            body: body.clone(),
        })
    }

    /// Whether the request leans on state the worker keeps: it continues a stored response or
    /// asks for this one to be stored (Responses only).
    pub fn uses_stored_state(&self) -> bool {
        self.previous_response_id.is_some() || self.store
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(dialect: Dialect, body: &str) -> Result<AgentRequest, BodyError> {
        AgentRequest::from_body(dialect, &Bytes::copy_from_slice(body.as_bytes()))
    }

    #[test]
    fn responses_requests() {
        let r = read(
            Dialect::Responses,
            r#"{"model":"m","input":"hi","stream":true,"max_output_tokens":20,"tools":[{"type":"function"}],"store":false}"#,
        )
        .unwrap();
        assert_eq!((r.model.as_str(), r.stream, r.output_limit, r.items, r.has_tools), ("m", true, Some(20), 1, true));
        assert!(!r.uses_stored_state());
        assert_eq!((r.previous_response_id.as_deref(), r.store), (None, false));
        let r = read(
            Dialect::Responses,
            r#"{"model":"m","input":[{"role":"user","content":[{"type":"input_text","text":"a"}]},{"role":"user","content":"b"}],"previous_response_id":"resp_1","max_tokens":5}"#,
        )
        .unwrap();
        assert_eq!((r.items, r.output_limit, r.stream, r.has_tools), (2, None, false, false));
        assert!(r.uses_stored_state());
        assert_eq!((r.previous_response_id.as_deref(), r.store), (Some("resp_1"), true));
        // An id with escapes is read whole; `null` is no id.
        let r = read(Dialect::Responses, r#"{"model":"m","previous_response_id":"resp_\u0031","store":true}"#).unwrap();
        assert_eq!(r.previous_response_id.as_deref(), Some("resp_1"));
        let r = read(Dialect::Responses, r#"{"model":"m","previous_response_id":null}"#).unwrap();
        assert_eq!((r.previous_response_id, r.store), (None, true));
        assert!(read(Dialect::Responses, r#"{"model":"m","previous_response_id":7}"#).is_err());
    }

    #[test]
    fn messages_requests() {
        let r = read(
            Dialect::Messages,
            r#"{"model":"m","max_tokens":64,"system":"be brief","messages":[{"role":"user","content":"hi"}],"stream":true}"#,
        )
        .unwrap();
        assert_eq!((r.output_limit, r.items, r.stream, r.uses_stored_state()), (Some(64), 1, true, false));
        let missing = read(Dialect::Messages, r#"{"model":"m","max_tokens":1}"#).unwrap_err();
        assert!(missing.to_string().contains("missing field `messages`"), "{missing}");
    }

    #[test]
    fn bad_bodies_are_errors_naming_the_member() {
        assert!(read(Dialect::Responses, r#"{"input":"x"}"#).unwrap_err().to_string().contains("`model`"));
        assert!(read(Dialect::Messages, "{nope").is_err());
        assert!(read(Dialect::Responses, r#"{"model":"m","max_output_tokens":-1}"#).is_err());
        assert!(read(Dialect::Responses, r#"{"model":"m","input":5}"#).is_err());
        assert!(matches!(
            AgentRequest::from_body(Dialect::Messages, &Bytes::from_static(b"{\"model\":\"\xff\"}")),
            Err(BodyError::NotUtf8 { .. })
        ));
    }
}
