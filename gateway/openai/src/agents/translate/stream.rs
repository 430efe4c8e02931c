//! A chat completion stream rewritten, chunk by chunk, as Messages stream events.
//!
//! Chat streams text and tool calls as deltas of one message; the Messages API streams them as
//! numbered content blocks, each opened (`content_block_start`), filled (`content_block_delta`)
//! and closed (`content_block_stop`) in turn. Why the worker stopped and the usage arrive in the
//! last chunks of a chat stream, so they are held until [`MessagesStream::finish`].

use serde_json::{Value, json};

use super::{Usage, call_id, stop_reason};

/// Turns a chat completion stream's chunks into Messages stream events.
#[derive(Debug)]
pub struct MessagesStream {
    model: String,
    started: bool,
    finished: bool,
    /// How many content blocks were opened so far (the next block's index).
    blocks: usize,
    /// The block deltas go to unless a tool call names its own: (index, is text).
    open: Option<(usize, bool)>,
    /// Tool calls by their chat `index`, with their id and content block.
    tools: Vec<ToolBlock>,
    /// The choice's `finish_reason` and vLLM's `stop_reason`, as `stop_reason` reads them.
    end: Value,
    usage: Usage,
}

#[derive(Debug)]
struct ToolBlock {
    call: u64,
    id: String,
    block: usize,
}

impl MessagesStream {
    /// A stream answering a request for `model`, the name the client asked for.
    pub fn new(model: &str) -> Self {
        Self {
            model: model.to_owned(),
            started: false,
            finished: false,
            blocks: 0,
            open: None,
            tools: Vec::new(),
            end: Value::Null,
            usage: Usage::default(),
        }
    }

    /// One chunk's `data` (a JSON object; never `[DONE]`, the caller handles that by calling `finish`).
    /// Appends zero or more complete SSE events to `out`, each as `event: NAME\ndata: JSON\n\n`.
    pub fn chunk(&mut self, data: &[u8], out: &mut Vec<u8>) {
        if self.finished {
            return;
        }
        let Ok(Value::Object(chunk)) = serde_json::from_slice::<Value>(data) else { return };
        if let Some(error) = chunk.get("error") {
            let message = error
                .get("message")
                .and_then(Value::as_str)
                .or_else(|| error.as_str())
                .unwrap_or("the worker reported an error");
            emit(out, "error", &json!({"type": "error", "error": {"type": "api_error", "message": message}}));
            self.finished = true;
            return;
        }
        self.start(chunk.get("id").and_then(Value::as_str), out);
        if let Some(usage) = chunk.get("usage").filter(|u| u.is_object()) {
            self.usage = Usage::from_chat(usage);
        }
        // Chat's `n` > 1 has no Messages equivalent; the first choice is the answer.
        let Some(choice) = chunk.get("choices").and_then(Value::as_array).and_then(|c| c.first()) else { return };
        if let Some(delta) = choice.get("delta") {
            if let Some(text) = delta.get("content").and_then(Value::as_str).filter(|t| !t.is_empty()) {
                self.text(text, out);
            }
            if let Some(calls) = delta.get("tool_calls").and_then(Value::as_array) {
                for (position, call) in calls.iter().enumerate() {
                    self.tool_call(call, position, out);
                }
            }
        }
        if choice.get("finish_reason").is_some_and(|f| !f.is_null()) {
            self.end = json!({"finish_reason": choice["finish_reason"], "stop_reason": choice.get("stop_reason")});
        }
    }

