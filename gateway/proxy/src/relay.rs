//! The streaming relay: forwards each SSE event to the client as soon as it is complete, and
//! measures the stream on the side (first token, token events, usage) without holding it.
//!
//! Backpressure is inherited: hyper polls this body only when the client connection can take
//! more, and the relay reads the upstream only when polled, so a slow client slows the upstream
//! read through TCP or HTTP/2 flow control. When the client goes away hyper drops the body, which
//! drops the upstream response and with it the upstream request; the record then says
//! `cancelled`.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame};
use hyper::body::Incoming;
use sluice_metrics::Outcome;
use sluice_openai::probe::{chunk_facts, strip_usage};
use sluice_openai::sse::{SseEvent, SseParser};
use tokio::time::Sleep;

use crate::error::{GatewayError, TimeoutPhase, sse_error_event};
use crate::exchange::{Completion, Exchange};
use crate::upstream::{FailureKind, InFlightGuard};

/// Upper bound on one SSE event; larger means a broken upstream, not a big answer.
pub const MAX_EVENT_BYTES: usize = 8 * 1024 * 1024;
/// Ready events are gathered into one frame up to this size.
const COALESCE_LIMIT: usize = 64 * 1024;

pub struct RelayLimits {
    pub idle: Duration,
    pub total_deadline: tokio::time::Instant,
}

pub struct Relay {
    upstream: Incoming,
    parser: SseParser,
    strip_usage: bool,
    /// Output produced from the first upstream frame, sent on the first poll.
    pending: Option<Bytes>,
    idle: Duration,
    total_deadline: tokio::time::Instant,
    /// When the upstream last sent data; the idle deadline follows from it.
    last_data: tokio::time::Instant,
    /// One timer for both limits, armed at the earlier deadline. It is not moved on every frame:
    /// when it fires, it is re-armed if data arrived meanwhile (resetting a timer per token
    /// would cost a timer-wheel update per token).
    timer: Pin<Box<Sleep>>,
    done: Completion,
    /// `Some` until the stream ended one way or the other.
    exchange: Option<Exchange>,
    guard: Option<InFlightGuard>,
    finished: bool,
}

enum Verdict {
    Forward,
    Drop,
    Replace(Bytes),
}

impl Relay {
    pub fn new(
        exchange: Exchange,
        guard: InFlightGuard,
        upstream: Incoming,
        first: Bytes,
        strip_usage: bool,
        limits: RelayLimits,
    ) -> Self {
        let mut relay = Relay {
            upstream,
            parser: SseParser::new(MAX_EVENT_BYTES),
            strip_usage,
            pending: None,
            idle: limits.idle,
            total_deadline: limits.total_deadline,
            last_data: tokio::time::Instant::now(),
            timer: Box::pin(tokio::time::sleep_until(
                (tokio::time::Instant::now() + limits.idle).min(limits.total_deadline),
            )),
            done: Completion { status: 200, ..Completion::default() },
            exchange: Some(exchange),
            guard: Some(guard),
            finished: false,
        };
        let mut out = Gather::default();
        if let Err(error) = relay.process(&first, &mut out) {
            out.push(relay.fail(Outcome::UpstreamError, FailureKind::Stream, &error));
        }
        relay.pending = out.take();
        relay
    }

    pub fn is_finished(&self) -> bool {
        self.finished && self.pending.is_none()
    }

    /// Parses `chunk` and returns the bytes to forward (complete events only).
    fn process(&mut self, chunk: &[u8], out: &mut Gather) -> Result<(), GatewayError> {
        let started = Instant::now();
        self.parser.push(chunk);
        let result = loop {
            let event = match self.parser.next_event() {
                Ok(Some(event)) => event,
                Ok(None) => break Ok(()),
                Err(e) => {
                    break Err(GatewayError::Upstream { model: self.model(), attempts: 1, reason: e.to_string() });
                }
            };
            match self.inspect(&event, started) {
                Verdict::Forward => out.push(event.raw),
                Verdict::Drop => {}
                Verdict::Replace(bytes) => out.push(bytes),
            }
        };
        self.add_overhead(started.elapsed());
        result
    }

    fn inspect(&mut self, event: &SseEvent, now: Instant) -> Verdict {
        let Some(data) = &event.data else { return Verdict::Forward };
        if event.is_done() {
            return Verdict::Forward;
        }
        // Parsing every chunk would cost more than everything else the relay does. Once the
        // first token has been seen, only chunks that mention usage or an error need a look;
        // the rest are counted as token chunks (the fallback count when usage never comes).
        if self.done.first_token_at.is_some() && !mentions_usage_or_error(data) {
            self.done.token_events += 1;
            return Verdict::Forward;
        }
        let Some(facts) = chunk_facts(data) else { return Verdict::Forward };
        if facts.is_error {
            self.done.outcome = Some(Outcome::UpstreamError);
        }
        if facts.has_token {
            self.done.token_events += 1;
            self.done.first_token_at.get_or_insert(now);
        }
        let Some(usage) = facts.usage else { return Verdict::Forward };
        self.done.usage = Some(usage);
        if !self.strip_usage {
            return Verdict::Forward;
        }
        if facts.choices_empty {
            return Verdict::Drop;
        }
        match strip_usage(data) {
            Some(json) => {
                let mut buf = BytesMut::with_capacity(json.len() + 8);
                buf.extend_from_slice(b"data: ");
                buf.extend_from_slice(&json);
                buf.extend_from_slice(b"\n\n");
                Verdict::Replace(buf.freeze())
            }
            None => Verdict::Forward,
        }
    }

