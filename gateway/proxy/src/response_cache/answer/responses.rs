//! OpenAI's Responses API. An answer the cache keeps is a `response` object that `completed`
//! (or is `incomplete`, cut by its output limit) whose output is one assistant message holding
//! one `output_text` part, without annotations or log-probabilities: reasoning items, function
//! calls, refusals and other output items are served but not stored.
//!
//! Told again, it is the same response under new ids (`resp_<request id>`, `msg_<request id>`)
//! and the current time, with the members the worker echoed from the request (its settings,
//! `incomplete_details`) as they were, and the usage of a prompt read wholly from cache. A
//! stream is the events the OpenAI SDKs read: `response.created`, `response.in_progress`,
//! `response.output_item.added`, `response.content_part.added`, a
//! `response.output_text.delta` per stored piece, `response.output_text.done`,
//! `response.content_part.done`, `response.output_item.done`, then `response.completed` (or
//! `response.incomplete`) with the usage; each with its `sequence_number`.

use bytes::{BufMut, Bytes, BytesMut};
use serde_json::{Map, Value, json};

use super::{AnswerKind, CachedAnswer, Pieces, TokenUsage, count, is_empty, is_null, now_ms, put_event, put_json};

/// Members of the `response` object a replay writes itself; the rest is kept as the envelope.
const WRITTEN: [&str; 8] = ["id", "object", "created_at", "completed_at", "status", "model", "output", "usage"];

/// The answer in a whole `response` object (a body, or what `response.completed` carries).
pub(super) fn from_response(mut top: Map<String, Value>) -> Option<CachedAnswer> {
    let status = top.get("status")?.as_str()?;
    if !matches!(status, "completed" | "incomplete") || !is_null(top.get("error")) {
        return None;
    }
    let status = status.to_owned();
    let text: Pieces = [output_text(top.get("output")?)?].into_iter().collect();
    let usage = top.get("usage")?.as_object()?;
    let usage = TokenUsage { prompt: usage.get("input_tokens")?.as_u64()?, completion: count(usage, "output_tokens")? };
    let model = top.get("model").and_then(Value::as_str).unwrap_or_default().to_owned();
    for name in WRITTEN {
        top.remove(name);
    }
    let mut answer = CachedAnswer::single(AnswerKind::Response, model, text, status, usage);
    answer.envelope = Some(serde_json::to_string(&top).ok()?);
    Some(answer)
}

/// The text of an output that is one assistant message with one plain text part.
fn output_text(output: &Value) -> Option<&str> {
    let [item] = output.as_array()?.as_slice() else { return None };
    let role = item.get("role").and_then(Value::as_str);
    if item.get("type")?.as_str()? != "message" || role.is_some_and(|r| r != "assistant") {
        return None;
    }
    let [part] = item.get("content")?.as_array()?.as_slice() else { return None };
    if part.get("type")?.as_str()? != "output_text"
        || !is_empty(part.get("annotations"))
        || !is_empty(part.get("logprobs"))
    {
        return None;
    }
    part.get("text")?.as_str()
}

/// `envelope` with `request`'s values of `members` wherever the worker echoed them; `None`
/// when nothing changes.
pub(super) fn echo(envelope: &str, request: &[u8], members: &[String]) -> Option<String> {
    let Ok(Value::Object(mut envelope)) = serde_json::from_str::<Value>(envelope) else { return None };
    let Ok(Value::Object(request)) = serde_json::from_slice::<Value>(request) else { return None };
    let mut changed = false;
    for name in members {
        if let Some(echoed) = envelope.get_mut(name) {
            let asked = request.get(name).cloned().unwrap_or(Value::Null);
            if *echoed != asked {
                *echoed = asked;
                changed = true;
            }
        }
    }
    if !changed {
        return None;
    }
    serde_json::to_string(&envelope).ok()
}

/// The response's `status` (`completed` or `incomplete`) and its text.
fn parts(a: &CachedAnswer) -> (&str, Option<&Pieces>) {
    let choice = a.choices.first();
    let status = choice.and_then(|c| c.finish_reason.as_deref()).unwrap_or("completed");
    (status, choice.map(|c| &c.content))
}

