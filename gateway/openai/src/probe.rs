//! Reading just enough of a response to measure it, without holding or rebuilding it.

use std::borrow::Cow;
use std::sync::LazyLock;

use memchr::memmem::FinderRev;

use serde::Deserialize;
use serde::de::IgnoredAny;

use crate::response::Usage;

/// What the gateway learns from one streamed chunk (`data:` payload of an SSE event).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChunkFacts {
    /// The chunk carries generated output (content, reasoning, tool call or completion text).
    pub has_token: bool,
    /// The chunk has no choices: OpenAI's shape for the trailing usage-only chunk.
    pub choices_empty: bool,
    pub usage: Option<Usage>,
    /// The upstream reported an error inside the stream.
    pub is_error: bool,
}

#[derive(Deserialize)]
struct ChunkProbe<'a> {
    #[serde(default, borrow)]
    choices: Option<Vec<ChoiceProbe<'a>>>,
    #[serde(default)]
    usage: Option<Usage>,
    #[serde(default)]
    error: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct ChoiceProbe<'a> {
    #[serde(default, borrow)]
    delta: Option<DeltaProbe<'a>>,
    #[serde(default, borrow)]
    text: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct DeltaProbe<'a> {
    #[serde(default, borrow)]
    content: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    reasoning_content: Option<Cow<'a, str>>,
    #[serde(default)]
    tool_calls: Option<IgnoredAny>,
}

fn non_empty(s: &Option<Cow<'_, str>>) -> bool {
    s.as_deref().is_some_and(|s| !s.is_empty())
}

/// Probes a chunk. A payload that is not a JSON object yields `None`: the relay forwards it
/// untouched and simply learns nothing from it.
pub fn chunk_facts(data: &[u8]) -> Option<ChunkFacts> {
    let probe: ChunkProbe<'_> = serde_json::from_slice(data).ok()?;
    let choices = probe.choices.unwrap_or_default();
    let has_token = choices.iter().any(|c| {
        non_empty(&c.text)
            || c.delta
                .as_ref()
                .is_some_and(|d| non_empty(&d.content) || non_empty(&d.reasoning_content) || d.tool_calls.is_some())
    });
    Some(ChunkFacts {
        has_token,
        choices_empty: choices.is_empty(),
        usage: probe.usage,
        is_error: probe.error.is_some(),
    })
}

/// Removes the `usage` member from a chunk that also carries choices (some servers attach usage
/// to the last content chunk instead of sending a usage-only chunk). Returns `None` if the
/// payload is not a JSON object.
pub fn strip_usage(data: &[u8]) -> Option<Vec<u8>> {
    let mut value: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(data).ok()?;
    value.remove("usage");
    serde_json::to_vec(&value).ok()
}

#[derive(Deserialize)]
struct UsageProbe {
    #[serde(default)]
    usage: Option<Usage>,
}

/// Usage from a whole (non-streamed) response body.
///
/// Every request's body passes through here, and workers put `usage` after the choices, near the
/// end: so the probe parses from the last `"usage"` key and only checks that the rest of the body
/// closes the top-level object (a nested `usage` would leave an object open), instead of parsing
/// the whole body. Any other layout takes a full parse.
pub fn body_usage(body: &[u8]) -> Option<Usage> {
    match usage_near_end(body) {
        Tail::Found(usage) => usage,
        Tail::Absent => None,
        Tail::Unsure => serde_json::from_slice::<UsageProbe>(body).ok()?.usage,
    }
}

enum Tail {
    Found(Option<Usage>),
    /// No `"usage"` anywhere: no top-level member can have that name.
    Absent,
    Unsure,
}

fn usage_near_end(body: &[u8]) -> Tail {
    static KEY: LazyLock<FinderRev<'static>> = LazyLock::new(|| FinderRev::new(b"\"usage\""));
    let Some(at) = KEY.rfind(body) else { return Tail::Absent };
    // An escaped quote would make this the inside of some other string.
    let backslashes = body[..at].iter().rev().take_while(|&&b| b == b'\\').count();
    if backslashes % 2 == 1 {
        return Tail::Unsure;
    }
    let rest = skip_whitespace(&body[at + KEY.needle().len()..]);
    let Some(value) = rest.strip_prefix(b":") else { return Tail::Unsure };
    let mut values = serde_json::Deserializer::from_slice(value).into_iter::<Option<Usage>>();
    let Some(Ok(usage)) = values.next() else { return Tail::Unsure };
    if closes_top_level(&value[values.byte_offset()..]) { Tail::Found(usage) } else { Tail::Unsure }
}

fn skip_whitespace(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(bytes.len());
    &bytes[start..]
}

