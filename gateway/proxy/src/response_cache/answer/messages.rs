//! Anthropic's Messages API. An answer the cache keeps is a `message` with at most one content
//! block, of text without citations, and a stop reason other than `tool_use`: tool use,
//! thinking and other blocks are served but not stored.
//!
//! Told again, it is the same message under a new id (`msg_<request id>`), with the usage of a
//! prompt read wholly from cache (`input_tokens` 0, the prompt as `cache_read_input_tokens`).
//! A stream is the events Anthropic's SDKs read: `message_start` with the usage,
//! `content_block_start`, `ping`, a `content_block_delta` (`text_delta`) per stored piece,
//! `content_block_stop`, `message_delta` with the stop reason and usage, `message_stop`.
//!
//! A Messages request sent to a chat-completions worker is answered by the gateway's
//! translation; the cache keeps the message the client was sent: a whole answer after it was
//! translated, a stream by translating the worker's chunks here the same way the relay does
//! ([`MessagesCapture::through_chat`]).

use bytes::{BufMut, Bytes, BytesMut};
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::{Map, Value, json};
use sluice_openai::agents::translate::MessagesStream;
use sluice_openai::sse::SseParser;

use super::{AnswerKind, CachedAnswer, Pieces, TokenUsage, count, is_empty, put_event, put_json};

/// The answer in a whole `message`.
pub(super) fn from_message(top: Map<String, Value>) -> Option<CachedAnswer> {
    let role = top.get("role").and_then(Value::as_str);
    if top.get("type")?.as_str()? != "message" || role.is_some_and(|r| r != "assistant") {
        return None;
    }
    let stop_reason = top.get("stop_reason")?.as_str()?;
    if stop_reason == "tool_use" {
        return None;
    }
    let text = match top.get("content")?.as_array()?.as_slice() {
        [] => "",
        [block] => block_text(block)?,
        _ => return None,
    };
    let usage = top.get("usage")?.as_object()?;
    let prompt = usage.get("input_tokens")?.as_u64()?
        + count(usage, "cache_read_input_tokens")?
        + count(usage, "cache_creation_input_tokens")?;
    let usage = TokenUsage { prompt, completion: count(usage, "output_tokens")? };
    let model = top.get("model").and_then(Value::as_str).unwrap_or_default().to_owned();
    let pieces: Pieces = [text].into_iter().filter(|t| !t.is_empty()).collect();
    let mut answer = CachedAnswer::single(AnswerKind::Message, model, pieces, stop_reason.to_owned(), usage);
    answer.stop_sequence = top.get("stop_sequence").and_then(Value::as_str).map(str::to_owned);
    Some(answer)
}

/// A text block's text.
fn block_text(block: &Value) -> Option<&str> {
    if block.get("type")?.as_str()? != "text" || !is_empty(block.get("citations")) {
        return None;
    }
    block.get("text")?.as_str()
}

/// The message's text, and why it stopped.
fn parts(a: &CachedAnswer) -> (&Pieces, &str) {
    static EMPTY: Pieces = Pieces { text: String::new(), ends: Vec::new() };
    let choice = a.choices.first();
    (choice.map_or(&EMPTY, |c| &c.content), choice.and_then(|c| c.finish_reason.as_deref()).unwrap_or("end_turn"))
}

/// Usage as a client is told it on a hit: the whole prompt was read from cache.
fn usage_json(a: &CachedAnswer, output_tokens: u64) -> Value {
    json!({
        "input_tokens": 0,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": a.usage.prompt,
        "output_tokens": output_tokens,
    })
}

fn message_id(id: &str) -> String {
    format!("msg_{id}")
}

pub(super) fn whole_body(a: &CachedAnswer, id: &str) -> Vec<u8> {
    let (text, stop_reason) = parts(a);
    let content = if text.text().is_empty() { json!([]) } else { json!([{"type": "text", "text": text.text()}]) };
    let message = json!({
        "id": message_id(id),
        "type": "message",
        "role": "assistant",
        "model": a.model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": a.stop_sequence,
        "usage": usage_json(a, a.usage.completion),
    });
    serde_json::to_vec(&message).unwrap_or_default()
}

pub(super) fn event_stream(a: &CachedAnswer, id: &str) -> Bytes {
    let (text, stop_reason) = parts(a);
    let mut out = BytesMut::with_capacity(text.text().len() * 2 + text.len() * 110 + 2048);
    let message = json!({
        "id": message_id(id), "type": "message", "role": "assistant", "model": a.model, "content": [],
        "stop_reason": null, "stop_sequence": null, "usage": usage_json(a, a.usage.completion.min(1)),
    });
    put_event(&mut out, "message_start", &json!({"type": "message_start", "message": message}));
    if !text.text().is_empty() {
        put_event(
            &mut out,
            "content_block_start",
            &json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        );
        put_event(&mut out, "ping", &json!({"type": "ping"}));
        for piece in text.iter().filter(|p| !p.is_empty()) {
            out.put_slice(
                b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":",
            );
            put_json(&mut out, piece);
            out.put_slice(b"}}\n\n");
        }
        put_event(&mut out, "content_block_stop", &json!({"type": "content_block_stop", "index": 0}));
    }
    put_event(
        &mut out,
        "message_delta",
        &json!({"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": a.stop_sequence},
                "usage": usage_json(a, a.usage.completion)}),
    );
    put_event(&mut out, "message_stop", &json!({"type": "message_stop"}));
    out.freeze()
}

