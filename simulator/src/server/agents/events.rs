//! The event streams of the Responses and Messages APIs, named (`event:`) and typed (`type`)
//! as OpenAI and Anthropic send them.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use http::Response;
use http_body::Frame;
use serde_json::{Value, json};
use sluice_openai::{Dialect, Usage};

use super::super::ResponseMeta;
use super::super::generate::{SourceEvent, TokenSource};
use super::super::http::{Body, BodyError};
use super::super::stream::event_stream;
use super::{StoredResponses, message_item, messages_usage, response_object, stop_reason};
use crate::sampling::FinishReason;
use crate::tokenizer::Tokenizer;

struct StreamState {
    dialect: Dialect,
    source: TokenSource,
    meta: ResponseMeta,
    tokenizer: Tokenizer,
    prompt_tokens: u64,
    drop_after: Option<u32>,
    text: String,
    sent: u32,
    /// Responses' `sequence_number`.
    sequence: u64,
    queue: VecDeque<Bytes>,
    ended: bool,
    /// Where a Responses answer is stored once complete (`store` unset or `true`).
    store: Option<Arc<StoredResponses>>,
}

impl StreamState {
    fn push(&mut self, name: &str, mut data: Value) {
        if self.dialect == Dialect::Responses
            && let Some(o) = data.as_object_mut()
        {
            o.insert("sequence_number".into(), json!(self.sequence));
            self.sequence += 1;
        }
        let json = serde_json::to_string(&data).unwrap_or_else(|_| "{}".to_owned());
        self.queue.push_back(Bytes::from(format!("event: {name}\ndata: {json}\n\n")));
    }

    fn start(&mut self) {
        let meta = &self.meta;
        match self.dialect {
            Dialect::Responses => {
                let response = response_object(meta, None, FinishReason::Stop, None);
                let item = json!({"id": format!("msg_{}", meta.id), "type": "message", "status": "in_progress", "role": "assistant", "content": []});
                let item_id = format!("msg_{}", meta.id);
                self.push("response.created", json!({"type": "response.created", "response": response}));
                self.push("response.in_progress", json!({"type": "response.in_progress", "response": response}));
                self.push(
                    "response.output_item.added",
                    json!({"type": "response.output_item.added", "output_index": 0, "item": item}),
                );
                self.push(
                    "response.content_part.added",
                    json!({"type": "response.content_part.added", "item_id": item_id, "output_index": 0, "content_index": 0,
                           "part": {"type": "output_text", "text": "", "annotations": []}}),
                );
            }
            Dialect::Messages => {
                let message = json!({
                    "id": meta.id, "type": "message", "role": "assistant", "model": meta.model, "content": [],
                    "stop_reason": null, "stop_sequence": null,
                    "usage": {"input_tokens": self.prompt_tokens, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": 1},
                });
                self.push("message_start", json!({"type": "message_start", "message": message}));
                self.push(
                    "content_block_start",
                    json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
                );
                self.push("ping", json!({"type": "ping"}));
            }
        }
    }

    fn token(&mut self, piece: String) {
        self.text.push_str(&piece);
        match self.dialect {
            Dialect::Responses => {
                let item_id = format!("msg_{}", self.meta.id);
                self.push(
                    "response.output_text.delta",
                    json!({"type": "response.output_text.delta", "item_id": item_id, "output_index": 0, "content_index": 0, "delta": piece, "logprobs": []}),
                );
            }
            Dialect::Messages => self.push(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}),
            ),
        }
    }

    fn finish(&mut self, reason: FinishReason, usage: Usage) {
        let text = std::mem::take(&mut self.text);
        match self.dialect {
            Dialect::Responses => {
                let item_id = format!("msg_{}", self.meta.id);
                let part = json!({"type": "output_text", "text": text, "annotations": []});
                self.push(
                    "response.output_text.done",
                    json!({"type": "response.output_text.done", "item_id": item_id, "output_index": 0, "content_index": 0, "text": text, "logprobs": []}),
                );
                self.push(
                    "response.content_part.done",
                    json!({"type": "response.content_part.done", "item_id": item_id, "output_index": 0, "content_index": 0, "part": part}),
                );
                let item = message_item(&self.meta, &text, "completed");
                self.push(
                    "response.output_item.done",
                    json!({"type": "response.output_item.done", "output_index": 0, "item": item}),
                );
                // Stored before the last event goes out, as vLLM does.
                if let Some(store) = &self.store {
                    store.remember(&self.meta.id);
                }
                let response = response_object(&self.meta, Some(&text), reason, Some(usage));
                let name = match reason {
                    FinishReason::Stop => "response.completed",
                    FinishReason::Length => "response.incomplete",
                };
                self.push(name, json!({"type": name, "response": response}));
            }
            Dialect::Messages => {
                self.push("content_block_stop", json!({"type": "content_block_stop", "index": 0}));
                let usage = messages_usage(usage);
                self.push(
                    "message_delta",
                    json!({"type": "message_delta", "delta": {"stop_reason": stop_reason(reason), "stop_sequence": null},
                           "usage": {"output_tokens": usage["output_tokens"]}}),
                );
                self.push("message_stop", json!({"type": "message_stop"}));
            }
        }
    }

    async fn next_frame(&mut self) -> Option<Result<Frame<Bytes>, BodyError>> {
        loop {
            if let Some(bytes) = self.queue.pop_front() {
                return Some(Ok(Frame::data(bytes)));
            }
            if self.ended {
                return None;
            }
            if self.drop_after.is_some_and(|n| self.sent >= n) {
                self.ended = true;
                // Pending once so hyper flushes what was sent before the failure cuts it.
                tokio::task::yield_now().await;
                return Some(Err(BodyError::InjectedDrop(self.sent)));
            }
            match self.source.next().await {
                Some(SourceEvent::Token(id)) => {
                    let piece = self.tokenizer.piece(id, self.sent == 0);
                    self.sent += 1;
                    self.token(piece);
                }
                Some(SourceEvent::Finished(f)) => {
                    self.ended = true;
                    self.finish(f.reason, f.usage);
                }
                None => {
                    self.ended = true;
                    return Some(Err(BodyError::EngineStopped));
                }
            }
        }
    }
}

/// A streamed answer: the opening events at once, one delta event per token, then the
/// closing events with the usage. A Responses answer is stored in `store` when it completes.
pub(crate) fn agent_stream(
    dialect: Dialect,
    source: TokenSource,
    meta: ResponseMeta,
    tokenizer: Tokenizer,
    prompt_tokens: u64,
    drop_after: Option<u32>,
    store: Option<Arc<StoredResponses>>,
) -> Response<Body> {
    let mut state = StreamState {
        dialect,
        source,
        meta,
        tokenizer,
        prompt_tokens,
        drop_after,
        text: String::new(),
        sent: 0,
        sequence: 0,
        queue: VecDeque::new(),
        ended: false,
        store,
    };
    state.start();
    event_stream(futures_util::stream::unfold(state, |mut st| async move {
        let frame = st.next_frame().await?;
        Some((frame, st))
    }))
}
