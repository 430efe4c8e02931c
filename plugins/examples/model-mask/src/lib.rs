//! `model-mask`: clients see public model names, not the names the workers serve.
//!
//! Workers put the model they serve in every answer (`"model": "llama-3.1-8b-instruct"`). This
//! plugin's on-response-chunk hook rewrites that member, in each streamed event and in whole
//! answers, to the public name its config gives; models without one pass unchanged.
//!
//! It runs once per token, so it does not parse the JSON: it finds the first `"model"` member
//! that is not inside a string and rewrites its value in place.
//!
//! Binding config:
//!
//! ```json
//! {"names": {"llama-3.1-8b-instruct": "fast", "llama-3.1-70b-instruct": "smart"}}
//! ```

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::Deserialize;
#[cfg(target_arch = "wasm32")]
use sluice_sdk::export_plugin;
use sluice_sdk::types::{ChunkDecision, RequestInfo, ResponseChunk};
use sluice_sdk::{Plugin, config, log};

/// The binding's config.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Served model → the name clients see.
    pub names: BTreeMap<String, String>,
}

impl Config {
    pub fn from_json(json: &str) -> Result<Config, String> {
        serde_json::from_str(json).map_err(|e| format!("model-mask: invalid binding config: {e}"))
    }
}

/// The chunk with its model renamed, or `None` when it names no model with a public name.
pub fn mask(config: &Config, data: &str) -> Option<String> {
    let (start, end) = model_value(data)?;
    let public = config.names.get(&data[start..end])?;
    // A public name is written as a JSON string; serde escapes whatever needs it.
    let quoted = serde_json::to_string(public).ok()?;
    let mut out = String::with_capacity(data.len() + quoted.len());
    out.push_str(&data[..start - 1]);
    out.push_str(&quoted);
    out.push_str(&data[end + 1..]);
    Some(out)
}

/// The byte range of the first `"model"` member's string value (inside its quotes), skipping
/// occurrences inside other strings. Values with escapes are left alone: no model name has one.
fn model_value(data: &str) -> Option<(usize, usize)> {
    let bytes = data.as_bytes();
    let mut in_string = false;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if in_string => i += 1,
            b'"' if in_string => in_string = false,
            b'"' if bytes[i..].starts_with(b"\"model\"") => {
                let mut j = i + b"\"model\"".len();
                while bytes.get(j).is_some_and(u8::is_ascii_whitespace) {
                    j += 1;
                }
                if bytes.get(j) == Some(&b':') {
                    j += 1;
                    while bytes.get(j).is_some_and(u8::is_ascii_whitespace) {
                        j += 1;
                    }
                    if bytes.get(j) != Some(&b'"') {
                        return None;
                    }
                    let start = j + 1;
                    let len = bytes[start..].iter().position(|&b| b == b'"' || b == b'\\')?;
                    return (bytes[start + len] == b'"').then_some((start, start + len));
                }
                // `"model"` as a value, not a key: step over the string.
                i = j;
                continue;
            }
            b'"' => in_string = true,
            _ => {}
        }
        i += 1;
    }
    None
}

/// Parsed once per instance (an instance belongs to one binding); a bad config is logged once
/// per instance and masks nothing.
fn binding_config() -> Option<&'static Config> {
    static CONFIG: OnceLock<Option<Config>> = OnceLock::new();
    CONFIG.get_or_init(|| Config::from_json(&config::binding()).inspect_err(|e| log::error(e)).ok()).as_ref()
}

pub struct ModelMask;

impl Plugin for ModelMask {
    fn on_response_chunk(_request: RequestInfo, chunk: ResponseChunk) -> ChunkDecision {
        match binding_config().and_then(|config| mask(config, &chunk.data)) {
            Some(masked) => ChunkDecision::Replace(masked),
            None => ChunkDecision::Forward,
        }
    }
}

#[cfg(target_arch = "wasm32")]
export_plugin!(ModelMask => [on_response_chunk]);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use super::*;

    fn config() -> Config {
        Config::from_json(r#"{"names": {"llama-3.1-8b-instruct": "fast", "odd": "a \"quoted\" name"}}"#).unwrap()
    }

    #[test]
    fn renames_the_model_of_events_and_bodies() {
        let event = r#"{"id":"c","object":"chat.completion.chunk","model":"llama-3.1-8b-instruct","choices":[]}"#;
        assert_eq!(
            mask(&config(), event).unwrap(),
            r#"{"id":"c","object":"chat.completion.chunk","model":"fast","choices":[]}"#
        );
        let spaced = r#"{"id": "c", "model" : "llama-3.1-8b-instruct", "choices": []}"#;
        assert_eq!(mask(&config(), spaced).unwrap(), r#"{"id": "c", "model" : "fast", "choices": []}"#);
    }

    #[test]
    fn public_names_are_escaped() {
        let event = r#"{"model":"odd"}"#;
        assert_eq!(mask(&config(), event).unwrap(), r#"{"model":"a \"quoted\" name"}"#);
    }

    #[test]
    fn leaves_other_models_and_lookalikes_alone() {
        assert_eq!(mask(&config(), r#"{"model":"qwen3-32b"}"#), None);
        assert_eq!(mask(&config(), r#"{"choices":[]}"#), None);
        // "model" inside content is text, not the member.
        let text = r#"{"choices":[{"delta":{"content":"the \"model\":\"llama-3.1-8b-instruct\" field"}}],"model":"x"}"#;
        assert_eq!(mask(&config(), text), None);
        // "model" as a value.
        assert_eq!(
            mask(&config(), r#"{"kind":"model","model":"llama-3.1-8b-instruct"}"#).unwrap(),
            r#"{"kind":"model","model":"fast"}"#
        );
        assert_eq!(mask(&config(), r#"{"model":null}"#), None);
        assert_eq!(mask(&config(), r#"{"model":"llama"#), None, "truncated");
    }

    #[test]
    fn bad_configs_are_explained() {
        let e = Config::from_json(r#"{"name": {}}"#).unwrap_err();
        assert!(e.contains("unknown field `name`"), "{e}");
    }
}