/// Gathers a Messages stream's events.
#[derive(Debug, Default)]
pub(super) struct MessagesCapture {
    /// A request answered through chat completions: the worker's chunks are translated into
    /// the events the client got, and whether a choice finished is read from them.
    through_chat: Option<ThroughChat>,
    model: Option<String>,
    text: Pieces,
    /// The one content block was opened.
    opened: bool,
    stop_reason: Option<String>,
    stop_sequence: Option<String>,
    /// `message_stop` arrived.
    stopped: bool,
}

#[derive(Debug)]
struct ThroughChat {
    translator: Box<MessagesStream>,
    finished: bool,
}

/// What a chat chunk says of its end.
#[derive(Deserialize)]
struct ChunkEnd {
    #[serde(default)]
    choices: Vec<ChoiceEnd>,
}

#[derive(Deserialize)]
struct ChoiceEnd {
    #[serde(default)]
    finish_reason: Option<IgnoredAny>,
}

impl MessagesCapture {
    /// For a request whose worker speaks chat completions; `model` is the name the client asked
    /// for, which the translated message carries.
    pub(super) fn through_chat(model: &str) -> Self {
        let translator = Box::new(MessagesStream::new(model));
        MessagesCapture { through_chat: Some(ThroughChat { translator, finished: false }), ..Self::default() }
    }

    pub(super) fn take(&mut self, data: &[u8]) -> Option<()> {
        let Some(chat) = &mut self.through_chat else { return self.take_event(data) };
        if let Ok(chunk) = serde_json::from_slice::<ChunkEnd>(data) {
            chat.finished |= chunk.choices.iter().any(|c| c.finish_reason.is_some());
        }
        let mut events = Vec::new();
        chat.translator.chunk(data, &mut events);
        self.take_events(&events)
    }

    /// Translated events, as the relay sends them.
    fn take_events(&mut self, events: &[u8]) -> Option<()> {
        let mut parser = SseParser::new(usize::MAX);
        parser.push(events);
        while let Some(event) = parser.next_event().ok()? {
            if let Some(data) = event.data {
                self.take_event(&data)?;
            }
        }
        Some(())
    }

    fn take_event(&mut self, data: &[u8]) -> Option<()> {
        let Value::Object(event) = serde_json::from_slice::<Value>(data).ok()? else { return None };
        if self.stopped {
            return None;
        }
        match event.get("type")?.as_str()? {
            "message_start" => {
                self.model = event.get("message")?.get("model").and_then(Value::as_str).map(str::to_owned);
            }
            "content_block_start" if !self.opened => {
                self.opened = true;
                let text = block_text(event.get("content_block")?)?;
                if !text.is_empty() {
                    self.text.push(text);
                }
            }
            "content_block_delta" => {
                let delta = event.get("delta")?;
                if delta.get("type")?.as_str()? != "text_delta" {
                    return None;
                }
                let text = delta.get("text")?.as_str()?;
                if !text.is_empty() {
                    self.text.push(text);
                }
            }
            "message_delta" => {
                let delta = event.get("delta")?;
                if let Some(reason) = delta.get("stop_reason").and_then(Value::as_str) {
                    self.stop_reason = Some(reason.to_owned());
                }
                self.stop_sequence = delta.get("stop_sequence").and_then(Value::as_str).map(str::to_owned);
            }
            "message_stop" => self.stopped = true,
            "content_block_stop" | "ping" => {}
            // A second block, an error, or an event this capture does not know.
            _ => return None,
        }
        Some(())
    }

    /// The answer, if the message stopped (for a translated stream: the worker's choice
    /// finished) for a reason other than tool use.
    pub(super) fn finish(mut self, usage: TokenUsage) -> Option<CachedAnswer> {
        if let Some(mut chat) = self.through_chat.take() {
            if !chat.finished {
                return None;
            }
            let mut events = Vec::new();
            chat.translator.finish(&mut events);
            self.take_events(&events)?;
        }
        let stop_reason = self.stop_reason.filter(|r| self.stopped && r != "tool_use")?;
        let mut answer =
            CachedAnswer::single(AnswerKind::Message, self.model.unwrap_or_default(), self.text, stop_reason, usage);
        answer.stop_sequence = self.stop_sequence;
        Some(answer)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use sluice_openai::response::Usage;

    use super::super::test_util::events;
    use super::super::{CachedAnswer, StreamCapture};
    use super::*;

    const WHOLE: &str = r#"{"id":"msg_w","type":"message","role":"assistant","model":"m",
        "content":[{"type":"text","text":"Hello there"}],"stop_reason":"end_turn","stop_sequence":null,
        "usage":{"input_tokens":4,"cache_creation_input_tokens":0,"cache_read_input_tokens":8,"output_tokens":2}}"#;

