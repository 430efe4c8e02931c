//! Server-sent events the way vLLM frames them: one `data: {json}\n\n` per token, an optional
//! usage chunk with empty `choices`, then `data: [DONE]\n\n`.

use bytes::Bytes;
use http::{HeaderValue, Response, header};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use sluice_openai::Usage;

use super::generate::{Plan, SourceEvent, TokenSource};
use super::http::{Body, BodyError};
use crate::sampling::FinishReason;
use crate::tokenizer::Tokenizer;

/// Serialises the chunks of one endpoint (`chat.completion.chunk` or `text_completion`).
pub(crate) trait ChunkFormat: Send + 'static {
    fn token(&self, text: String, first: bool, finish: Option<FinishReason>) -> Vec<u8>;
    fn usage(&self, usage: Usage) -> Vec<u8>;
}

/// Serialising our own response structs cannot fail; an empty object keeps the stream framed.
pub(crate) fn to_json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec())
}

enum Phase {
    Tokens,
    Usage(Usage),
    Done,
    End,
}

struct SseState<F> {
    source: TokenSource,
    format: F,
    tokenizer: Tokenizer,
    /// Output length, so the last token's chunk can carry `finish_reason`.
    total: u32,
    finish_reason: FinishReason,
    include_usage: bool,
    drop_after: Option<u32>,
    garbage_after: Option<u32>,
    sent: u32,
    phase: Phase,
}

impl<F: ChunkFormat> SseState<F> {
    async fn next_frame(&mut self) -> Option<Result<Frame<Bytes>, BodyError>> {
        if !matches!(self.phase, Phase::End)
            && let Some(n) = self.drop_after
            && self.sent >= n
        {
            self.phase = Phase::End;
            // Hyper discards unflushed output when a body fails; returning `Pending` once lets
            // it flush the tokens already sent, so the client sees exactly `n` of them.
            tokio::task::yield_now().await;
            return Some(Err(BodyError::InjectedDrop(self.sent)));
        }
        if !matches!(self.phase, Phase::End)
            && let Some(n) = self.garbage_after
            && self.sent >= n
        {
            self.phase = Phase::End;
            return Some(Ok(Frame::data(Bytes::from_static(GARBAGE_EVENT))));
        }
        loop {
            match std::mem::replace(&mut self.phase, Phase::End) {
                Phase::Tokens => match self.source.next().await {
                    Some(SourceEvent::Token(id)) => {
                        self.phase = Phase::Tokens;
                        let first = self.sent == 0;
                        self.sent += 1;
                        let finish = (self.sent >= self.total).then_some(self.finish_reason);
                        let text = self.tokenizer.piece(id, first);
                        return Some(Ok(event(&self.format.token(text, first, finish))));
                    }
                    Some(SourceEvent::Finished(f)) => self.phase = Phase::Usage(f.usage),
                    None => return Some(Err(BodyError::EngineStopped)),
                },
                Phase::Usage(usage) => {
                    self.phase = Phase::Done;
                    if self.include_usage {
                        return Some(Ok(event(&self.format.usage(usage))));
                    }
                }
                Phase::Done => {
                    return Some(Ok(Frame::data(Bytes::from_static(b"data: [DONE]\n\n"))));
                }
                Phase::End => return None,
            }
        }
    }
}

/// What `Faults::garbage_after_tokens` sends: an SSE event whose data is not JSON.
const GARBAGE_EVENT: &[u8] = b"data: <html>upstream connect error \xff</html>\n\n";

fn event(json: &[u8]) -> Frame<Bytes> {
    let mut buf = Vec::with_capacity(json.len() + 8);
    buf.extend_from_slice(b"data: ");
    buf.extend_from_slice(json);
    buf.extend_from_slice(b"\n\n");
    Frame::data(Bytes::from(buf))
}

pub(crate) struct SseOptions {
    pub total: u32,
    pub finish_reason: FinishReason,
    pub include_usage: bool,
    pub drop_after: Option<u32>,
    pub garbage_after: Option<u32>,
}

impl SseOptions {
    /// The stream options for a planned generation; `include_usage` is the client's choice.
    pub(crate) fn for_plan(plan: &Plan, include_usage: bool) -> Self {
        Self {
            total: plan.output.len() as u32,
            finish_reason: plan.finish_reason,
            include_usage,
            drop_after: plan.faults.drop_after_tokens,
            garbage_after: plan.faults.garbage_after_tokens,
        }
    }
}

/// A streaming response. Dropping it (client gone) drops the source, which aborts the sequence.
pub(crate) fn sse_response<F: ChunkFormat>(
    source: TokenSource,
    format: F,
    tokenizer: Tokenizer,
    options: SseOptions,
) -> Response<Body> {
    let state = SseState {
        source,
        format,
        tokenizer,
        total: options.total,
        finish_reason: options.finish_reason,
        include_usage: options.include_usage,
        drop_after: options.drop_after,
        garbage_after: options.garbage_after,
        sent: 0,
        phase: Phase::Tokens,
    };
    event_stream(futures_util::stream::unfold(state, |mut st| async move {
        let frame = st.next_frame().await?;
        Some((frame, st))
    }))
}

/// A `text/event-stream` response whose body is `frames`, for every streaming endpoint.
pub(crate) fn event_stream<S>(frames: S) -> Response<Body>
where
    S: futures_util::Stream<Item = Result<Frame<Bytes>, BodyError>> + Send + 'static,
{
    let mut resp = Response::new(StreamBody::new(frames).boxed_unsync());
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}
