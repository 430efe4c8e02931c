//! Reading just enough of a response to measure it, without holding or rebuilding it.

use std::borrow::Cow;
use std::sync::LazyLock;

use memchr::memmem::{Finder, FinderRev};

use serde::Deserialize;
use serde::de::IgnoredAny;

use crate::response::{PromptTokensDetails, Usage};

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

/// Where the last `"usage"` in `body` starts.
fn last_usage_key(body: &[u8]) -> Option<usize> {
    static FORWARD: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(USAGE_KEY));
    static BACKWARD: LazyLock<FinderRev<'static>> = LazyLock::new(|| FinderRev::new(USAGE_KEY));
    // The key is usually within the last few hundred bytes, and the forward search is vectorised
    // where the reverse one is not: search the tail forwards first.
    let start = body.len().saturating_sub(512);
    if let Some(at) = FORWARD.find_iter(&body[start..]).last() {
        return Some(start + at);
    }
    // The rest, including a key that starts before the tail and ends inside it.
    let end = (start + USAGE_KEY.len() - 1).min(body.len());
    if start == 0 { None } else { BACKWARD.rfind(&body[..end]) }
}

const USAGE_KEY: &[u8] = b"\"usage\"";

fn usage_near_end(body: &[u8]) -> Tail {
    let Some(at) = last_usage_key(body) else { return Tail::Absent };
    // An escaped quote would make this the inside of some other string.
    let backslashes = body[..at].iter().rev().take_while(|&&b| b == b'\\').count();
    if backslashes % 2 == 1 {
        return Tail::Unsure;
    }
    let rest = skip_whitespace(&body[at + USAGE_KEY.len()..]);
    let Some(value) = rest.strip_prefix(b":") else { return Tail::Unsure };
    let Some((usage, used)) = scan_usage(value) else { return Tail::Unsure };
    if closes_top_level(&value[used..]) { Tail::Found(usage) } else { Tail::Unsure }
}

/// Reads `usage` in the shape workers give it, an object of unsigned integers and of objects of
/// unsigned integers (`prompt_tokens_details`, `completion_tokens_details`), or `null`; returns it
/// with the number of bytes read. Anything else, including what serde would refuse (a duplicate
/// member, a missing `prompt_tokens`), is `None` and the caller parses the whole body with serde,
/// so the result never differs from serde's. serde would spend most of its time here checking
/// member names for UTF-8, and this runs for every request.
fn scan_usage(bytes: &[u8]) -> Option<(Option<Usage>, usize)> {
    let mut scan = Scan { bytes, at: 0 };
    if scan.null() {
        return Some((None, scan.at));
    }
    let (mut prompt, mut completion, mut total) = (None, None, None);
    let mut details: Option<Option<PromptTokensDetails>> = None;
    scan.object(|scan, name| {
        let count = match name {
            b"prompt_tokens" => &mut prompt,
            b"completion_tokens" => &mut completion,
            b"total_tokens" => &mut total,
            b"prompt_tokens_details" if details.is_none() => {
                details = Some(if scan.null() { None } else { Some(scan_prompt_details(scan)?) });
                return Some(());
            }
            b"prompt_tokens_details" => return None,
            _ => return scan.skip_counts(),
        };
        if count.is_some() {
            return None;
        }
        *count = Some(scan.number()?);
        Some(())
    })?;
    let usage = Usage {
        prompt_tokens: prompt?,
        completion_tokens: completion.unwrap_or(0),
        total_tokens: total.unwrap_or(0),
        prompt_tokens_details: details.flatten(),
    };
    Some((Some(usage), scan.at))
}

fn scan_prompt_details(scan: &mut Scan<'_>) -> Option<PromptTokensDetails> {
    let mut cached = None;
    scan.object(|scan, name| match name {
        b"cached_tokens" if cached.is_none() => {
            cached = Some(scan.number()?);
            Some(())
        }
        b"cached_tokens" => None,
        _ => scan.skip_counts(),
    })?;
    Some(PromptTokensDetails { cached_tokens: cached.unwrap_or(0) })
}