/// Whether `tail`, which follows a member's value, closes the object holding that member and
/// then ends: true only when the member is at the top level.
fn closes_top_level(tail: &[u8]) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for (i, &b) in tail.iter().enumerate() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => depth += 1,
            b'}' | b']' if depth == 0 => return skip_whitespace(&tail[i + 1..]).is_empty(),
            b'}' | b']' => depth -= 1,
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_only_chunk_has_no_token() {
        let f = chunk_facts(br#"{"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}"#).unwrap();
        assert!(!f.has_token);
        assert!(!f.choices_empty);
    }

    #[test]
    fn content_text_reasoning_and_tool_calls_are_tokens() {
        for data in [
            &br#"{"choices":[{"delta":{"content":"hi \u00e9"}}]}"#[..],
            br#"{"choices":[{"text":"x","index":0}]}"#,
            br#"{"choices":[{"delta":{"reasoning_content":"hm"}}]}"#,
            br#"{"choices":[{"delta":{"tool_calls":[{"index":0}]}}]}"#,
        ] {
            assert!(chunk_facts(data).unwrap().has_token, "{}", String::from_utf8_lossy(data));
        }
    }

    #[test]
    fn usage_only_chunk() {
        let f = chunk_facts(
            br#"{"choices":[],"usage":{"prompt_tokens":7,"completion_tokens":3,"total_tokens":10,"prompt_tokens_details":{"cached_tokens":4}}}"#,
        )
        .unwrap();
        assert!(f.choices_empty);
        let u = f.usage.unwrap();
        assert_eq!((u.prompt_tokens, u.completion_tokens, u.cached_tokens()), (7, 3, 4));
    }

    #[test]
    fn error_event_and_garbage() {
        assert!(chunk_facts(br#"{"error":{"message":"boom"}}"#).unwrap().is_error);
        assert!(chunk_facts(b"[DONE]").is_none());
        assert!(chunk_facts(b"not json").is_none());
    }

    #[test]
    fn strip_usage_keeps_everything_else() {
        let out =
            strip_usage(br#"{"id":"a","choices":[{"delta":{"content":"x"}}],"usage":{"prompt_tokens":1}}"#).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert!(v.get("usage").is_none());
        assert_eq!(v["id"], "a");
    }

    #[test]
    fn body_usage_reads_nested_usage() {
        let u = body_usage(
            br#"{"id":"x","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}}"#,
        )
        .unwrap();
        assert_eq!(u.prompt_tokens, 5);
        assert_eq!(u.cached_tokens(), 0);
        assert!(body_usage(b"{}").is_none());
    }

    /// What the whole-body parse finds, for comparison with the fast path.
    fn parsed(body: &str) -> Option<(u64, u64)> {
        let usage = serde_json::from_slice::<UsageProbe>(body.as_bytes()).ok()?.usage?;
        Some((usage.prompt_tokens, usage.completion_tokens))
    }

    #[test]
    fn body_usage_agrees_with_a_full_parse_whatever_the_layout() {
        let usage = r#"{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}"#;
        let bodies = [
            // OpenAI's and the simulator's layout: usage last.
            format!(r#"{{"id":"x","choices":[{{"message":{{"content":"hi"}}}}],"usage":{usage}}}"#),
            // vLLM's: members after usage.
            format!(r#"{{"choices":[],"usage":{usage},"prompt_logprobs":null,"kv_transfer_params":{{"a":[1,"}}"]}}}}"#),
            // Whitespace everywhere.
            format!("{{ \"choices\" : [] ,\n \"usage\" :\t{usage} \n}}\n"),
            // Usage first, then a nested usage-named member later on.
            format!(r#"{{"usage":{usage},"choices":[{{"usage":{{"prompt_tokens":99,"completion_tokens":99}}}}]}}"#),
            // Only a nested one: not the response's usage.
            format!(r#"{{"choices":[{{"usage":{usage}}}]}}"#),
            // The word inside a string, with escaped quotes.
            format!(r#"{{"choices":[{{"text":"say \"usage\": {{}}"}}],"usage":{usage}}}"#),
            format!(r#"{{"choices":[{{"text":"\"usage\":{usage}"}}]}}"#),
            r#"{"choices":[],"usage":null}"#.to_owned(),
            r#"{"choices":[]}"#.to_owned(),
            r#"{"choices":[],"usage":{"prompt_tokens":"many"}}"#.to_owned(),
        ];
        for body in &bodies {
            let fast = body_usage(body.as_bytes()).map(|u| (u.prompt_tokens, u.completion_tokens));
            assert_eq!(fast, parsed(body), "{body}");
        }
        for body in &bodies[..3] {
            assert!(matches!(usage_near_end(body.as_bytes()), Tail::Found(Some(_))), "parsed from the end: {body}");
        }
        assert_eq!(body_usage(bodies[3].as_bytes()).map(|u| u.prompt_tokens), Some(5));
        assert!(body_usage(bodies[4].as_bytes()).is_none());
    }
}