    /// The stream's end: closes an open content block and sends `message_delta` (stop_reason, stop_sequence,
    /// usage) and `message_stop`. Idempotent: a second call appends nothing.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.finished {
            return;
        }
        self.finished = true;
        self.start(None, out);
        self.close(out);
        let (reason, sequence) = stop_reason(&self.end, !self.tools.is_empty());
        emit(
            out,
            "message_delta",
            &json!({
                "type": "message_delta",
                "delta": {"stop_reason": reason, "stop_sequence": sequence},
                "usage": {
                    "output_tokens": self.usage.output,
                    "input_tokens": self.usage.input,
                    "cache_read_input_tokens": self.usage.cached,
                    // As in a whole answer, so a client's accumulated message matches it field for field.
                    "cache_creation_input_tokens": 0,
                },
            }),
        );
        emit(out, "message_stop", &json!({"type": "message_stop"}));
    }

    /// Whether `finish` was called or an error event was emitted.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    fn start(&mut self, id: Option<&str>, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        let message = json!({
            "id": format!("msg_{}", id.unwrap_or("sluice")),
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": null,
            "stop_sequence": null,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        });
        emit(out, "message_start", &json!({"type": "message_start", "message": message}));
    }

    fn text(&mut self, text: &str, out: &mut Vec<u8>) {
        let index = match self.open {
            Some((index, true)) => index,
            _ => self.open_block(json!({"type": "text", "text": ""}), true, out),
        };
        emit(
            out,
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": text}}),
        );
    }

    /// One entry of a chunk's `delta.tool_calls`: the first fragment of a call (its `index` not
    /// seen yet, or a new `id` under a reused index) opens its block; argument fragments go to
    /// the block of the call they belong to.
    fn tool_call(&mut self, call: &Value, position: usize, out: &mut Vec<u8>) {
        let index = call.get("index").and_then(Value::as_u64).unwrap_or(position as u64);
        let id = call.get("id").and_then(Value::as_str).filter(|id| !id.is_empty());
        let known = self.tools.iter().rev().find(|t| t.call == index && id.is_none_or(|id| id == t.id));
        let block = match known {
            Some(tool) => tool.block,
            None => {
                let id = call_id(call, self.tools.len());
                let name = call.pointer("/function/name").and_then(Value::as_str).unwrap_or("");
                let block =
                    self.open_block(json!({"type": "tool_use", "id": id, "name": name, "input": {}}), false, out);
                self.tools.push(ToolBlock { call: index, id, block });
                block
            }
        };
        if let Some(fragment) = call.pointer("/function/arguments").and_then(Value::as_str).filter(|a| !a.is_empty()) {
            emit(
                out,
                "content_block_delta",
                &json!({"type": "content_block_delta", "index": block,
                    "delta": {"type": "input_json_delta", "partial_json": fragment}}),
            );
        }
    }

    fn open_block(&mut self, content_block: Value, text: bool, out: &mut Vec<u8>) -> usize {
        self.close(out);
        let index = self.blocks;
        self.blocks += 1;
        self.open = Some((index, text));
        emit(
            out,
            "content_block_start",
            &json!({"type": "content_block_start", "index": index, "content_block": content_block}),
        );
        index
    }

    fn close(&mut self, out: &mut Vec<u8>) {
        if let Some((index, _)) = self.open.take() {
            emit(out, "content_block_stop", &json!({"type": "content_block_stop", "index": index}));
        }
    }
}

