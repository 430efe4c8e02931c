//! A cached answer: what a worker said, kept in one shape whether it came whole or streamed,
//! and told again in whichever form the next client asks for.
//!
//! Only answers the cache can tell again faithfully are kept: text content (and vLLM's
//! reasoning text) per choice, each choice's role and finish reason, and the usage. An answer
//! with anything else in it — tool calls, log-probabilities, a refusal, an unfinished choice —
//! is served to its client as usual and not stored.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sluice_metrics::Api;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnswerKind {
    Chat,
    Completion,
    Embedding,
}

impl AnswerKind {
    /// `None` for the APIs whose answers the cache cannot tell again (Responses, Messages).
    pub fn of(api: Api) -> Option<Self> {
        match api {
            Api::ChatCompletions => Some(AnswerKind::Chat),
            Api::Completions => Some(AnswerKind::Completion),
            Api::Embeddings => Some(AnswerKind::Embedding),
            Api::Responses | Api::Messages => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CachedChoice {
    pub index: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// The text as it arrived: one piece per stream event, or one for a whole body, so that a
    /// streamed replay keeps the original's pacing in events.
    pub content: Pieces,
    #[serde(default, skip_serializing_if = "Pieces::is_empty")]
    pub reasoning: Pieces,
    pub finish_reason: Option<String>,
}

/// Text in pieces, held as one string and where each piece ends: a 256-token streamed answer is
/// two allocations rather than 256, so an entry's memory stays close to the bytes the cache
/// counts towards `max_bytes`. Serialised as a list of strings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pieces {
    text: String,
    ends: Vec<u32>,
}

impl Pieces {
    pub fn push(&mut self, piece: &str) {
        self.text.push_str(piece);
        self.ends.push(u32::try_from(self.text.len()).unwrap_or(u32::MAX));
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The pieces put together.
    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        let mut start = 0;
        self.ends.iter().map(move |&end| {
            let end = end as usize;
            // Every end is where a pushed `&str` ended: always a character boundary.
            let piece = self.text.get(start..end).unwrap_or_default();
            start = end;
            piece
        })
    }

    /// How many pieces.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    fn heap_bytes(&self) -> usize {
        self.text.capacity() + self.ends.capacity() * size_of::<u32>()
    }

    fn shrink_to_fit(&mut self) {
        self.text.shrink_to_fit();
        self.ends.shrink_to_fit();
    }
}

impl<'a> FromIterator<&'a str> for Pieces {
    fn from_iter<I: IntoIterator<Item = &'a str>>(iter: I) -> Self {
        let mut pieces = Pieces::default();
        for piece in iter {
            pieces.push(piece);
        }
        pieces
    }
}

impl Serialize for Pieces {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter())
    }
}