/// A cursor over JSON that understands only what [`scan_usage`] needs.
struct Scan<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Scan<'a> {
    fn skip_whitespace(&mut self) {
        while matches!(self.bytes.get(self.at), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    fn eat(&mut self, byte: u8) -> bool {
        self.skip_whitespace();
        let found = self.bytes.get(self.at) == Some(&byte);
        self.at += usize::from(found);
        found
    }

    fn null(&mut self) -> bool {
        self.skip_whitespace();
        let found = self.bytes[self.at..].starts_with(b"null");
        self.at += if found { 4 } else { 0 };
        found
    }

    /// An unsigned integer as JSON writes it (no leading zeros, no fraction or exponent).
    fn number(&mut self) -> Option<u64> {
        self.skip_whitespace();
        let digits = self.bytes[self.at..].iter().take_while(|b| b.is_ascii_digit()).count();
        let text = &self.bytes[self.at..self.at + digits];
        let after = self.bytes.get(self.at + digits);
        if digits == 0 || (digits > 1 && text[0] == b'0') || matches!(after, Some(b'.' | b'e' | b'E')) {
            return None;
        }
        self.at += digits;
        text.iter().try_fold(0u64, |n, &d| n.checked_mul(10)?.checked_add(u64::from(d - b'0')))
    }

    fn skip_count(&mut self) -> Option<()> {
        if self.null() { Some(()) } else { self.number().map(drop) }
    }

    /// A member serde would ignore: a count, `null`, or an object of those (one level deep, so
    /// a hostile body cannot recurse deeply here).
    fn skip_counts(&mut self) -> Option<()> {
        self.skip_whitespace();
        if self.bytes.get(self.at) == Some(&b'{') {
            return self.object(|scan, _| scan.skip_count());
        }
        self.skip_count()
    }

    /// `{ "name": value, ... }`, with `member` reading each value. Names with escapes are
    /// refused rather than decoded.
    fn object(&mut self, mut member: impl FnMut(&mut Self, &'a [u8]) -> Option<()>) -> Option<()> {
        if !self.eat(b'{') {
            return None;
        }
        if self.eat(b'}') {
            return Some(());
        }
        loop {
            if !self.eat(b'"') {
                return None;
            }
            // Names are a few bytes long: a plain loop beats memchr's setup.
            let len = self.bytes[self.at..].iter().position(|&b| b == b'"' || b == b'\\')?;
            let name = &self.bytes[self.at..self.at + len];
            if self.bytes[self.at + len] == b'\\' {
                return None;
            }
            self.at += len + 1;
            if !self.eat(b':') {
                return None;
            }
            member(self, name)?;
            if !self.eat(b',') {
                return self.eat(b'}').then_some(());
            }
        }
    }
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
            // What vLLM and OpenAI attach: details objects, nulls, members serde ignores.
            r#"{"usage":{"prompt_tokens":9,"total_tokens":12,"completion_tokens":3,"prompt_tokens_details":{"cached_tokens":4,"audio_tokens":null},"completion_tokens_details":{"reasoning_tokens":0}}}"#.to_owned(),
            r#"{"usage":{"prompt_tokens":9,"prompt_tokens_details":null,"completion_tokens":3}}"#.to_owned(),
            r#"{"usage":{"prompt_tokens":9,"prompt_tokens_details":{}}}"#.to_owned(),
            r#"{"usage":{"prompt_tokens":0,"completion_tokens":18446744073709551615}}"#.to_owned(),
            // Shapes the scan leaves to serde, which agrees or refuses.
            r#"{"usage":{"prompt_tokens":18446744073709551616}}"#.to_owned(),
            r#"{"usage":{"prompt_tokens":1.0}}"#.to_owned(),
            r#"{"usage":{"prompt_tokens":-1}}"#.to_owned(),
            r#"{"usage":{"prompt_tokens":01}}"#.to_owned(),
            r#"{"usage":{"prompt_tokens":1e3}}"#.to_owned(),
            r#"{"usage":{"prompt_tokens":1,"prompt_tokens":2}}"#.to_owned(),
            r#"{"usage":{"completion_tokens":2}}"#.to_owned(),
            r#"{"usage":{"prompt_tokens":1,"prompt_tokens_details":{"cached_tokens":1,"cached_tokens":1}}}"#.to_owned(),
            r#"{"usage":{"prompt_tokens":1,"model":"m","extra":{"a":{"b":1}},"flag":true}}"#.to_owned(),
            r#"{"usage":{"prompt\u005ftokens":1}}"#.to_owned(),
            r#"{"usage":{"prompt_tokens":1,}}"#.to_owned(),
            r#"{"usage":{"prompt_tokens":1}"#.to_owned(),
            r#"{"usage":{"prompt_tokens":1} , "x": [ ] }"#.to_owned(),
            r#"{"usage":nul}"#.to_owned(),
            r#"{"usage":"#.to_owned(),
        ];
        // Long bodies: the key far from the end, and across every point where the tail the probe
        // searches first begins.
        let pad = "x".repeat(600);
        let mut bodies = bodies.to_vec();
        bodies.push(format!(r#"{{"usage":{usage},"choices":[{{"text":"{pad}"}}]}}"#));
        bodies.push(format!(r#"{{"choices":[{{"text":"{pad}"}}],"usage":{usage}}}"#));
        bodies.push(format!(r#"{{"choices":[{{"text":"{pad} \"usage\":"}}],"usage":{usage}}}"#));
        for from_end in 500..=520 {
            let around = r#""usage":"#.len() + usage.len() + r#","z":""}"#.len();
            let filler = "y".repeat(from_end - around);
            let body = format!(r#"{{"choices":[{{"text":"{pad}"}}],"usage":{usage},"z":"{filler}"}}"#);
            assert_eq!(body.len() - body.rfind(r#""usage""#).unwrap(), from_end);
            bodies.push(body);
        }
        for body in &bodies {
            let fast = body_usage(body.as_bytes()).map(|u| (u.prompt_tokens, u.completion_tokens));
            assert_eq!(fast, parsed(body), "{body}");
        }
        for body in bodies[..3].iter().chain(&bodies[10..14]) {
            assert!(matches!(usage_near_end(body.as_bytes()), Tail::Found(Some(_))), "parsed from the end: {body}");
        }
        assert_eq!(body_usage(bodies[3].as_bytes()).map(|u| u.prompt_tokens), Some(5));
        assert!(body_usage(bodies[4].as_bytes()).is_none());
    }

    /// Usage objects assembled from members, values and separators the scan accepts, refuses or
    /// must stop at, in every order: the probe and serde agree on each.
    #[test]
    fn body_usage_agrees_with_a_full_parse_on_assembled_usage() {
        let members = [
            r#""prompt_tokens":7"#,
            r#""prompt_tokens":0"#,
            r#""completion_tokens":3"#,
            r#""total_tokens":10"#,
            r#""prompt_tokens_details":{"cached_tokens":2}"#,
            r#""prompt_tokens_details":null"#,
            r#""prompt_tokens_details":{"cached_tokens":null}"#,
            r#""completion_tokens_details":{"reasoning_tokens":1,"x":null}"#,
            r#""completion_tokens_details":{"deep":{"a":1}}"#,
            r#""prompt_tokens":7.5"#,
            r#""prompt_tokens":"7""#,
            r#""note":"usage""#,
            r#""x":[1]"#,
            r#""x":true"#,
        ];
        let mut scanned = 0;
        let mut next = crate::draws(0x2545_f491_4f6c_dd1du64);
        for _ in 0..5_000 {
            let picked: Vec<&str> = (0..next(5)).map(|_| members[next(members.len())]).collect();
            let separator = [",", " , ", ",\n  "][next(3)];
            let body = format!(r#"{{"choices":[],"usage": {{{}}} }}"#, picked.join(separator));
            let fast = body_usage(body.as_bytes());
            let full = serde_json::from_slice::<UsageProbe>(body.as_bytes()).ok().and_then(|p| p.usage);
            assert_eq!(fast, full, "{body}");
            scanned += usize::from(matches!(usage_near_end(body.as_bytes()), Tail::Found(_)));
        }
        // Most draws repeat a member or hold one the scan refuses; enough do not.
        assert!(scanned > 200, "the scan itself answered only {scanned} of 5000");
    }
}
