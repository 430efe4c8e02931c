//! Reading a streamed answer event by event, noting when each event arrived.

use std::time::{Duration, Instant};

use http::{Response, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::Value;
use sluice_openai::sse::SseParser;

/// Generous: the gateway's own limit is 8 MiB, a chunk from the simulator is a few hundred bytes.
const MAX_EVENT_BYTES: usize = 1 << 20;

/// One event's `data` (and `event:` name, when it has one), and when its last byte arrived.
#[derive(Debug, Clone)]
pub struct TimedEvent {
    pub event: Option<String>,
    pub data: String,
    /// Since the response head arrived.
    pub at: Duration,
}

impl TimedEvent {
    pub fn is_done(&self) -> bool {
        self.data == "[DONE]"
    }

    /// The payload as JSON (`None` for `[DONE]` or anything else that is not JSON).
    pub fn json(&self) -> Option<Value> {
        serde_json::from_str(&self.data).ok()
    }

    /// `data: {"error": …}`, the gateway's way of failing a stream that already started.
    pub fn is_error(&self) -> bool {
        self.json().is_some_and(|v| v.get("error").is_some())
    }

    /// A chunk with a non-null `usage` member.
    pub fn has_usage(&self) -> bool {
        self.json().is_some_and(|v| v.get("usage").is_some_and(|u| !u.is_null()))
    }

    /// The generated text this chunk carries (`delta.content` for chat, `text` for completions).
    pub fn content(&self) -> Option<String> {
        let v = self.json()?;
        let choice = v.get("choices")?.get(0)?;
        choice
            .get("delta")
            .and_then(|d| d.get("content"))
            .or_else(|| choice.get("text"))
            .and_then(Value::as_str)
            .map(str::to_owned)
    }
}

/// An event with data, as read at `at`.
fn timed(event: sluice_openai::sse::SseEvent, at: Duration) -> Option<TimedEvent> {
    let data = String::from_utf8_lossy(&event.data?).into_owned();
    Some(TimedEvent { event: event.event, data, at })
}

/// A streamed response being read.
#[derive(Debug)]
pub struct SseStream {
    pub version: Version,
    body: Incoming,
    parser: SseParser,
    start: Instant,
    ready: std::collections::VecDeque<TimedEvent>,
    ended: bool,
    /// The body ended with a transport error rather than cleanly.
    pub broke: bool,
}

impl SseStream {
    pub fn new(response: Response<Incoming>) -> Self {
        let version = response.version();
        SseStream {
            version,
            body: response.into_body(),
            parser: SseParser::new(MAX_EVENT_BYTES),
            start: Instant::now(),
            ready: std::collections::VecDeque::new(),
            ended: false,
            broke: false,
        }
    }

    /// The next event with data (comments are skipped), or `None` at the end of the body.
    pub async fn next(&mut self) -> Option<TimedEvent> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Some(event);
            }
            if self.ended {
                return None;
            }
            match self.body.frame().await {
                Some(Ok(frame)) => {
                    let at = self.start.elapsed();
                    if let Some(data) = frame.data_ref() {
                        self.parser.push(data);
                    }
                    while let Some(event) = self.parser.next_event().expect("event within the size limit") {
                        self.ready.extend(timed(event, at));
                    }
                }
                Some(Err(_)) => {
                    self.broke = true;
                    self.ended = true;
                }
                None => {
                    self.ended = true;
                    let at = self.start.elapsed();
                    self.ready.extend(self.parser.finish().and_then(|event| timed(event, at)));
                }
            }
        }
    }

    /// Reads every remaining event.
    pub async fn rest(&mut self) -> Vec<TimedEvent> {
        let mut out = Vec::new();
        while let Some(event) = self.next().await {
            out.push(event);
        }
        out
    }
}

/// The generated text of a whole stream, concatenated.
pub fn concat_content(events: &[TimedEvent]) -> String {
    events.iter().filter_map(TimedEvent::content).collect()
}