impl<'de> Deserialize<'de> for Pieces {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let pieces = Vec::<String>::deserialize(deserializer)?;
        Ok(pieces.iter().map(String::as_str).collect())
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenUsage {
    pub prompt: u64,
    pub completion: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CachedAnswer {
    pub kind: AnswerKind,
    pub model: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_fingerprint: Option<String>,
    #[serde(default)]
    pub choices: Vec<CachedChoice>,
    pub usage: TokenUsage,
    /// Embeddings: the worker's whole body, served as it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// When it was stored (ms since the Unix epoch), for the `age` header.
    pub stored_at_ms: u64,
    /// How long the worker took to produce it: the GPU time a hit saves.
    pub worker_ms: u64,
}

pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl CachedAnswer {
    /// The answer in a worker's whole (not streamed) successful body; `None` when it holds
    /// something the cache cannot tell again.
    pub fn from_whole(kind: AnswerKind, body: &[u8], worker: Duration) -> Option<Self> {
        let Value::Object(mut top) = serde_json::from_slice::<Value>(body).ok()? else { return None };
        let usage = usage_of(top.get("usage"))?;
        let model = top.get("model").and_then(Value::as_str).unwrap_or_default().to_owned();
        if kind == AnswerKind::Embedding {
            return Some(CachedAnswer {
                kind,
                model,
                system_fingerprint: None,
                choices: Vec::new(),
                usage,
                body: Some(String::from_utf8_lossy(body).into_owned()),
                stored_at_ms: now_ms(),
                worker_ms: ms(worker),
            });
        }
        let system_fingerprint = fingerprint(&top);
        let Some(Value::Array(raw)) = top.remove("choices") else { return None };
        let mut choices = Vec::with_capacity(raw.len());
        for choice in raw {
            let Value::Object(mut choice) = choice else { return None };
            let index = index_of(&choice)?;
            let finish_reason = Some(choice.get("finish_reason")?.as_str()?.to_owned());
            if !is_null(choice.get("logprobs")) {
                return None;
            }
            let mut c = CachedChoice {
                index,
                role: None,
                content: Pieces::default(),
                reasoning: Pieces::default(),
                finish_reason,
            };
            match kind {
                AnswerKind::Chat => {
                    let Some(Value::Object(message)) = choice.remove("message") else { return None };
                    take_text(&mut c, &message, true)?;
                }
                _ => c.content.push(choice.get("text")?.as_str()?),
            }
            choices.push(c);
        }
        Some(CachedAnswer {
            kind,
            model,
            system_fingerprint,
            choices,
            usage,
            body: None,
            stored_at_ms: now_ms(),
            worker_ms: ms(worker),
        })
    }

    /// The bytes the answer holds on the heap (its text, its pieces' ends, its names), which is
    /// what an entry counts towards the in-process cache's bound, besides its key.
    pub fn heap_bytes(&self) -> usize {
        let choices: usize = self
            .choices
            .iter()
            .map(|c| {
                size_of::<CachedChoice>()
                    + c.content.heap_bytes()
                    + c.reasoning.heap_bytes()
                    + c.role.as_ref().map_or(0, String::capacity)
                    + c.finish_reason.as_ref().map_or(0, String::capacity)
            })
            .sum();
        size_of::<CachedAnswer>()
            + choices
            + self.model.capacity()
            + self.system_fingerprint.as_ref().map_or(0, String::capacity)
            + self.body.as_ref().map_or(0, String::capacity)
    }

    /// The answer as a whole body, with a fresh `id` and `created`.
    pub fn whole_body(&self, id: &str) -> Vec<u8> {
        if let Some(body) = &self.body {
            return body.clone().into_bytes();
        }
        let created = now_ms() / 1000;
        let choices: Vec<Value> = self
            .choices
            .iter()
            .map(|c| match self.kind {
                AnswerKind::Chat => {
                    let mut message = Map::new();
                    message.insert("role".into(), json!(c.role.as_deref().unwrap_or("assistant")));
                    message.insert("content".into(), json!(c.content.text()));
                    if !c.reasoning.is_empty() {
                        message.insert("reasoning_content".into(), json!(c.reasoning.text()));
                    }
                    json!({"index": c.index, "message": message, "logprobs": null, "finish_reason": c.finish_reason})
                }
                _ => json!({"index": c.index, "text": c.content.text(), "logprobs": null, "finish_reason": c.finish_reason}),
            })
            .collect();
        let mut body = Map::new();
        body.insert("id".into(), json!(self.id(id)));
        body.insert("object".into(), json!(self.object(false)));
        body.insert("created".into(), json!(created));
        body.insert("model".into(), json!(self.model));
        if let Some(f) = &self.system_fingerprint {
            body.insert("system_fingerprint".into(), json!(f));
        }
        body.insert("choices".into(), Value::Array(choices));
        body.insert("usage".into(), self.usage_json());
        serde_json::to_vec(&Value::Object(body)).unwrap_or_default()
    }

    /// The answer as server-sent events: per choice its role, its text piece by piece, its
    /// finish reason; the usage when the client asked for it; `[DONE]`.
    pub fn event_stream(&self, id: &str, include_usage: bool) -> Bytes {
        // Every event starts with the same members: they are written once and copied, and a
        // piece's text is escaped straight into the output, so replaying a long answer costs a
        // copy per token rather than a JSON document built and serialised per token.
        let mut head = BytesMut::with_capacity(160);
        head.put_slice(b"data: {\"id\":");
        put_json(&mut head, &self.id(id));
        head.put_slice(b",\"object\":");
        put_json(&mut head, self.object(true));
        head.put_slice(format!(",\"created\":{},\"model\":", now_ms() / 1000).as_bytes());
        put_json(&mut head, &self.model);
        if let Some(f) = &self.system_fingerprint {
            head.put_slice(b",\"system_fingerprint\":");
            put_json(&mut head, f);
        }
        head.put_slice(b",\"choices\":");
        let pieces: usize = self.choices.iter().map(|c| c.content.text().len() + c.reasoning.text().len()).sum();
        let events: usize = self.choices.iter().map(|c| c.content.len() + c.reasoning.len() + 2).sum();
        let mut out = BytesMut::with_capacity(pieces + events * (head.len() + 80) + 256);
        let event = |out: &mut BytesMut, choices: &Value| {
            out.put_slice(&head);
            put_json(out, choices);
            out.put_slice(b"}\n\n");
        };
        for c in &self.choices {
            if self.kind == AnswerKind::Chat {
                let role = c.role.as_deref().unwrap_or("assistant");
                let first = json!([{"index": c.index, "delta": {"role": role, "content": ""}, "logprobs": null, "finish_reason": null}]);
                event(&mut out, &first);
            }
            let (reasoning, content) = match self.kind {
                AnswerKind::Chat => (
                    format!("[{{\"index\":{},\"delta\":{{\"reasoning_content\":", c.index),
                    format!("[{{\"index\":{},\"delta\":{{\"content\":", c.index),
                ),
                _ => (String::new(), format!("[{{\"index\":{},\"text\":", c.index)),
            };
            let close: &[u8] = match self.kind {
                AnswerKind::Chat => b"},\"logprobs\":null,\"finish_reason\":null}]}\n\n",
                _ => b",\"logprobs\":null,\"finish_reason\":null}]}\n\n",
            };
            let pieces = c.reasoning.iter().map(|r| (&reasoning, r));
            for (open, text) in pieces.chain(c.content.iter().filter(|t| !t.is_empty()).map(|t| (&content, t))) {
                out.put_slice(&head);
                out.put_slice(open.as_bytes());
                put_json(&mut out, text);
                out.put_slice(close);
            }
            let last = match self.kind {
                AnswerKind::Chat => {
                    json!([{"index": c.index, "delta": {}, "logprobs": null, "finish_reason": c.finish_reason}])
                }
                _ => json!([{"index": c.index, "text": "", "logprobs": null, "finish_reason": c.finish_reason}]),
            };
            event(&mut out, &last);
        }
        if include_usage {
            out.put_slice(&head);
            out.put_slice(b"[],\"usage\":");
            put_json(&mut out, &self.usage_json());
            out.put_slice(b"}\n\n");
        }
        out.put_slice(b"data: [DONE]\n\n");
        out.freeze()
    }

    /// Usage as a client is told it on a hit: the whole prompt was cached.
    fn usage_json(&self) -> Value {
        let TokenUsage { prompt, completion } = self.usage;
        json!({
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": prompt},
        })
    }

    fn id(&self, request_id: &str) -> String {
        let prefix = if self.kind == AnswerKind::Chat { "chatcmpl-" } else { "cmpl-" };
        format!("{prefix}{request_id}")
    }

    fn object(&self, stream: bool) -> &'static str {
        match (self.kind, stream) {
            (AnswerKind::Chat, false) => "chat.completion",
            (AnswerKind::Chat, true) => "chat.completion.chunk",
            _ => "text_completion",
        }
    }
}

/// Appends `value` as JSON (a string escaped and quoted). Serialising a string, a number or a
/// `Value` into memory cannot fail.
fn put_json<T: Serialize + ?Sized>(out: &mut BytesMut, value: &T) {
    let _ = serde_json::to_writer(out.writer(), value);
}

/// Builds a [`CachedAnswer`] from a stream's events as they pass to the client.
#[derive(Debug)]
pub struct StreamCapture {
    kind: AnswerKind,
    model: Option<String>,
    system_fingerprint: Option<String>,
    choices: Vec<CachedChoice>,
    bytes: usize,
    max_bytes: usize,
    /// Something the cache cannot tell again went by, or the answer grew too large.
    spoiled: bool,
}

impl StreamCapture {
    pub fn new(kind: AnswerKind, max_bytes: usize) -> Self {
        StreamCapture {
            kind,
            model: None,
            system_fingerprint: None,
            choices: Vec::new(),
            bytes: 0,
            max_bytes,
            spoiled: kind == AnswerKind::Embedding,
        }
    }

