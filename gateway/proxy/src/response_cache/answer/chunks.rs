//! Chat and completions answers (OpenAI's choices and chunks), and embeddings, kept as their
//! whole body.

use bytes::{BufMut, Bytes, BytesMut};
use serde_json::{Map, Value, json};

use super::{AnswerKind, CachedAnswer, CachedChoice, Pieces, TokenUsage, is_null, now_ms, put_json};

/// The answer in a whole chat, completions or embeddings body (`top`, parsed from `body`).
pub(super) fn from_whole(kind: AnswerKind, mut top: Map<String, Value>, body: &[u8]) -> Option<CachedAnswer> {
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
            stop_sequence: None,
            envelope: None,
            stored_at_ms: now_ms(),
            worker_ms: 0,
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
        let mut c =
            CachedChoice { index, role: None, content: Pieces::default(), reasoning: Pieces::default(), finish_reason };
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
        stop_sequence: None,
        envelope: None,
        stored_at_ms: now_ms(),
        worker_ms: 0,
    })
}

/// The answer as a whole body, with a fresh `id` and `created`.
pub(super) fn whole_body(a: &CachedAnswer, id: &str) -> Vec<u8> {
    if let Some(body) = &a.body {
        return body.clone().into_bytes();
    }
    let created = now_ms() / 1000;
    let choices: Vec<Value> = a
        .choices
        .iter()
        .map(|c| match a.kind {
            AnswerKind::Chat => {
                let mut message = Map::new();
                message.insert("role".into(), json!(c.role.as_deref().unwrap_or("assistant")));
                message.insert("content".into(), json!(c.content.text()));
                if !c.reasoning.is_empty() {
                    message.insert("reasoning_content".into(), json!(c.reasoning.text()));
                }
                json!({"index": c.index, "message": message, "logprobs": null, "finish_reason": c.finish_reason})
            }
            _ => {
                json!({"index": c.index, "text": c.content.text(), "logprobs": null, "finish_reason": c.finish_reason})
            }
        })
        .collect();
    let mut body = Map::new();
    body.insert("id".into(), json!(answer_id(a, id)));
    body.insert("object".into(), json!(object(a, false)));
    body.insert("created".into(), json!(created));
    body.insert("model".into(), json!(a.model));
    if let Some(f) = &a.system_fingerprint {
        body.insert("system_fingerprint".into(), json!(f));
    }
    body.insert("choices".into(), Value::Array(choices));
    body.insert("usage".into(), usage_json(a));
    serde_json::to_vec(&Value::Object(body)).unwrap_or_default()
}

/// The answer as server-sent events: per choice its role, its text piece by piece, its
/// finish reason; the usage when the client asked for it; `[DONE]`.
pub(super) fn event_stream(a: &CachedAnswer, id: &str, include_usage: bool) -> Bytes {
    // Every event starts with the same members: they are written once and copied, and a
    // piece's text is escaped straight into the output, so replaying a long answer costs a
    // copy per token rather than a JSON document built and serialised per token.
    let mut head = BytesMut::with_capacity(160);
    head.put_slice(b"data: {\"id\":");
    put_json(&mut head, &answer_id(a, id));
    head.put_slice(b",\"object\":");
    put_json(&mut head, object(a, true));
    head.put_slice(format!(",\"created\":{},\"model\":", now_ms() / 1000).as_bytes());
    put_json(&mut head, &a.model);
    if let Some(f) = &a.system_fingerprint {
        head.put_slice(b",\"system_fingerprint\":");
        put_json(&mut head, f);
    }
    head.put_slice(b",\"choices\":");
    let pieces: usize = a.choices.iter().map(|c| c.content.text().len() + c.reasoning.text().len()).sum();
    let events: usize = a.choices.iter().map(|c| c.content.len() + c.reasoning.len() + 2).sum();
    let mut out = BytesMut::with_capacity(pieces + events * (head.len() + 80) + 256);
    let event = |out: &mut BytesMut, choices: &Value| {
        out.put_slice(&head);
        put_json(out, choices);
        out.put_slice(b"}\n\n");
    };
    for c in &a.choices {
        if a.kind == AnswerKind::Chat {
            let role = c.role.as_deref().unwrap_or("assistant");
            let first = json!([{"index": c.index, "delta": {"role": role, "content": ""}, "logprobs": null, "finish_reason": null}]);
            event(&mut out, &first);
        }
        let (reasoning, content) = match a.kind {
            AnswerKind::Chat => (
                format!("[{{\"index\":{},\"delta\":{{\"reasoning_content\":", c.index),
                format!("[{{\"index\":{},\"delta\":{{\"content\":", c.index),
            ),
            _ => (String::new(), format!("[{{\"index\":{},\"text\":", c.index)),
        };
        let close: &[u8] = match a.kind {
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
        let last = match a.kind {
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
        put_json(&mut out, &usage_json(a));
        out.put_slice(b"}\n\n");
    }
    out.put_slice(b"data: [DONE]\n\n");
    out.freeze()
}

/// Usage as a client is told it on a hit: the whole prompt was cached.
fn usage_json(a: &CachedAnswer) -> Value {
    let TokenUsage { prompt, completion } = a.usage;
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": prompt},
    })
}

fn answer_id(a: &CachedAnswer, request_id: &str) -> String {
    let prefix = if a.kind == AnswerKind::Chat { "chatcmpl-" } else { "cmpl-" };
    format!("{prefix}{request_id}")
}

fn object(a: &CachedAnswer, stream: bool) -> &'static str {
    match (a.kind, stream) {
        (AnswerKind::Chat, false) => "chat.completion",
        (AnswerKind::Chat, true) => "chat.completion.chunk",
        _ => "text_completion",
    }
}

/// Gathers a chat or completions stream's chunks.
#[derive(Debug)]
pub(super) struct ChunkCapture {
    kind: AnswerKind,
    model: Option<String>,
    system_fingerprint: Option<String>,
    choices: Vec<CachedChoice>,
}

impl ChunkCapture {
    pub(super) fn new(kind: AnswerKind) -> Self {
        ChunkCapture { kind, model: None, system_fingerprint: None, choices: Vec::new() }
    }

    pub(super) fn take(&mut self, data: &[u8]) -> Option<()> {
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

    /// The answer, if every choice finished.
    pub(super) fn finish(self, usage: TokenUsage) -> Option<CachedAnswer> {
        if self.choices.is_empty() || self.choices.iter().any(|c| c.finish_reason.is_none()) {
            return None;
        }
        let mut choices = self.choices;
        choices.sort_by_key(|c| c.index);
        Some(CachedAnswer {
            kind: self.kind,
            model: self.model.unwrap_or_default(),
            system_fingerprint: self.system_fingerprint,
            choices,
            usage,
            body: None,
            stop_sequence: None,
            envelope: None,
            stored_at_ms: 0,
            worker_ms: 0,
        })
    }
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
    use std::time::Duration;

    use super::super::StreamCapture;
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
            stop_sequence: None,
            envelope: None,
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