    fn model(&self) -> String {
        self.exchange.as_ref().map(|e| e.model.to_string()).unwrap_or_default()
    }

    fn add_overhead(&mut self, d: Duration) {
        if let Some(ex) = &mut self.exchange {
            ex.overhead += d;
        }
    }

    fn finish(&mut self, outcome: Option<Outcome>) {
        self.finished = true;
        if let Some(outcome) = outcome {
            self.done.outcome.get_or_insert(outcome);
        }
        if let Some(ex) = self.exchange.take() {
            ex.finish(self.done);
        }
        self.guard.take();
    }

    /// Ends the stream on an upstream failure with an error event the client can read.
    fn fail(&mut self, outcome: Outcome, kind: FailureKind, error: &GatewayError) -> Bytes {
        if let Some(guard) = &self.guard {
            guard.endpoint().record_failure(kind);
        }
        tracing::warn!(error = %error, "stream from upstream failed after it started");
        self.done.outcome = Some(outcome);
        self.finish(None);
        sse_error_event(error)
    }

    fn timeout(&mut self, phase: TimeoutPhase) -> Bytes {
        let after = match phase {
            TimeoutPhase::Idle => self.idle,
            TimeoutPhase::FirstByte | TimeoutPhase::Total => Duration::ZERO,
        };
        let error = GatewayError::UpstreamTimeout { model: self.model(), phase, after };
        self.fail(Outcome::UpstreamTimeout, FailureKind::Timeout, &error)
    }
}

fn mentions_usage_or_error(data: &[u8]) -> bool {
    memchr::memmem::find(data, b"\"usage\"").is_some() || memchr::memmem::find(data, b"\"error\"").is_some()
}

/// Collects the bytes to send in one frame; a single piece is passed on without copying.
#[derive(Default)]
struct Gather {
    single: Option<Bytes>,
    joined: Option<BytesMut>,
}

impl Gather {
    fn push(&mut self, bytes: Bytes) {
        if bytes.is_empty() {
            return;
        }
        match (&mut self.joined, self.single.take()) {
            (Some(buf), _) => buf.extend_from_slice(&bytes),
            (None, None) => self.single = Some(bytes),
            (None, Some(first)) => {
                let mut buf = BytesMut::with_capacity(first.len() + bytes.len());
                buf.extend_from_slice(&first);
                buf.extend_from_slice(&bytes);
                self.joined = Some(buf);
            }
        }
    }

    fn len(&self) -> usize {
        self.joined.as_ref().map_or_else(|| self.single.as_ref().map_or(0, Bytes::len), BytesMut::len)
    }

    fn take(self) -> Option<Bytes> {
        self.joined.map(BytesMut::freeze).or(self.single)
    }
}

type PollFrame = Poll<Option<Result<Frame<Bytes>, std::convert::Infallible>>>;

fn frame(bytes: Option<Bytes>) -> PollFrame {
    Poll::Ready(bytes.map(|b| Ok(Frame::data(b))))
}

impl Body for Relay {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    /// Everything the upstream has ready is gathered into one frame, so a burst of tokens costs
    /// the client connection one write rather than one per token.
    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> PollFrame {
        let this = &mut *self;
        if let Some(bytes) = this.pending.take() {
            return frame(Some(bytes));
        }
        if this.finished {
            return Poll::Ready(None);
        }
        let mut out = Gather::default();
        let mut received = false;
        loop {
            match Pin::new(&mut this.upstream).poll_frame(cx) {
                Poll::Ready(Some(Ok(upstream_frame))) => {
                    let Ok(data) = upstream_frame.into_data() else { continue };
                    received = true;
                    if let Err(error) = this.process(&data, &mut out) {
                        out.push(this.fail(Outcome::UpstreamError, FailureKind::Stream, &error));
                        return frame(out.take());
                    }
                    if out.len() >= COALESCE_LIMIT {
                        break;
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    let reason = format!("stream broke: {e}");
                    let error = GatewayError::Upstream { model: this.model(), attempts: 1, reason };
                    out.push(this.fail(Outcome::UpstreamError, FailureKind::Stream, &error));
                    return frame(out.take());
                }
                Poll::Ready(None) => {
                    let started = Instant::now();
                    if let Some(event) = this.parser.finish() {
                        match this.inspect(&event, started) {
                            Verdict::Forward => out.push(event.raw),
                            Verdict::Drop => {}
                            Verdict::Replace(bytes) => out.push(bytes),
                        }
                    }
                    this.add_overhead(started.elapsed());
                    this.finish(Some(Outcome::Ok));
                    return frame(out.take());
                }
                Poll::Pending => break,
            }
        }
        if received {
            this.last_data = tokio::time::Instant::now();
        }
        if let Some(bytes) = out.take() {
            return frame(Some(bytes));
        }
        while this.timer.as_mut().poll(cx).is_ready() {
            let now = tokio::time::Instant::now();
            if now >= this.total_deadline {
                return frame(Some(this.timeout(TimeoutPhase::Total)));
            }
            let idle_deadline = this.last_data + this.idle;
            if now >= idle_deadline {
                return frame(Some(this.timeout(TimeoutPhase::Idle)));
            }
            this.timer.as_mut().reset(idle_deadline.min(this.total_deadline));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.is_finished()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if self.exchange.is_some() {
            // hyper dropped the body before the end: the client went away. Dropping
            // `upstream` right after this cancels the upstream request.
            self.finish(Some(Outcome::Cancelled));
        }
    }
}