    /// One event's `data` as the client receives it (not `[DONE]`).
    pub fn push(&mut self, data: &[u8]) {
        if self.spoiled {
            return;
        }
        self.bytes += data.len();
        if self.bytes > self.max_bytes || self.take(data).is_none() {
            self.spoiled = true;
            self.choices = Vec::new();
        }
    }

    fn take(&mut self, data: &[u8]) -> Option<()> {
        let Value::Object(top) = serde_json::from_slice::<Value>(data).ok()? else { return None };
        if top.contains_key("error") {
            return None;
        }
        if self.model.is_none() {
            self.model = top.get("model").and_then(Value::as_str).map(str::to_owned);
            self.system_fingerprint = fingerprint(&top);
        }
        let Some(Value::Array(choices)) = top.get("choices") else { return Some(()) };
        for choice in choices {
            let Value::Object(choice) = choice else { return None };
            if !is_null(choice.get("logprobs")) {
                return None;
            }
            let index = index_of(choice)?;
            let at = match self.choices.iter().position(|c| c.index == index) {
                Some(at) => at,
                None => {
                    self.choices.push(CachedChoice {
                        index,
                        role: None,
                        content: Pieces::default(),
                        reasoning: Pieces::default(),
                        finish_reason: None,
                    });
                    self.choices.len() - 1
                }
            };
            let c = &mut self.choices[at];
            match self.kind {
                AnswerKind::Chat => {
                    if let Some(Value::Object(delta)) = choice.get("delta") {
                        take_text(c, delta, false)?;
                    }
                }
                _ => {
                    if let Some(text) = choice.get("text").and_then(Value::as_str).filter(|t| !t.is_empty()) {
                        c.content.push(text);
                    }
                }
            }
            if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
                c.finish_reason = Some(reason.to_owned());
            }
        }
        Some(())
    }