fn emit(out: &mut Vec<u8>, name: &str, data: &Value) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    out.extend_from_slice(data.to_string().as_bytes());
    out.extend_from_slice(b"\n\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agents::translate::chat_to_messages;

    /// The events in `out`, each as its name and parsed data, checking the framing on the way.
    fn events(out: &[u8]) -> Vec<(String, Value)> {
        let text = std::str::from_utf8(out).unwrap();
        assert!(text.is_empty() || text.ends_with("\n\n"), "{text:?}");
        text.split_terminator("\n\n")
            .map(|event| {
                let (name, data) = event.strip_prefix("event: ").unwrap().split_once("\ndata: ").unwrap();
                let data: Value = serde_json::from_str(data).unwrap();
                assert_eq!(data["type"], name, "the event's name and its data's type agree");
                (name.to_owned(), data)
            })
            .collect()
    }

    fn run(chunks: &[Value]) -> Vec<(String, Value)> {
        let mut stream = MessagesStream::new("claude-ish");
        let mut out = Vec::new();
        for chunk in chunks {
            stream.chunk(chunk.to_string().as_bytes(), &mut out);
        }
        stream.finish(&mut out);
        events(&out)
    }

    fn names(events: &[(String, Value)]) -> Vec<&str> {
        events.iter().map(|(name, _)| name.as_str()).collect()
    }

    fn delta(delta: Value) -> Value {
        json!({"id": "chatcmpl-7", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta, "finish_reason": null}]})
    }

    fn finish_chunk(reason: &str) -> Value {
        json!({"id": "chatcmpl-7", "choices": [{"index": 0, "delta": {}, "finish_reason": reason}]})
    }

    fn usage_chunk() -> Value {
        json!({"id": "chatcmpl-7", "choices": [], "usage": {"prompt_tokens": 50, "completion_tokens": 9,
            "prompt_tokens_details": {"cached_tokens": 32}}})
    }

    /// What an Anthropic SDK's stream accumulator builds from the events.
    fn accumulate(events: &[(String, Value)]) -> Value {
        let mut message = Value::Null;
        let mut json_text: Vec<String> = Vec::new();
        for (name, data) in events {
            match name.as_str() {
                "message_start" => message = data["message"].clone(),
                "content_block_start" => {
                    let content = message["content"].as_array_mut().unwrap();
                    assert_eq!(data["index"], content.len(), "blocks are numbered in order");
                    content.push(data["content_block"].clone());
                    json_text.push(String::new());
                }
                "content_block_delta" => {
                    let index = data["index"].as_u64().unwrap() as usize;
                    let block = &mut message["content"][index];
                    match data["delta"]["type"].as_str().unwrap() {
                        "text_delta" => {
                            let text = format!(
                                "{}{}",
                                block["text"].as_str().unwrap(),
                                data["delta"]["text"].as_str().unwrap()
                            );
                            block["text"] = json!(text);
                        }
                        "input_json_delta" => {
                            json_text[index].push_str(data["delta"]["partial_json"].as_str().unwrap());
                            block["input"] = serde_json::from_str(&json_text[index]).unwrap_or(json!({}));
                        }
                        other => panic!("unexpected delta {other}"),
                    }
                }
                "message_delta" => {
                    message["stop_reason"] = data["delta"]["stop_reason"].clone();
                    message["stop_sequence"] = data["delta"]["stop_sequence"].clone();
                    for (key, value) in data["usage"].as_object().unwrap() {
                        message["usage"][key] = value.clone();
                    }
                }
                "content_block_stop" | "message_stop" => {}
                other => panic!("unexpected event {other}"),
            }
        }
        message
    }

    #[test]
    fn a_text_stream() {
        let got = run(&[
            delta(json!({"role": "assistant", "content": ""})),
            delta(json!({"content": "Hel"})),
            delta(json!({"content": "lo."})),
            finish_chunk("stop"),
            usage_chunk(),
        ]);
        assert_eq!(
            names(&got),
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop",
            ]
        );
        assert_eq!(
            got[0].1,
            json!({"type": "message_start", "message": {"id": "msg_chatcmpl-7", "type": "message", "role": "assistant",
                "model": "claude-ish", "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": 0, "output_tokens": 0}}})
        );
        assert_eq!(
            got[1].1,
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})
        );
        assert_eq!(
            got[2].1,
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hel"}})
        );
        assert_eq!(got[4].1, json!({"type": "content_block_stop", "index": 0}));
        assert_eq!(
            got[5].1,
            json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null},
                "usage": {"output_tokens": 9, "input_tokens": 18, "cache_read_input_tokens": 32,
                    "cache_creation_input_tokens": 0}})
        );
        assert_eq!(got[6].1, json!({"type": "message_stop"}));
        assert_eq!(accumulate(&got)["content"], json!([{"type": "text", "text": "Hello."}]));
    }

    #[test]
    fn a_tool_call_stream_with_fragmented_arguments() {
        let call = |index: u64, id: Option<&str>, name: Option<&str>, arguments: &str| {
            let mut call = json!({"index": index, "function": {"arguments": arguments}});
            if let Some(id) = id {
                call["id"] = json!(id);
                call["type"] = json!("function");
            }
            if let Some(name) = name {
                call["function"]["name"] = json!(name);
            }
            delta(json!({"tool_calls": [call]}))
        };
        let chunks = [
            delta(json!({"role": "assistant", "content": "Reading."})),
            call(0, Some("call_a"), Some("read"), ""),
            call(0, None, None, "{\"pa"),
            call(0, None, None, "th\": \"a\"}"),
            call(1, Some("call_b"), Some("ls"), "{}"),
            finish_chunk("tool_calls"),
            usage_chunk(),
        ];
        let got = run(&chunks);
        assert_eq!(
            names(&got),
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop",
            ]
        );
        assert_eq!(
            got[4].1,
            json!({"type": "content_block_start", "index": 1,
                "content_block": {"type": "tool_use", "id": "call_a", "name": "read", "input": {}}})
        );
        assert_eq!(
            got[5].1,
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"pa"}})
        );
        assert_eq!(got[11].1["delta"]["stop_reason"], "tool_use");

        // The stream accumulates to the message the same answer gives whole.
        let whole = json!({"id": "chatcmpl-7", "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": "Reading.", "tool_calls": [
                {"id": "call_a", "type": "function", "function": {"name": "read", "arguments": "{\"path\": \"a\"}"}},
                {"id": "call_b", "type": "function", "function": {"name": "ls", "arguments": "{}"}},
            ]}}], "usage": usage_chunk()["usage"]});
        let whole: Value =
            serde_json::from_slice(&chat_to_messages(whole.to_string().as_bytes(), "claude-ish").unwrap()).unwrap();
        assert_eq!(accumulate(&got), whole);
    }

    #[test]
    fn a_reused_call_index_with_a_new_id_is_a_new_call() {
        let call = |id: &str, name: &str, arguments: &str| {
            delta(json!({"tool_calls": [{"index": 0, "id": id, "function": {"name": name, "arguments": arguments}}]}))
        };
        let got = run(&[call("c1", "a", "{}"), call("c2", "b", "{\"x\":1}"), finish_chunk("stop")]);
        let message = accumulate(&got);
        assert_eq!(
            message["content"],
            json!([
                {"type": "tool_use", "id": "c1", "name": "a", "input": {}},
                {"type": "tool_use", "id": "c2", "name": "b", "input": {"x": 1}},
            ])
        );
        assert_eq!(message["stop_reason"], "tool_use");
    }

    #[test]
    fn a_matched_stop_string_is_the_stop_sequence() {
        let end =
            json!({"id": "x", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop", "stop_reason": "###"}]});
        let got = run(&[delta(json!({"content": "a"})), end]);
        let message_delta = &got[got.len() - 2].1;
        assert_eq!(message_delta["delta"], json!({"stop_reason": "stop_sequence", "stop_sequence": "###"}));
        assert_eq!(
            message_delta["usage"],
            json!({"output_tokens": 0, "input_tokens": 0, "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0})
        );
    }

    #[test]
    fn finish_is_idempotent_and_well_formed_without_chunks() {
        let mut stream = MessagesStream::new("m");
        assert!(!stream.is_finished());
        let mut out = Vec::new();
        stream.finish(&mut out);
        assert!(stream.is_finished());
        let got = events(&out);
        assert_eq!(names(&got), ["message_start", "message_delta", "message_stop"]);
        assert_eq!(got[0].1["message"]["id"], "msg_sluice");
        assert_eq!(got[1].1["delta"]["stop_reason"], "end_turn");
        let before = out.len();
        stream.finish(&mut out);
        stream.chunk(delta(json!({"content": "late"})).to_string().as_bytes(), &mut out);
        assert_eq!(out.len(), before);
    }

    #[test]
    fn an_error_chunk_ends_the_stream() {
        let mut stream = MessagesStream::new("m");
        let mut out = Vec::new();
        stream.chunk(delta(json!({"content": "a"})).to_string().as_bytes(), &mut out);
        let error =
            json!({"error": {"object": "error", "message": "engine died", "type": "InternalServerError", "code": 500}});
        stream.chunk(error.to_string().as_bytes(), &mut out);
        assert!(stream.is_finished());
        let before = out.len();
        stream.chunk(delta(json!({"content": "b"})).to_string().as_bytes(), &mut out);
        stream.finish(&mut out);
        assert_eq!(out.len(), before);
        let got = events(&out);
        assert_eq!(names(&got), ["message_start", "content_block_start", "content_block_delta", "error"]);
        assert_eq!(got[3].1, json!({"type": "error", "error": {"type": "api_error", "message": "engine died"}}));
    }

    #[test]
    fn data_that_is_not_a_json_object_is_ignored() {
        let mut stream = MessagesStream::new("m");
        let mut out = Vec::new();
        for data in [&b"not json"[..], b"[1,2]", b"\"text\"", b""] {
            stream.chunk(data, &mut out);
        }
        assert!(out.is_empty());
        assert!(!stream.is_finished());
    }
}