/// The `response` object with `status`, `output` and `usage`.
fn response_object(a: &CachedAnswer, id: &str, status: &str, output: Value, usage: Value) -> Value {
    let mut object =
        a.envelope.as_deref().and_then(|e| serde_json::from_str::<Map<String, Value>>(e).ok()).unwrap_or_default();
    object.insert("id".into(), json!(format!("resp_{id}")));
    object.insert("object".into(), json!("response"));
    object.insert("created_at".into(), json!(now_ms() / 1000));
    object.insert("status".into(), json!(status));
    object.insert("model".into(), json!(a.model));
    object.insert("output".into(), output);
    object.insert("usage".into(), usage);
    Value::Object(object)
}

fn item_id(id: &str) -> String {
    format!("msg_{id}")
}

fn text_part(text: &str) -> Value {
    json!({"type": "output_text", "text": text, "annotations": []})
}

/// The output message; `incomplete` when the response is.
fn message_item(id: &str, text: &str, response_status: &str) -> Value {
    let status = if response_status == "incomplete" { "incomplete" } else { "completed" };
    json!({"id": item_id(id), "type": "message", "status": status, "role": "assistant", "content": [text_part(text)]})
}

/// Usage as a client is told it on a hit: the whole prompt was cached.
fn usage_json(a: &CachedAnswer) -> Value {
    let TokenUsage { prompt, completion } = a.usage;
    json!({
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": prompt},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": prompt + completion,
    })
}

pub(super) fn whole_body(a: &CachedAnswer, id: &str) -> Vec<u8> {
    let (status, text) = parts(a);
    let output = json!([message_item(id, text.map_or("", Pieces::text), status)]);
    serde_json::to_vec(&response_object(a, id, status, output, usage_json(a))).unwrap_or_default()
}

/// Named events, each numbered.
struct Events {
    out: BytesMut,
    sequence: u64,
}

impl Events {
    fn push(&mut self, name: &str, mut data: Value) {
        if let Some(object) = data.as_object_mut() {
            object.insert("sequence_number".into(), json!(self.sequence));
        }
        self.sequence += 1;
        put_event(&mut self.out, name, &data);
    }
}

pub(super) fn event_stream(a: &CachedAnswer, id: &str) -> Bytes {
    let (status, text) = parts(a);
    let empty = Pieces::default();
    let text = text.unwrap_or(&empty);
    let item = item_id(id);
    let mut events =
        Events { out: BytesMut::with_capacity(text.text().len() * 2 + text.len() * 160 + 4096), sequence: 0 };
    let pending = response_object(a, id, "in_progress", json!([]), Value::Null);
    events.push("response.created", json!({"type": "response.created", "response": pending}));
    events.push("response.in_progress", json!({"type": "response.in_progress", "response": pending}));
    let added = json!({"id": item, "type": "message", "status": "in_progress", "role": "assistant", "content": []});
    events.push(
        "response.output_item.added",
        json!({"type": "response.output_item.added", "output_index": 0, "item": added}),
    );
    events.push(
        "response.content_part.added",
        json!({"type": "response.content_part.added", "item_id": item, "output_index": 0, "content_index": 0,
               "part": text_part("")}),
    );
    // The deltas are most of the stream: their common bytes are written once and copied.
    let mut head = BytesMut::with_capacity(160);
    head.put_slice(b"event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"item_id\":");
    put_json(&mut head, &item);
    head.put_slice(b",\"output_index\":0,\"content_index\":0,\"delta\":");
    for piece in text.iter().filter(|p| !p.is_empty()) {
        events.out.put_slice(&head);
        put_json(&mut events.out, piece);
        events.out.put_slice(format!(",\"logprobs\":[],\"sequence_number\":{}}}\n\n", events.sequence).as_bytes());
        events.sequence += 1;
    }
    let text = text.text();
    events.push(
        "response.output_text.done",
        json!({"type": "response.output_text.done", "item_id": item, "output_index": 0, "content_index": 0,
               "text": text, "logprobs": []}),
    );
    events.push(
        "response.content_part.done",
        json!({"type": "response.content_part.done", "item_id": item, "output_index": 0, "content_index": 0,
               "part": text_part(text)}),
    );
    let done = message_item(id, text, status);
    events.push(
        "response.output_item.done",
        json!({"type": "response.output_item.done", "output_index": 0, "item": done}),
    );
    let name = if status == "incomplete" { "response.incomplete" } else { "response.completed" };
    let response = response_object(a, id, status, json!([done]), usage_json(a));
    events.push(name, json!({"type": name, "response": response}));
    events.out.freeze()
}

