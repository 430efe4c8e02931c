//! Usage as the Responses and Messages APIs report it, read into the gateway's [`Usage`].
//!
//! Responses: `input_tokens` (the whole prompt), `input_tokens_details.cached_tokens`,
//! `output_tokens`. Messages: `input_tokens` counts only the prompt tokens that were neither
//! read from nor written to the prompt cache, so the prompt is `input_tokens +
//! cache_read_input_tokens + cache_creation_input_tokens`, of which `cache_read_input_tokens`
//! were cached.

use serde::Deserialize;

use super::Dialect;
use crate::response::Usage;

#[derive(Debug, Deserialize)]
pub(crate) struct ResponsesUsage {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
    #[serde(default)]
    input_tokens_details: Option<InputDetails>,
}

#[derive(Debug, Deserialize)]
struct InputDetails {
    #[serde(default)]
    cached_tokens: u64,
}

impl ResponsesUsage {
    pub(crate) fn into_usage(self) -> Usage {
        let cached = self.input_tokens_details.map_or(0, |d| d.cached_tokens);
        Usage::new(self.input_tokens, cached, self.output_tokens)
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct MessagesUsage {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    pub(crate) output_tokens: u64,
    #[serde(default)]
    pub(crate) cache_read_input_tokens: u64,
    #[serde(default)]
    cache_creation_input_tokens: u64,
}

impl MessagesUsage {
    /// The whole prompt, cached or not.
    pub(crate) fn prompt(&self) -> u64 {
        self.input_tokens.saturating_add(self.cache_read_input_tokens).saturating_add(self.cache_creation_input_tokens)
    }

    fn into_usage(self) -> Usage {
        Usage::new(self.prompt(), self.cache_read_input_tokens, self.output_tokens)
    }
}

#[derive(Deserialize)]
struct Envelope<U> {
    #[serde(default = "none")]
    usage: Option<U>,
}

fn none<U>() -> Option<U> {
    None
}

/// Usage from a whole (non-streamed) answer of `dialect`; `None` when it has none.
pub fn body_usage(dialect: Dialect, body: &[u8]) -> Option<Usage> {
    match dialect {
        Dialect::Responses => {
            serde_json::from_slice::<Envelope<ResponsesUsage>>(body).ok()?.usage.map(ResponsesUsage::into_usage)
        }
        Dialect::Messages => {
            serde_json::from_slice::<Envelope<MessagesUsage>>(body).ok()?.usage.map(MessagesUsage::into_usage)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_answers() {
        let responses = br#"{"id":"resp_1","object":"response","output":[{"type":"message","content":[{"type":"output_text","text":"hi","usage":"no"}]}],"usage":{"input_tokens":9,"input_tokens_details":{"cached_tokens":0},"output_tokens":3,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":12}}"#;
        assert_eq!(body_usage(Dialect::Responses, responses), Some(Usage::new(9, 0, 3)));
        let messages = br#"{"id":"msg_1","type":"message","content":[{"type":"text","text":"hi"}],"usage":{"input_tokens":4,"cache_read_input_tokens":6,"cache_creation_input_tokens":0,"output_tokens":2}}"#;
        assert_eq!(body_usage(Dialect::Messages, messages), Some(Usage::new(10, 6, 2)));
        assert_eq!(body_usage(Dialect::Messages, br#"{"id":"x"}"#), None);
        assert_eq!(body_usage(Dialect::Responses, b"nope"), None);
    }
}
