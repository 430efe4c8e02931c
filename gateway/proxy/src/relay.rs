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
    idle_timer: Pin<Box<Sleep>>,
    total_timer: Pin<Box<Sleep>>,
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
            idle_timer: Box::pin(tokio::time::sleep(limits.idle)),
            total_timer: Box::pin(tokio::time::sleep_until(limits.total_deadline)),
            done: Completion { status: 200, ..Completion::default() },
            exchange: Some(exchange),
            guard: Some(guard),
            finished: false,
        };
        match relay.process(&first) {
            Ok(out) => relay.pending = out,
            Err(error) => relay.pending = Some(relay.fail(Outcome::UpstreamError, FailureKind::Stream, &error)),
        }
        relay
    }

    pub fn is_finished(&self) -> bool {
        self.finished && self.pending.is_none()
    }

    /// Parses `chunk` and returns the bytes to forward (complete events only).
    fn process(&mut self, chunk: &[u8]) -> Result<Option<Bytes>, GatewayError> {
        let started = Instant::now();
        self.parser.push(chunk);
        let mut out: Option<BytesMut> = None;
        let mut single: Option<Bytes> = None;
        loop {
            let event = match self.parser.next_event() {
                Ok(Some(event)) => event,
                Ok(None) => break,
                Err(e) => {
                    return Err(GatewayError::Upstream { model: self.model(), attempts: 1, reason: e.to_string() });
                }
            };
            let bytes = match self.inspect(&event, started) {
                Verdict::Forward => event.raw,
                Verdict::Drop => continue,
                Verdict::Replace(bytes) => bytes,
            };
            // One event per read is the common case: hand its bytes on without copying.
            match (&mut out, single.take()) {
                (None, None) => single = Some(bytes),
                (None, Some(prev)) => {
                    let mut buf = BytesMut::with_capacity(prev.len() + bytes.len());
                    buf.extend_from_slice(&prev);
                    buf.extend_from_slice(&bytes);
                    out = Some(buf);
                }
                (Some(buf), _) => buf.extend_from_slice(&bytes),
            }
        }
        self.add_overhead(started.elapsed());
        Ok(out.map(BytesMut::freeze).or(single))
    }

    fn inspect(&mut self, event: &SseEvent, now: Instant) -> Verdict {
        let Some(data) = &event.data else { return Verdict::Forward };
        if event.is_done() {
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

impl Body for Relay {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if let Some(bytes) = this.pending.take() {
            return Poll::Ready(Some(Ok(Frame::data(bytes))));
        }
        if this.finished {
            return Poll::Ready(None);
        }
        loop {
            match Pin::new(&mut this.upstream).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    let Ok(data) = frame.into_data() else { continue };
                    let deadline = tokio::time::Instant::now() + this.idle;
                    this.idle_timer.as_mut().reset(deadline);
                    match this.process(&data) {
                        Ok(Some(bytes)) => return Poll::Ready(Some(Ok(Frame::data(bytes)))),
                        Ok(None) => continue,
                        Err(error) => {
                            let bytes = this.fail(Outcome::UpstreamError, FailureKind::Stream, &error);
                            return Poll::Ready(Some(Ok(Frame::data(bytes))));
                        }
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    let error = GatewayError::Upstream {
                        model: this.model(),
                        attempts: 1,
                        reason: format!("stream broke: {e}"),
                    };
                    let bytes = this.fail(Outcome::UpstreamError, FailureKind::Stream, &error);
                    return Poll::Ready(Some(Ok(Frame::data(bytes))));
                }
                Poll::Ready(None) => {
                    let started = Instant::now();
                    let rest = this.parser.finish();
                    let bytes = rest.map(|event| match this.inspect(&event, started) {
                        Verdict::Forward => event.raw,
                        Verdict::Drop => Bytes::new(),
                        Verdict::Replace(b) => b,
                    });
                    this.add_overhead(started.elapsed());
                    this.finish(Some(Outcome::Ok));
                    return Poll::Ready(bytes.filter(|b| !b.is_empty()).map(|b| Ok(Frame::data(b))));
                }
                Poll::Pending => {
                    if this.total_timer.as_mut().poll(cx).is_ready() {
                        let bytes = this.timeout(TimeoutPhase::Total);
                        return Poll::Ready(Some(Ok(Frame::data(bytes))));
                    }
                    if this.idle_timer.as_mut().poll(cx).is_ready() {
                        let bytes = this.timeout(TimeoutPhase::Idle);
                        return Poll::Ready(Some(Ok(Frame::data(bytes))));
                    }
                    return Poll::Pending;
                }
            }
        }
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