/// Gathers a Responses stream: the text deltas as they arrive (the pieces of a replay), and
/// the answer from the final event, which holds the whole response.
#[derive(Debug, Default)]
pub(super) struct ResponsesCapture {
    pieces: Pieces,
    done: Option<CachedAnswer>,
}

impl ResponsesCapture {
    pub(super) fn take(&mut self, data: &[u8]) -> Option<()> {
        let Value::Object(mut event) = serde_json::from_slice::<Value>(data).ok()? else { return None };
        match event.get("type").and_then(Value::as_str)? {
            "response.output_text.delta" if self.done.is_none() => {
                let delta = event.get("delta")?.as_str()?;
                if !delta.is_empty() {
                    self.pieces.push(delta);
                }
            }
            "response.completed" | "response.incomplete" if self.done.is_none() => {
                let Some(Value::Object(response)) = event.remove("response") else { return None };
                self.done = Some(from_response(response)?);
            }
            // A failure, or anything after the end.
            "response.failed"
            | "error"
            | "response.output_text.delta"
            | "response.completed"
            | "response.incomplete" => return None,
            _ => {}
        }
        Some(())
    }

    /// The answer, if the response completed and its deltas add up to its text.
    pub(super) fn finish(self, usage: TokenUsage) -> Option<CachedAnswer> {
        let mut answer = self.done?;
        let choice = answer.choices.first_mut()?;
        if choice.content.text() != self.pieces.text() {
            return None;
        }
        if !self.pieces.is_empty() {
            choice.content = self.pieces;
        }
        answer.usage = usage;
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

    const WHOLE: &str = r#"{"id":"resp_w","object":"response","created_at":1,"status":"completed","error":null,
        "incomplete_details":null,"instructions":"be brief","model":"m","temperature":0.0,"user":"alice",
        "output":[{"id":"msg_w","type":"message","status":"completed","role":"assistant",
            "content":[{"type":"output_text","text":"Hello there","annotations":[]}]}],
        "parallel_tool_calls":true,"tool_choice":"auto","tools":[],"store":false,
        "usage":{"input_tokens":12,"input_tokens_details":{"cached_tokens":0},"output_tokens":2,"total_tokens":14}}"#;

    fn whole() -> CachedAnswer {
        CachedAnswer::from_whole(AnswerKind::Response, WHOLE.as_bytes(), Duration::from_millis(30)).unwrap()
    }

