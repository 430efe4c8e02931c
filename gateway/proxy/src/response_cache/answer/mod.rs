//! A cached answer: what a worker said, kept in one shape whether it came whole or streamed,
//! and told again in whichever form the next client asks for, in the API it was asked in.
//!
//! Only answers the cache can tell again faithfully are kept: text content (and vLLM's
//! reasoning text, for chat) per choice, each choice's role and finish reason, and the usage.
//! An answer with anything else in it — tool calls, log-probabilities, a refusal, an unfinished
//! choice, annotations, more than one content block — is served to its client as usual and not
//! stored.
//!
//! Each API has its own module: [`chunks`] for chat and completions (and embeddings, kept as
//! their body), [`responses`] for OpenAI's Responses API, [`messages`] for Anthropic's Messages
//! API. An answer is always told again in its own API: the key holds the API, so a chat entry
//! never answers a Messages request.

mod chunks;
mod messages;
mod responses;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sluice_metrics::Api;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnswerKind {
    Chat,
    Completion,
    Embedding,
    /// OpenAI's Responses API: a `response` object.
    Response,
    /// Anthropic's Messages API: a `message`.
    Message,
}

impl AnswerKind {
    pub fn of(api: Api) -> Self {
        match api {
            Api::ChatCompletions => AnswerKind::Chat,
            Api::Completions => AnswerKind::Completion,
            Api::Embeddings => AnswerKind::Embedding,
            Api::Responses => AnswerKind::Response,
            Api::Messages => AnswerKind::Message,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            AnswerKind::Chat => "chat",
            AnswerKind::Completion => "completion",
            AnswerKind::Embedding => "embedding",
            AnswerKind::Response => "response",
            AnswerKind::Message => "message",
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
    /// Chat and completions: the finish reason; Responses: the response's `status`
    /// (`completed` or `incomplete`); Messages: the `stop_reason`.
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

/// The prompt (all of it: a Messages answer's cache reads and writes included) and output
/// tokens the worker reported.
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
    /// Messages: the stop sequence the worker matched (`stop_sequence`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_sequence: Option<String>,
    /// Responses: the members of the worker's `response` object that a replay does not write
    /// itself — the request's settings as the worker echoed them (`instructions`, `tools`,
    /// `temperature`, …), `incomplete_details` — as a JSON object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub envelope: Option<String>,
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
    /// An answer of one text choice (Responses, Messages), stored now.
    fn single(kind: AnswerKind, model: String, content: Pieces, finish_reason: String, usage: TokenUsage) -> Self {
        let choice = CachedChoice {
            index: 0,
            role: Some("assistant".to_owned()),
            content,
            reasoning: Pieces::default(),
            finish_reason: Some(finish_reason),
        };
        CachedAnswer {
            kind,
            model,
            system_fingerprint: None,
            choices: vec![choice],
            usage,
            body: None,
            stop_sequence: None,
            envelope: None,
            stored_at_ms: now_ms(),
            worker_ms: 0,
        }
    }

    /// The answer in a worker's whole (not streamed) successful body; `None` when it holds
    /// something the cache cannot tell again.
    pub fn from_whole(kind: AnswerKind, body: &[u8], worker: Duration) -> Option<Self> {
        let Value::Object(top) = serde_json::from_slice::<Value>(body).ok()? else { return None };
        let mut answer = match kind {
            AnswerKind::Chat | AnswerKind::Completion | AnswerKind::Embedding => chunks::from_whole(kind, top, body)?,
            AnswerKind::Response => responses::from_response(top)?,
            AnswerKind::Message => messages::from_message(top)?,
        };
        answer.worker_ms = ms(worker);
        Some(answer)
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
        let strings = [&self.system_fingerprint, &self.body, &self.stop_sequence, &self.envelope];
        size_of::<CachedAnswer>()
            + choices
            + self.model.capacity()
            + strings.into_iter().map(|s| s.as_ref().map_or(0, String::capacity)).sum::<usize>()
    }

    /// The answer as a whole body in its API, with fresh ids (made from `id`, the request's)
    /// and creation time.
    pub fn whole_body(&self, id: &str) -> Vec<u8> {
        match self.kind {
            AnswerKind::Chat | AnswerKind::Completion | AnswerKind::Embedding => chunks::whole_body(self, id),
            AnswerKind::Response => responses::whole_body(self, id),
            AnswerKind::Message => messages::whole_body(self, id),
        }
    }

    /// The answer as server-sent events in its API: for chat and completions per choice its
    /// role, its text piece by piece, its finish reason, the usage when the client asked for it
    /// (`include_usage`) and `[DONE]`; for Responses and Messages their named events, whose
    /// usage is always in the stream.
    pub fn event_stream(&self, id: &str, include_usage: bool) -> Bytes {
        match self.kind {
            AnswerKind::Chat | AnswerKind::Completion | AnswerKind::Embedding => {
                chunks::event_stream(self, id, include_usage)
            }
            AnswerKind::Response => responses::event_stream(self, id),
            AnswerKind::Message => messages::event_stream(self, id),
        }
    }

    /// A Responses answer echoing `request`'s own values of `members` rather than those of the
    /// request it was stored for. Those are the members left out of the key (`user`, say): the
    /// rest of what a response echoes is the same in both requests, since it is in the key.
    /// `None` when there is nothing to change.
    pub fn echoing(&self, request: &[u8], members: &[String]) -> Option<Self> {
        if self.kind != AnswerKind::Response || members.is_empty() {
            return None;
        }
        let envelope = responses::echo(self.envelope.as_deref()?, request, members)?;
        Some(CachedAnswer { envelope: Some(envelope), ..self.clone() })
    }
}

/// Appends `value` as JSON (a string escaped and quoted). Serialising a string, a number or a
/// `Value` into memory cannot fail.
fn put_json<T: Serialize + ?Sized>(out: &mut BytesMut, value: &T) {
    let _ = serde_json::to_writer(out.writer(), value);
}

/// Appends a named event (`event: NAME`, then `data: JSON`), as Responses and Messages streams
/// send them.
fn put_event(out: &mut BytesMut, name: &str, data: &Value) {
    out.put_slice(b"event: ");
    out.put_slice(name.as_bytes());
    out.put_slice(b"\ndata: ");
    put_json(out, data);
    out.put_slice(b"\n\n");
}

/// What a miss's stream is gathered by, by its API.
#[derive(Debug)]
enum Gather {
    Chunks(chunks::ChunkCapture),
    Responses(responses::ResponsesCapture),
    Messages(messages::MessagesCapture),
    /// Something the cache cannot tell again went by, or the answer grew too large.
    Spoiled,
}

/// Builds a [`CachedAnswer`] from a stream's events as they pass to the client.
#[derive(Debug)]
pub struct StreamCapture {
    gather: Gather,
    bytes: usize,
    max_bytes: usize,
}

impl StreamCapture {
    pub fn new(kind: AnswerKind, max_bytes: usize) -> Self {
        let gather = match kind {
            // An embedding is never streamed.
            AnswerKind::Embedding => Gather::Spoiled,
            AnswerKind::Chat | AnswerKind::Completion => Gather::Chunks(chunks::ChunkCapture::new(kind)),
            AnswerKind::Response => Gather::Responses(responses::ResponsesCapture::default()),
            AnswerKind::Message => Gather::Messages(messages::MessagesCapture::default()),
        };
        StreamCapture { gather, bytes: 0, max_bytes }
    }

    /// A Messages request for `model` answered by a chat-completions worker: the capture sees
    /// the worker's chat chunks and keeps the message the client was sent, translated from them
    /// the same way.
    pub fn messages_through_chat(model: &str, max_bytes: usize) -> Self {
        let gather = Gather::Messages(messages::MessagesCapture::through_chat(model));
        StreamCapture { gather, bytes: 0, max_bytes }
    }

    /// One event's `data` as the client receives it (not `[DONE]`).
    pub fn push(&mut self, data: &[u8]) {
        self.bytes += data.len();
        let taken = match &mut self.gather {
            Gather::Spoiled => return,
            Gather::Chunks(c) => c.take(data),
            Gather::Responses(c) => c.take(data),
            Gather::Messages(c) => c.take(data),
        };
        if self.bytes > self.max_bytes || taken.is_none() {
            // What was gathered is of no use any more.
            self.gather = Gather::Spoiled;
        }
    }

    /// The answer, if the stream completed (every choice finished, the response completed or
    /// the message stopped) and its usage is known.
    pub fn finish(self, usage: Option<&sluice_openai::response::Usage>, worker: Duration) -> Option<CachedAnswer> {
        let usage = usage?;
        let usage = TokenUsage { prompt: usage.prompt_tokens, completion: usage.completion_tokens };
        let mut answer = match self.gather {
            Gather::Spoiled => return None,
            Gather::Chunks(c) => c.finish(usage)?,
            Gather::Responses(c) => c.finish(usage)?,
            Gather::Messages(c) => c.finish(usage)?,
        };
        for c in &mut answer.choices {
            c.content.shrink_to_fit();
            c.reasoning.shrink_to_fit();
        }
        answer.stored_at_ms = now_ms();
        answer.worker_ms = ms(worker);
        Some(answer)
    }
}

fn is_null(v: Option<&Value>) -> bool {
    v.is_none_or(Value::is_null)
}

/// Absent, `null` or an empty list: an optional member that says nothing.
fn is_empty(v: Option<&Value>) -> bool {
    is_null(v) || v.and_then(Value::as_array).is_some_and(Vec::is_empty)
}

fn count(map: &Map<String, Value>, name: &str) -> Option<u64> {
    map.get(name).map_or(Some(0), Value::as_u64)
}

#[cfg(test)]
pub(crate) mod test_util {
    use serde_json::Value;
    use sluice_openai::sse::SseParser;

    /// The events of a stream: each one's name (if any) and its data as JSON (not `[DONE]`).
    pub fn events(bytes: &[u8]) -> Vec<(Option<String>, Value)> {
        let mut parser = SseParser::new(1 << 20);
        parser.push(bytes);
        let mut out = Vec::new();
        while let Ok(Some(e)) = parser.next_event() {
            if let Some(data) = e.data.filter(|d| &d[..] != b"[DONE]") {
                out.push((e.event, serde_json::from_slice(&data).unwrap()));
            }
        }
        out
    }
}