    fn whole() -> CachedAnswer {
        CachedAnswer::from_whole(AnswerKind::Message, WHOLE.as_bytes(), Duration::from_millis(20)).unwrap()
    }

    /// A native Messages stream as the simulator and vLLM send it.
    fn worker_stream(pieces: &[&str], stop_reason: &str) -> Vec<String> {
        let mut out = vec![
            json!({"type": "message_start", "message": {"id": "msg_s", "type": "message", "role": "assistant",
                "model": "m", "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": 9, "output_tokens": 1}}}),
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            json!({"type": "ping"}),
        ];
        out.extend(
            pieces.iter().map(
                |p| json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}}),
            ),
        );
        out.push(json!({"type": "content_block_stop", "index": 0}));
        out.push(json!({"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": null},
            "usage": {"output_tokens": pieces.len()}}));
        out.push(json!({"type": "message_stop"}));
        out.into_iter().map(|e| e.to_string()).collect()
    }

    fn captured(capture: StreamCapture) -> Option<CachedAnswer> {
        capture.finish(Some(&Usage::new(9, 0, 2)), Duration::ZERO)
    }

    #[test]
    fn a_whole_message_is_told_again_whole_and_as_the_events_the_sdks_read() {
        let a = whole();
        assert_eq!(a.usage, TokenUsage { prompt: 12, completion: 2 }, "cache reads are part of the prompt");
        let body: Value = serde_json::from_slice(&a.whole_body("r1")).unwrap();
        assert_eq!(
            body,
            json!({"id": "msg_r1", "type": "message", "role": "assistant", "model": "m",
                "content": [{"type": "text", "text": "Hello there"}], "stop_reason": "end_turn", "stop_sequence": null,
                "usage": {"input_tokens": 0, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 12,
                    "output_tokens": 2}})
        );

        let events = events(&a.event_stream("r1", false));
        let names: Vec<&str> = events.iter().map(|(name, _)| name.as_deref().unwrap()).collect();
        assert_eq!(
            names,
            [
                "message_start",
                "content_block_start",
                "ping",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        for (name, data) in &events {
            assert_eq!(data["type"], name.as_deref().unwrap());
        }
        assert_eq!(events[0].1["message"]["id"], "msg_r1");
        assert_eq!(events[0].1["message"]["usage"]["cache_read_input_tokens"], 12);
        assert_eq!(events[3].1["delta"], json!({"type": "text_delta", "text": "Hello there"}));
        assert_eq!(events[5].1["delta"]["stop_reason"], "end_turn");
        assert_eq!(events[5].1["usage"]["output_tokens"], 2);
    }

    #[test]
    fn a_streamed_message_keeps_its_pieces_and_is_told_again_whole() {
        let mut capture = StreamCapture::new(AnswerKind::Message, 1 << 20);
        for data in worker_stream(&["Hel", "lo\n", "\u{e9}"], "max_tokens") {
            capture.push(data.as_bytes());
        }
        let a = capture.finish(Some(&Usage::new(9, 4, 3)), Duration::ZERO).unwrap();
        assert_eq!(a.choices[0].content.iter().collect::<Vec<_>>(), ["Hel", "lo\n", "\u{e9}"]);
        assert_eq!((a.model.as_str(), a.usage.prompt), ("m", 9));
        let body: Value = serde_json::from_slice(&a.whole_body("r")).unwrap();
        assert_eq!(body["content"][0]["text"], "Hello\n\u{e9}");
        assert_eq!(body["stop_reason"], "max_tokens");
        let deltas: Vec<String> = events(&a.event_stream("r", false))
            .into_iter()
            .filter_map(|(_, data)| data["delta"]["text"].as_str().map(str::to_owned))
            .collect();
        assert_eq!(deltas, ["Hel", "lo\n", "\u{e9}"]);
    }

    #[test]
    fn a_stop_sequence_and_an_empty_answer_are_told_again() {
        let stopped = WHOLE.replace(
            r#""stop_reason":"end_turn","stop_sequence":null"#,
            r###""stop_reason":"stop_sequence","stop_sequence":"##""###,
        );
        let a = CachedAnswer::from_whole(AnswerKind::Message, stopped.as_bytes(), Duration::ZERO).unwrap();
        let body: Value = serde_json::from_slice(&a.whole_body("r")).unwrap();
        assert_eq!((&body["stop_reason"], &body["stop_sequence"]), (&json!("stop_sequence"), &json!("##")));
        let delta = &events(&a.event_stream("r", false))[5].1;
        assert_eq!(delta["delta"], json!({"stop_reason": "stop_sequence", "stop_sequence": "##"}));

        let empty = WHOLE.replace(r#"[{"type":"text","text":"Hello there"}]"#, "[]");
        let a = CachedAnswer::from_whole(AnswerKind::Message, empty.as_bytes(), Duration::ZERO).unwrap();
        let body: Value = serde_json::from_slice(&a.whole_body("r")).unwrap();
        assert_eq!(body["content"], json!([]));
        let names: Vec<String> = events(&a.event_stream("r", false)).into_iter().filter_map(|(n, _)| n).collect();
        assert_eq!(names, ["message_start", "message_delta", "message_stop"]);
    }

    #[test]
    fn what_cannot_be_told_again_is_not_kept() {
        let parse = |body: String| CachedAnswer::from_whole(AnswerKind::Message, body.as_bytes(), Duration::ZERO);
        let tool = WHOLE.replace(
            r#"[{"type":"text","text":"Hello there"}],"stop_reason":"end_turn""#,
            r#"[{"type":"tool_use","id":"t","name":"f","input":{}}],"stop_reason":"tool_use""#,
        );
        assert!(parse(tool).is_none());
        let two = WHOLE.replace(
            r#"{"type":"text","text":"Hello there"}"#,
            r#"{"type":"text","text":"a"},{"type":"text","text":"b"}"#,
        );
        assert!(parse(two).is_none());
        let thinking = WHOLE.replace(
            r#"{"type":"text","text":"Hello there"}"#,
            r#"{"type":"thinking","thinking":"hm","signature":"s"}"#,
        );
        assert!(parse(thinking).is_none());
        assert!(parse(WHOLE.replace(r#""text":"Hello there""#, r#""text":"Hello there","citations":[{}]"#)).is_none());

        let stream = |events: Vec<String>| {
            let mut capture = StreamCapture::new(AnswerKind::Message, 1 << 20);
            for data in events {
                capture.push(data.as_bytes());
            }
            captured(capture)
        };
        assert!(stream(worker_stream(&["a"], "end_turn")).is_some());
        let mut cut = worker_stream(&["a"], "end_turn");
        cut.pop();
        assert!(stream(cut).is_none(), "no message_stop");
        let mut tool = worker_stream(&["a"], "tool_use");
        tool.insert(
            4,
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": "{"}})
                .to_string(),
        );
        assert!(stream(tool).is_none());
        let mut error = worker_stream(&["a"], "end_turn");
        error.insert(3, json!({"type": "error", "error": {"type": "overloaded_error", "message": "x"}}).to_string());
        assert!(stream(error).is_none());
    }

    fn chat_chunk(delta: Value, finish: Value) -> String {
        json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "worker-name",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
        .to_string()
    }

    #[test]
    fn a_stream_through_chat_is_kept_as_the_message_the_client_got() {
        let mut capture = StreamCapture::messages_through_chat("claude-ish", 1 << 20);
        capture.push(chat_chunk(json!({"role": "assistant", "content": ""}), Value::Null).as_bytes());
        capture.push(chat_chunk(json!({"content": "Hi"}), Value::Null).as_bytes());
        capture.push(chat_chunk(json!({"content": " all"}), Value::Null).as_bytes());
        let last = json!({"id": "chatcmpl-1", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop", "stop_reason": "</s>"}]});
        capture.push(last.to_string().as_bytes());
        let usage = json!({"id": "chatcmpl-1", "choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 2}});
        capture.push(usage.to_string().as_bytes());
        let a = captured(capture).unwrap();
        assert_eq!(a.kind, AnswerKind::Message);
        assert_eq!(a.model, "claude-ish", "the name the client asked for");
        assert_eq!(a.choices[0].content.iter().collect::<Vec<_>>(), ["Hi", " all"]);
        assert_eq!(a.choices[0].finish_reason.as_deref(), Some("stop_sequence"));
        assert_eq!(a.stop_sequence.as_deref(), Some("</s>"));

        // A chat stream that never finished, or that called a tool, is not kept.
        let mut cut = StreamCapture::messages_through_chat("m", 1 << 20);
        cut.push(chat_chunk(json!({"content": "Hi"}), Value::Null).as_bytes());
        assert!(captured(cut).is_none());
        let mut tool = StreamCapture::messages_through_chat("m", 1 << 20);
        tool.push(
            chat_chunk(
                json!({"tool_calls": [{"index": 0, "id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}),
                json!("tool_calls"),
            )
            .as_bytes(),
        );
        assert!(captured(tool).is_none());
    }
}