    /// The events a worker streams for `pieces` (as the simulator and vLLM send them).
    fn worker_stream(pieces: &[&str], status: &str) -> Vec<String> {
        let text: String = pieces.concat();
        let incomplete = if status == "incomplete" { json!({"reason": "max_output_tokens"}) } else { Value::Null };
        let final_response = json!({"id": "resp_s", "object": "response", "created_at": 1, "status": status,
            "error": null, "incomplete_details": incomplete,
            "model": "m", "instructions": null, "tools": [],
            "output": [{"id": "msg_s", "type": "message", "status": "completed", "role": "assistant",
                "content": [{"type": "output_text", "text": text, "annotations": []}]}],
            "usage": {"input_tokens": 9, "output_tokens": pieces.len()}});
        let mut out = vec![
            json!({"type": "response.created", "response": {"id": "resp_s", "status": "in_progress", "output": []}}),
            json!({"type": "response.output_item.added", "output_index": 0, "item": {"type": "message"}}),
        ];
        out.extend(pieces.iter().map(|p| json!({"type": "response.output_text.delta", "delta": p, "logprobs": []})));
        out.push(json!({"type": "response.output_text.done", "text": text}));
        let name = if status == "incomplete" { "response.incomplete" } else { "response.completed" };
        out.push(json!({"type": name, "response": final_response}));
        out.into_iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn a_whole_response_is_told_again_whole_with_new_ids_and_cached_usage() {
        let a = whole();
        assert_eq!(a.worker_ms, 30);
        let body: Value = serde_json::from_slice(&a.whole_body("r1")).unwrap();
        assert_eq!(body["id"], "resp_r1");
        assert_eq!(body["object"], "response");
        assert_eq!(body["status"], "completed");
        assert_eq!(body["model"], "m");
        assert_eq!(body["output"][0]["id"], "msg_r1");
        assert_eq!(body["output"][0]["content"][0]["text"], "Hello there");
        // What the worker echoed of the request is kept.
        assert_eq!(
            (&body["instructions"], &body["temperature"], &body["store"]),
            (&json!("be brief"), &json!(0.0), &json!(false))
        );
        assert_eq!(body["usage"]["input_tokens"], 12);
        assert_eq!(body["usage"]["input_tokens_details"]["cached_tokens"], 12);
        assert_eq!(body["usage"]["output_tokens"], 2);
        assert_eq!(body["usage"]["total_tokens"], 14);
        assert_ne!(body["created_at"], 1);
    }

    #[test]
    fn a_whole_response_is_told_again_as_the_events_the_sdks_read() {
        let stream = whole().event_stream("r2", false);
        let events = events(&stream);
        let names: Vec<&str> = events.iter().map(|(name, _)| name.as_deref().unwrap()).collect();
        assert_eq!(
            names,
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.completed",
            ]
        );
        for (i, (name, data)) in events.iter().enumerate() {
            assert_eq!(data["type"], name.as_deref().unwrap(), "the name and the type agree");
            assert_eq!(data["sequence_number"], i, "numbered in order");
        }
        assert_eq!(events[0].1["response"]["id"], "resp_r2");
        assert_eq!(events[0].1["response"]["status"], "in_progress");
        assert_eq!(events[0].1["response"]["instructions"], "be brief");
        assert_eq!(events[4].1["delta"], "Hello there");
        assert_eq!(events[4].1["item_id"], "msg_r2");
        let done = &events[8].1["response"];
        assert_eq!(done["output"][0]["content"][0]["text"], "Hello there");
        assert_eq!(done["usage"]["input_tokens_details"]["cached_tokens"], 12);
        assert!(!String::from_utf8_lossy(&stream).contains("[DONE]"), "Responses streams end without [DONE]");
    }

    #[test]
    fn a_streamed_response_keeps_its_pieces_and_is_told_again_whole() {
        let mut capture = StreamCapture::new(AnswerKind::Response, 1 << 20);
        for data in worker_stream(&["Hel", "lo", " \"you\""], "incomplete") {
            capture.push(data.as_bytes());
        }
        let a = capture.finish(Some(&Usage::new(9, 0, 3)), Duration::ZERO).unwrap();
        assert_eq!(a.choices[0].content.iter().collect::<Vec<_>>(), ["Hel", "lo", " \"you\""]);
        assert_eq!(a.usage, TokenUsage { prompt: 9, completion: 3 });
        let body: Value = serde_json::from_slice(&a.whole_body("r")).unwrap();
        assert_eq!(body["status"], "incomplete");
        assert_eq!(body["incomplete_details"]["reason"], "max_output_tokens");
        assert_eq!(body["output"][0]["status"], "incomplete");
        assert_eq!(body["output"][0]["content"][0]["text"], "Hello \"you\"");

        let events = events(&a.event_stream("r", true));
        let deltas: Vec<&str> = events
            .iter()
            .filter(|(name, _)| name.as_deref() == Some("response.output_text.delta"))
            .map(|(_, data)| data["delta"].as_str().unwrap())
            .collect();
        assert_eq!(deltas, ["Hel", "lo", " \"you\""]);
        let (name, last) = events.last().unwrap();
        assert_eq!(name.as_deref(), Some("response.incomplete"));
        assert_eq!(last["response"]["usage"]["output_tokens"], 3);
        // Serialised and read back (as Redis keeps it), the answer is the same.
        let stored = serde_json::to_vec(&a).unwrap();
        assert_eq!(serde_json::from_slice::<CachedAnswer>(&stored).unwrap(), a);
    }