    /// The answer, if the stream completed with every choice finished and its usage known.
    pub fn finish(self, usage: Option<&sluice_openai::response::Usage>, worker: Duration) -> Option<CachedAnswer> {
        let usage = usage?;
        if self.spoiled || self.choices.is_empty() || self.choices.iter().any(|c| c.finish_reason.is_none()) {
            return None;
        }
        let mut choices = self.choices;
        choices.sort_by_key(|c| c.index);
        for c in &mut choices {
            c.content.shrink_to_fit();
            c.reasoning.shrink_to_fit();
        }
        Some(CachedAnswer {
            kind: self.kind,
            model: self.model.unwrap_or_default(),
            system_fingerprint: self.system_fingerprint,
            choices,
            usage: TokenUsage { prompt: usage.prompt_tokens, completion: usage.completion_tokens },
            body: None,
            stored_at_ms: now_ms(),
            worker_ms: ms(worker),
        })
    }
}

fn is_null(v: Option<&Value>) -> bool {
    v.is_none_or(Value::is_null)
}

fn index_of(choice: &Map<String, Value>) -> Option<u32> {
    choice.get("index").map_or(Some(0), |i| i.as_u64().and_then(|i| u32::try_from(i).ok()))
}

fn fingerprint(top: &Map<String, Value>) -> Option<String> {
    top.get("system_fingerprint").and_then(Value::as_str).map(str::to_owned)
}

fn usage_of(usage: Option<&Value>) -> Option<TokenUsage> {
    let usage = usage?;
    Some(TokenUsage {
        prompt: usage.get("prompt_tokens")?.as_u64()?,
        completion: usage.get("completion_tokens").and_then(Value::as_u64).unwrap_or(0),
    })
}

/// Takes the text of a chat message or delta into `c`; `None` when it holds anything else
/// that matters (tool calls, a refusal, audio…).
fn take_text(c: &mut CachedChoice, message: &Map<String, Value>, whole: bool) -> Option<()> {
    for (name, value) in message {
        match name.as_str() {
            "role" => c.role = value.as_str().map(str::to_owned),
            "content" => match value {
                Value::String(s) if whole || !s.is_empty() => c.content.push(s),
                Value::String(_) | Value::Null => {}
                _ => return None,
            },
            "reasoning_content" | "reasoning" => match value {
                Value::String(s) if !s.is_empty() => c.reasoning.push(s),
                Value::String(_) | Value::Null => {}
                _ => return None,
            },
            // Empty or null members say nothing.
            _ if value.is_null() || value.as_array().is_some_and(Vec::is_empty) => {}
            _ => return None,
        }
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_openai::response::Usage;
    use sluice_openai::sse::SseParser;

    #[test]
    fn a_replayed_stream_is_valid_chunks_for_chat_with_reasoning_and_for_completions() {
        let choice = |content: &[&str], reasoning: &[&str]| CachedChoice {
            index: 0,
            role: Some("assistant".into()),
            content: content.iter().copied().collect(),
            reasoning: reasoning.iter().copied().collect(),
            finish_reason: Some("stop".into()),
        };
        let chat = CachedAnswer {
            kind: AnswerKind::Chat,
            model: "m\"q".into(),
            system_fingerprint: Some("fp".into()),
            choices: vec![choice(&["a \"quoted\"", "\n\u{e9}"], &["think"])],
            usage: TokenUsage { prompt: 5, completion: 2 },
            body: None,
            stored_at_ms: 0,
            worker_ms: 0,
        };
        let chunks = events(&chat.event_stream("r", true));
        assert!(
            chunks.iter().all(|c| c["id"] == "chatcmpl-r" && c["model"] == "m\"q" && c["system_fingerprint"] == "fp")
        );
        let field = |name: &str| -> Vec<String> {
            chunks.iter().filter_map(|c| c["choices"][0]["delta"][name].as_str().map(str::to_owned)).collect()
        };
        assert_eq!(field("reasoning_content"), ["think"]);
        assert_eq!(field("content"), ["", "a \"quoted\"", "\n\u{e9}"]);
        let usage = chunks.last().unwrap();
        assert_eq!(usage["choices"], json!([]));
        assert_eq!(usage["usage"]["prompt_tokens_details"]["cached_tokens"], 5);

        let completion = CachedAnswer { kind: AnswerKind::Completion, choices: vec![choice(&["x", "y"], &[])], ..chat };
        let chunks = events(&completion.event_stream("r", false));
        let text: Vec<&str> = chunks.iter().filter_map(|c| c["choices"][0]["text"].as_str()).collect();
        assert_eq!(text, ["x", "y", ""]);
        assert_eq!(chunks[0]["object"], "text_completion");
        assert_eq!(chunks.last().unwrap()["choices"][0]["finish_reason"], "stop");
    }

    fn events(bytes: &[u8]) -> Vec<Value> {
        let mut parser = SseParser::new(1 << 20);
        parser.push(bytes);
        let mut out = Vec::new();
        while let Ok(Some(e)) = parser.next_event() {
            if let Some(data) = e.data.filter(|d| &d[..] != b"[DONE]") {
                out.push(serde_json::from_slice(&data).unwrap());
            }
        }
        out
    }

    const WHOLE: &str = r#"{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"m","system_fingerprint":"fp",
        "choices":[{"index":0,"message":{"role":"assistant","content":"Hello there","tool_calls":[]},"logprobs":null,"finish_reason":"stop"}],
        "usage":{"prompt_tokens":7,"completion_tokens":2,"total_tokens":9}}"#;

    #[test]
    fn a_whole_answer_is_told_again_whole_and_streamed() {
        let a = CachedAnswer::from_whole(AnswerKind::Chat, WHOLE.as_bytes(), Duration::from_millis(40)).unwrap();
        assert_eq!(a.worker_ms, 40);
        let body: Value = serde_json::from_slice(&a.whole_body("r1")).unwrap();
        assert_eq!(body["id"], "chatcmpl-r1");
        assert_eq!(body["choices"][0]["message"]["content"], "Hello there");
        assert_eq!(body["choices"][0]["finish_reason"], "stop");
        assert_eq!(body["system_fingerprint"], "fp");
        assert_eq!(body["usage"]["prompt_tokens_details"]["cached_tokens"], 7);
        let chunks = events(&a.event_stream("r1", true));
        assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(chunks[1]["choices"][0]["delta"]["content"], "Hello there");
        assert_eq!(chunks[2]["choices"][0]["finish_reason"], "stop");
        assert_eq!(chunks[3]["usage"]["completion_tokens"], 2);
        assert_eq!(events(&a.event_stream("r1", false)).len(), 3, "no usage chunk unless asked");
    }

    #[test]
    fn a_streamed_answer_keeps_its_pieces_and_is_told_again_whole() {
        let mut capture = StreamCapture::new(AnswerKind::Chat, 1 << 20);
        for data in [
            r#"{"id":"x","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#,
            r#"{"id":"x","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"Hel"},"finish_reason":null}]}"#,
            r#"{"id":"x","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"lo"},"finish_reason":null}]}"#,
            r#"{"id":"x","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{},"finish_reason":"length"}]}"#,
        ] {
            capture.push(data.as_bytes());
        }
        let a = capture.finish(Some(&Usage::new(3, 0, 2)), Duration::ZERO).unwrap();
        assert_eq!(a.choices[0].content.iter().collect::<Vec<_>>(), ["Hel", "lo"]);
        // Stored as the list of pieces, and read back the same.
        let stored = serde_json::to_value(&a.choices[0]).unwrap();
        assert_eq!(stored["content"], json!(["Hel", "lo"]));
        assert_eq!(serde_json::from_value::<CachedChoice>(stored).unwrap(), a.choices[0]);
        let body: Value = serde_json::from_slice(&a.whole_body("r")).unwrap();
        assert_eq!(body["choices"][0]["message"]["content"], "Hello");
        assert_eq!(body["choices"][0]["finish_reason"], "length");
        let chunks = events(&a.event_stream("r", false));
        let text: Vec<&str> = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
        assert_eq!(text, ["", "Hel", "lo"]);
    }

    #[test]
    fn what_cannot_be_told_again_is_not_kept() {
        let tool = WHOLE.replace(r#""tool_calls":[]"#, r#""tool_calls":[{"id":"t"}]"#);
        assert!(CachedAnswer::from_whole(AnswerKind::Chat, tool.as_bytes(), Duration::ZERO).is_none());
        let logprobs = WHOLE.replace(r#""logprobs":null"#, r#""logprobs":{"content":[]}"#);
        assert!(CachedAnswer::from_whole(AnswerKind::Chat, logprobs.as_bytes(), Duration::ZERO).is_none());
        let unfinished = WHOLE.replace(r#""finish_reason":"stop""#, r#""finish_reason":null"#);
        assert!(CachedAnswer::from_whole(AnswerKind::Chat, unfinished.as_bytes(), Duration::ZERO).is_none());

        let mut cut = StreamCapture::new(AnswerKind::Chat, 1 << 20);
        cut.push(br#"{"model":"m","choices":[{"index":0,"delta":{"content":"Hel"},"finish_reason":null}]}"#);
        assert!(cut.finish(Some(&Usage::new(3, 0, 1)), Duration::ZERO).is_none(), "never finished");
        let mut big = StreamCapture::new(AnswerKind::Chat, 10);
        big.push(br#"{"model":"m","choices":[{"index":0,"delta":{"content":"Hello world"},"finish_reason":"stop"}]}"#);
        assert!(big.finish(Some(&Usage::new(3, 0, 1)), Duration::ZERO).is_none(), "too large");
    }

    #[test]
    fn completions_and_embeddings() {
        let text = r#"{"id":"c","object":"text_completion","created":1,"model":"m","choices":[{"index":0,"text":"abc","logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}"#;
        let a = CachedAnswer::from_whole(AnswerKind::Completion, text.as_bytes(), Duration::ZERO).unwrap();
        let chunks = events(&a.event_stream("r", false));
        assert_eq!(chunks[0]["object"], "text_completion");
        assert_eq!(chunks[0]["choices"][0]["text"], "abc");
        let emb = r#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.5]}],"model":"e","usage":{"prompt_tokens":2,"total_tokens":2}}"#;
        let e = CachedAnswer::from_whole(AnswerKind::Embedding, emb.as_bytes(), Duration::ZERO).unwrap();
        assert_eq!(e.whole_body("r"), emb.as_bytes());
    }
}