    #[test]
    fn what_cannot_be_told_again_is_not_kept() {
        let parse = |body: String| CachedAnswer::from_whole(AnswerKind::Response, body.as_bytes(), Duration::ZERO);
        let reasoning = WHOLE.replace(
            r#""output":["#,
            r#""output":[{"id":"rs","type":"reasoning","summary":[],"content":[{"type":"reasoning_text","text":"hm"}]},"#,
        );
        assert!(parse(reasoning).is_none(), "a reasoning item");
        let call = WHOLE.replace(
            r#""output":[{"id":"msg_w","type":"message","status":"completed","role":"assistant",
            "content":[{"type":"output_text","text":"Hello there","annotations":[]}]}]"#,
            r#""output":[{"type":"function_call","call_id":"c","name":"f","arguments":"{}"}]"#,
        );
        assert!(parse(call).is_none(), "a function call");
        assert!(parse(WHOLE.replace(r#""annotations":[]"#, r#""annotations":[{"type":"url_citation"}]"#)).is_none());
        assert!(
            parse(WHOLE.replace(r#""annotations":[]"#, r#""annotations":[],"logprobs":[{"token":"a"}]"#)).is_none()
        );
        assert!(parse(WHOLE.replace(r#""status":"completed","error""#, r#""status":"failed","error""#)).is_none());
        assert!(parse(WHOLE.replace(r#""type":"output_text""#, r#""type":"refusal""#)).is_none());
        assert!(parse(WHOLE.replace(r#""usage":{"input_tokens":12,"#, r#""usage":{"#)).is_none(), "no usage");

        let spoiled = |events: Vec<String>| {
            let mut capture = StreamCapture::new(AnswerKind::Response, 1 << 20);
            for data in events {
                capture.push(data.as_bytes());
            }
            capture.finish(Some(&Usage::new(9, 0, 2)), Duration::ZERO)
        };
        let mut cut = worker_stream(&["a", "b"], "completed");
        cut.pop();
        assert!(spoiled(cut).is_none(), "never completed");
        let mut failed = worker_stream(&["a", "b"], "completed");
        failed.insert(3, json!({"type": "error", "message": "boom"}).to_string());
        assert!(spoiled(failed).is_none());
        let mut rewritten = worker_stream(&["a", "b"], "completed");
        rewritten[2] = json!({"type": "response.output_text.delta", "delta": "z"}).to_string();
        assert!(spoiled(rewritten).is_none(), "the deltas do not add up to the text");
        assert!(spoiled(worker_stream(&["a", "b"], "completed")).is_some());
    }

    #[test]
    fn a_hit_echoes_the_members_left_out_of_its_key_from_its_own_request() {
        let a = whole();
        let ignored = ["user".to_owned()];
        let bob = a.echoing(br#"{"model":"m","user":"bob"}"#, &ignored).unwrap();
        let body: Value = serde_json::from_slice(&bob.whole_body("r")).unwrap();
        assert_eq!(body["user"], "bob");
        assert_eq!(body["instructions"], "be brief");
        let nobody: Value =
            serde_json::from_slice(&a.echoing(br#"{"model":"m"}"#, &ignored).unwrap().whole_body("r")).unwrap();
        assert_eq!(nobody["user"], Value::Null);
        assert!(a.echoing(br#"{"model":"m","user":"alice"}"#, &ignored).is_none(), "nothing to change");
        assert!(a.echoing(br#"{"model":"m","user":"bob"}"#, &[]).is_none());
    }
}
