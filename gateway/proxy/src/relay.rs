//! The streaming relay: forwards each SSE event to the client as soon as it is complete, and
//! measures the stream on the side (first token, token events, usage) without holding it.
//!
//! Backpressure is inherited: hyper polls this body only when the client connection can take
//! more, and the relay reads the upstream only when polled, so a slow client slows the upstream
//! read through TCP or HTTP/2 flow control. When the client goes away hyper drops the body, which
//! drops the upstream response and with it the upstream request; the record then says
//! `cancelled`.
//!
//! A client that stops reading is not polled at all, so it is watched from outside
//! ([`crate::client_watch`]): each frame handed out starts the client's turn, each poll ends it,
//! and a turn longer than the write timeout (or past the total deadline) gets the connection or
//! HTTP/2 stream dropped, and this body with it. The total deadline is checked on every poll
//! that finds data too, so a worker that never pauses cannot carry a stream past it. Neither a
//! total timeout nor a client's stall counts against the worker's health: only its silence
//! (idle timeout) and broken streams do.
//!
//! A stream still open when shutdown's grace period runs out is cut ([`crate::stream_cut`]):
//! the relay sends an SSE error event, records what the stream used and ends the body cleanly.
//!
//! A stream that ends without the worker's usage chunk (cut, cancelled, broken, timed out) is
//! billed on the gateway's own figures: the prompt estimate and the token events relayed
//! ([`Exchange::finish`]).
//!
//! A worker whose events carry data that is neither JSON nor `[DONE]`, or whose stream ends
//! without a single event with data (bytes that are not SSE at all), broke the stream: the
//! relay ends it with an SSE error event (`upstream_error`) instead of passing the bytes on, and
//! the worker is blamed like for a broken connection. Each event's data is only checked to start
//! with `{` ([`plausible_data`]): a full parse per chunk would cost more than the rest of the
//! relay. A bad first event never gets here: `stages/forward.rs` retries it elsewhere.
//!
//! Responses and Messages streams are measured by their events' names
//! ([`sluice_openai::agents::events`]): their delta events are the tokens, and their usage comes
//! in one event (Responses' `response.completed`) or two (Messages' `message_start` with the
//! input, `message_delta` with the output). A stream the relay itself ends gets an error event
//! in the request's API (`event: error` with Anthropic's body, for Messages).
//!
//! A Responses stream whose answer the worker stores has its id (from `response.created`) and
//! its endpoint recorded when `response.completed` (or `response.incomplete`) arrives
//! ([`crate::response_affinity`]), so that a request continuing it goes to that worker. With
//! Redis, that event and what follows it are held back until the record is written (at most
//! `[redis] timeout`): a client that read it can continue the response through any replica.
//!
//! A Messages request sent to a chat-completions worker (`Exchange::through_chat`) is measured
//! as the chat stream it is, and each of its events is then translated into the Messages
//! events the client reads ([`MessagesStream`]); the worker's `[DONE]`, or the stream's clean
//! end, closes the message.
//!
//! When the request's plugin chain has on-response-chunk hooks, each event with data is offered
//! to them after it was measured (so usage and timing are the worker's) and before it is sent.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame};
use memchr::memmem::Finder;
use sluice_metrics::{Api, Outcome};
use sluice_openai::agents::events::{AgentEvent, agent_event};
use sluice_openai::agents::response_id;
use sluice_openai::agents::translate::MessagesStream;
use sluice_openai::probe::{chunk_facts, strip_usage};
use sluice_openai::sse::{SseEvent, SseParser};
use sluice_openai::{Dialect, Usage};
use sluice_plugin_host::types::RequestInfo;
use sluice_plugin_host::{Chain, ChunkVerdict};
use tokio::task::JoinHandle;
use tokio::time::Sleep;

use crate::client_watch::ClientWatch;
use crate::error::{GatewayError, TimeoutPhase, sse_error_event_in};
use crate::exchange::{Completion, Exchange};
use crate::response_affinity::PendingRecord;
use crate::response_cache::answer::StreamCapture;
use crate::stages::cache::PendingStore;
use crate::stream_cut::{StreamCut, StreamCuts};
use crate::upstream::{FailureKind, InFlightGuard, WorkerBody};

/// Upper bound on one SSE event; larger means a broken upstream, not a big answer.
pub const MAX_EVENT_BYTES: usize = 8 * 1024 * 1024;
/// Ready events are gathered into one frame up to this size.
const COALESCE_LIMIT: usize = 64 * 1024;

/// What else watches the stream: the on-response-chunk plugins, and the response cache
/// gathering a miss's answer.
pub struct RelayTaps {
    pub chunk_hooks: Option<(Arc<Chain>, RequestInfo)>,
    pub capture: Option<(StreamCapture, PendingStore)>,
}

pub struct RelayLimits {
    pub idle: Duration,
    pub total_deadline: tokio::time::Instant,
}

pub struct Relay {
    upstream: WorkerBody,
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
    /// The chain and request info when the chain has on-response-chunk hooks.
    chunk_hooks: Option<(Arc<Chain>, RequestInfo)>,
    /// Events offered to the chunk hooks so far.
    chunks_offered: u32,
    /// A cache miss's answer being gathered, and where it goes if the stream completes.
    capture: Option<(StreamCapture, PendingStore)>,
    /// Told whose turn it is, when the listener watches the client.
    watch: Option<Arc<ClientWatch>>,
    /// Tells the relay when shutdown's grace period is over, when the listener installed it.
    cut: Option<StreamCut>,
    /// Whether an event with data has arrived: a stream without one was not an event stream.
    saw_data: bool,
    /// The API of a Responses or Messages stream; `None` for OpenAI's chunk streams.
    dialect: Option<Dialect>,
    /// A Messages stream's input usage (prompt, cached), from `message_start`, until
    /// `message_delta` brings the output's.
    agent_input: Option<(u64, u64)>,
    /// Turns a translated Messages request's chat stream into Messages events.
    translator: Option<MessagesStream>,
    /// A stored Responses answer's endpoint, recorded when the stream completes, and its id
    /// from the `response.created` event.
    affinity: Option<(PendingRecord, Option<String>)>,
    /// The write of that record to Redis, and what the relay holds back until it is done (the
    /// completion event, and anything after it): a client that read the end of the answer can
    /// continue it through any replica.
    recording: Option<(JoinHandle<()>, Option<Bytes>)>,
}

enum Verdict {
    Forward,
    Drop,
    /// Send an event with this `data` instead.
    Replace(Bytes),
}

impl Relay {
    pub fn new(
        mut exchange: Exchange,
        guard: InFlightGuard,
        upstream: WorkerBody,
        first: Bytes,
        strip_usage: bool,
        limits: RelayLimits,
        taps: RelayTaps,
    ) -> Self {
        let RelayTaps { chunk_hooks, capture } = taps;
        let translator = exchange.through_chat.then(|| MessagesStream::new(&exchange.model));
        let affinity = exchange.affinity.take().map(|pending| (pending, None));
        let dialect = match exchange.api {
            _ if exchange.through_chat => None,
            Some(Api::Responses) => Some(Dialect::Responses),
            Some(Api::Messages) => Some(Dialect::Messages),
            Some(Api::ChatCompletions | Api::Completions | Api::Embeddings) | None => None,
        };
        let started = Instant::now();
        let now = tokio::time::Instant::from_std(started);
        let mut relay = Relay {
            upstream,
            parser: SseParser::new(MAX_EVENT_BYTES),
            strip_usage,
            pending: None,
            idle: limits.idle,
            total_deadline: limits.total_deadline,
            last_data: now,
            timer: Box::pin(tokio::time::sleep_until((now + limits.idle).min(limits.total_deadline))),
            done: Completion { status: 200, ..Completion::default() },
            exchange: Some(exchange),
            guard: Some(guard),
            finished: false,
            chunk_hooks,
            chunks_offered: 0,
            capture,
            watch: ClientWatch::current(),
            cut: StreamCuts::register(),
            saw_data: false,
            dialect,
            agent_input: None,
            translator,
            affinity,
            recording: None,
        };
        let mut out = Gather::default();
        let processed = relay.process(&first, started, &mut out);
        relay.add_overhead(started.elapsed());
        if let Err(error) = processed {
            out.push(relay.fail(&error));
        }
        relay.pending = out.take();
        relay
    }

    pub fn is_finished(&self) -> bool {
        self.finished && self.pending.is_none() && self.recording.is_none()
    }

    /// Parses `chunk`, received at `now`, and adds the bytes to forward (complete events only)
    /// to `out`. The caller accounts the time as overhead.
    fn process(&mut self, chunk: &[u8], now: Instant, out: &mut Gather) -> Result<(), GatewayError> {
        self.parser.push(chunk);
        loop {
            let event = match self.parser.next_event() {
                Ok(Some(event)) => event,
                Ok(None) => return Ok(()),
                Err(e) => {
                    return Err(GatewayError::Upstream { model: self.model(), attempts: 1, reason: e.to_string() });
                }
            };
            self.relay_event(event, now, out)?;
        }
    }

    /// Measures one event, runs the chunk hooks on it, and adds what is left of it to `out`.
    fn relay_event(&mut self, event: SseEvent, now: Instant, out: &mut Gather) -> Result<(), GatewayError> {
        let verdict = self.inspect(&event, now)?;
        let verdict = self.chunk_hooks(&event, verdict)?;
        // The cache keeps what the client saw (after the chunk hooks), the usage aside.
        if let Some((capture, _)) = &mut self.capture {
            match (&verdict, &event.data) {
                (Verdict::Forward, Some(data)) if !event.is_done() => capture.push(data),
                (Verdict::Replace(data), _) => capture.push(data),
                _ => {}
            }
        }
        if let Some(translator) = &mut self.translator {
            let mut events = Vec::new();
            match (verdict, &event.data) {
                (Verdict::Drop, _) => {}
                // Comments and keep-alives mean the same in both dialects.
                (Verdict::Forward, None) => out.push(event.raw),
                (Verdict::Forward, Some(_)) if event.is_done() => translator.finish(&mut events),
                (Verdict::Forward, Some(data)) => translator.chunk(data, &mut events),
                (Verdict::Replace(data), _) => translator.chunk(&data, &mut events),
            }
            out.push(Bytes::from(events));
            return Ok(());
        }
        match verdict {
            Verdict::Forward => out.push(event.raw),
            Verdict::Drop => {}
            Verdict::Replace(data) => out.push(data_event(&data)),
        }
        Ok(())
    }

    /// Closes a translated message whose worker ended the stream without `[DONE]`.
    fn end_translation(&mut self, out: &mut Gather) {
        if let Some(translator) = &mut self.translator {
            let mut events = Vec::new();
            translator.finish(&mut events);
            out.push(Bytes::from(events));
        }
    }

    /// Offers an event the client is about to receive to the on-response-chunk hooks. A
    /// fail-closed failure ends the stream: the plugin may be there to keep something from
    /// reaching the client.
    fn chunk_hooks(&mut self, event: &SseEvent, verdict: Verdict) -> Result<Verdict, GatewayError> {
        let Some((chain, info)) = &self.chunk_hooks else { return Ok(verdict) };
        let data = match (&verdict, &event.data) {
            (Verdict::Drop, _) | (Verdict::Forward, None) => return Ok(verdict),
            (Verdict::Forward, Some(_)) if event.is_done() => return Ok(verdict),
            (Verdict::Forward, Some(data)) | (Verdict::Replace(data), _) => data,
        };
        let index = self.chunks_offered;
        self.chunks_offered = self.chunks_offered.saturating_add(1);
        let decided = chain.on_response_chunk(info, true, index, &String::from_utf8_lossy(data));
        match decided {
            Ok(ChunkVerdict::Forward) => Ok(verdict),
            Ok(ChunkVerdict::Replace(text)) => Ok(Verdict::Replace(Bytes::from(text))),
            Ok(ChunkVerdict::Drop) => Ok(Verdict::Drop),
            Err(failure) => {
                Err(GatewayError::PluginFailed { plugin: failure.0.plugin().to_owned(), kind: failure.0.kind() })
            }
        }
    }

    fn inspect(&mut self, event: &SseEvent, now: Instant) -> Result<Verdict, GatewayError> {
        let Some(data) = &event.data else { return Ok(Verdict::Forward) };
        self.saw_data = true;
        if event.is_done() {
            return Ok(Verdict::Forward);
        }
        if !plausible_data(data) {
            return Err(self.invalid_output("an event's data is not JSON"));
        }
        if let Some(dialect) = self.dialect {
            self.measure_agent(dialect, event.event.as_deref(), data, now);
            return Ok(Verdict::Forward);
        }
        Ok(self.measure(data, now))
    }

    /// Measures a Responses or Messages event. Their usage is always in the stream and always
    /// the client's to read: nothing is stripped.
    fn measure_agent(&mut self, dialect: Dialect, name: Option<&str>, data: &[u8], now: Instant) {
        match agent_event(dialect, name, data) {
            AgentEvent::Token => {
                self.done.token_events += 1;
                self.done.first_token_at.get_or_insert(now);
            }
            AgentEvent::Completed(usage) => {
                if usage.is_some() {
                    self.done.usage = usage;
                }
                self.record_response();
            }
            AgentEvent::Input { prompt, cached } => self.agent_input = Some((prompt, cached)),
            AgentEvent::Output { completion, input } => {
                if input.is_some() {
                    self.agent_input = input;
                }
                // Without the input's figures the stream is billed on the gateway's estimates.
                if let Some((prompt, cached)) = self.agent_input {
                    self.done.usage = Some(Usage::new(prompt, cached, completion));
                }
            }
            AgentEvent::Error(usage) => {
                self.done.outcome = Some(Outcome::UpstreamError);
                if usage.is_some() {
                    self.done.usage = usage;
                }
            }
            AgentEvent::Created => {
                if let Some((_, id @ None)) = &mut self.affinity {
                    *id = response_id::of_created_event(data);
                }
            }
            AgentEvent::Other => {}
        }
    }

    /// The worker completed a response it was asked to store (the events before said nothing
    /// of a failure): from now on a follow-up may continue it on this endpoint. The Redis write,
    /// if any, holds back what follows until it is done.
    fn record_response(&mut self) {
        if self.done.outcome.is_some() {
            return;
        }
        if let Some((pending, Some(id))) = self.affinity.take()
            && let Some(guard) = &self.guard
            && let Some(written) = pending.stream(&id, guard.endpoint())
        {
            self.recording = Some((written, None));
        }
    }

    fn measure(&mut self, data: &[u8], now: Instant) -> Verdict {
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
            Some(json) => Verdict::Replace(Bytes::from(json)),
            None => Verdict::Forward,
        }
    }

    fn invalid_output(&self, what: &str) -> GatewayError {
        GatewayError::Upstream {
            model: self.model(),
            attempts: 1,
            reason: format!("invalid stream from the worker: {what}"),
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
        // Only a stream that completed is stored: a cut one would be told again cut.
        if let Some((capture, store)) = self.capture.take()
            && self.done.outcome == Some(Outcome::Ok)
        {
            let worker = self.exchange.as_ref().map_or(Duration::ZERO, |ex| ex.start.elapsed());
            match capture.finish(self.done.usage.as_ref(), worker) {
                Some(answer) => store.keep(answer),
                None => store.cache.metrics.stored("not_cacheable"),
            }
        }
        if let Some(ex) = self.exchange.take() {
            ex.finish(self.done);
        }
        // The worker is not needed any more: a stream cut short cancels its request now, not
        // when the client gets round to reading the error event.
        self.upstream.close();
        self.guard.take();
    }

    /// Ends the stream with an error event the client can read: the upstream broke it, or a
    /// fail-closed chunk hook failed.
    fn fail(&mut self, error: &GatewayError) -> Bytes {
        let kind = match error {
            // The exchange's budget, spent by the client's pace as much as the worker's: a worker
            // that kept sending within the idle timeout did its job.
            GatewayError::UpstreamTimeout { phase: TimeoutPhase::Total, .. } => None,
            GatewayError::UpstreamTimeout { .. } => Some(FailureKind::Timeout),
            GatewayError::PluginFailed { .. } | GatewayError::ShuttingDown => None,
            _ => Some(FailureKind::Stream),
        };
        if let (Some(guard), Some(kind)) = (&self.guard, kind) {
            guard.endpoint().record_failure(kind);
        }
        if matches!(error, GatewayError::ShuttingDown) {
            // The listener logs the cut once for all its streams.
            tracing::debug!("stream cut at the end of the shutdown grace period");
        } else {
            tracing::warn!(error = %error, "stream failed after it started");
        }
        self.done.outcome = Some(error.outcome());
        let api = self.exchange.as_ref().and_then(|ex| ex.api);
        self.finish(None);
        sse_error_event_in(api, error)
    }

    fn timeout(&mut self, phase: TimeoutPhase) -> Bytes {
        let after = match phase {
            TimeoutPhase::Idle => self.idle,
            TimeoutPhase::FirstByte | TimeoutPhase::Total => Duration::ZERO,
        };
        let error = GatewayError::UpstreamTimeout { model: self.model(), phase, after };
        self.fail(&error)
    }
}

/// An SSE event carrying `data`.
fn data_event(data: &[u8]) -> Bytes {
    let mut buf = BytesMut::with_capacity(data.len() + 8);
    buf.extend_from_slice(b"data: ");
    buf.extend_from_slice(data);
    buf.extend_from_slice(b"\n\n");
    buf.freeze()
}

/// Whether an event's data (not `[DONE]`) can be an OpenAI chunk: it starts with `{` after
/// whitespace. Only the first byte or so is looked at, so every event can afford it.
pub fn plausible_data(data: &[u8]) -> bool {
    data.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
}

fn mentions_usage_or_error(data: &[u8]) -> bool {
    // Built once: `memmem::find` would build a searcher on every call, twice per event.
    static USAGE: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"usage\""));
    static ERROR: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"error\""));
    USAGE.find(data).is_some() || ERROR.find(data).is_some()
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
        let Some(watch) = this.watch.clone() else { return this.poll_relay(cx) };
        watch.resumed();
        let polled = this.poll_relay(cx);
        if matches!(polled, Poll::Ready(Some(_))) {
            watch.waiting(tokio::time::Instant::now(), this.total_deadline);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.is_finished()
    }
}

impl Relay {
    /// What the relay has for the client, held back while a completed response's record is on
    /// its way to Redis (see [`Relay::record_response`]).
    fn poll_relay(&mut self, cx: &mut Context<'_>) -> PollFrame {
        if let Some((written, held)) = &mut self.recording {
            if Pin::new(written).poll(cx).is_pending() {
                return Poll::Pending;
            }
            let held = held.take();
            self.recording = None;
            if held.is_some() {
                return frame(held);
            }
        }
        let polled = self.poll_upstream(cx);
        let Some((written, held)) = &mut self.recording else { return polled };
        let polled = match polled {
            Poll::Ready(Some(Ok(data))) => {
                *held = data.into_data().ok();
                None
            }
            other => Some(other),
        };
        // Registers the waker; ready at once when Redis answered at once.
        if Pin::new(written).poll(cx).is_pending() {
            return Poll::Pending;
        }
        let held = held.take();
        self.recording = None;
        polled.unwrap_or_else(|| frame(held))
    }

    fn poll_upstream(&mut self, cx: &mut Context<'_>) -> PollFrame {
        let this = self;
        if let Some(bytes) = this.pending.take() {
            return frame(Some(bytes));
        }
        if this.finished {
            return Poll::Ready(None);
        }
        if this.cut.as_ref().is_some_and(StreamCut::is_cut) {
            return frame(Some(this.fail(&GatewayError::ShuttingDown)));
        }
        let mut out = Gather::default();
        // One clock reading for everything one poll finds ready: the worker's chunked encoding
        // makes each event a frame of its own, and events that arrived together were received
        // at the same moment anyway.
        let mut received: Option<Instant> = None;
        loop {
            match Pin::new(&mut this.upstream).poll_frame(cx) {
                Poll::Ready(Some(Ok(upstream_frame))) => {
                    let Ok(data) = upstream_frame.into_data() else { continue };
                    let now = *received.get_or_insert_with(Instant::now);
                    if let Err(error) = this.process(&data, now, &mut out) {
                        this.add_overhead(now.elapsed());
                        out.push(this.fail(&error));
                        return frame(out.take());
                    }
                    if out.len() >= COALESCE_LIMIT {
                        break;
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    let reason = format!("stream broke: {e}");
                    let error = GatewayError::Upstream { model: this.model(), attempts: 1, reason };
                    out.push(this.fail(&error));
                    return frame(out.take());
                }
                Poll::Ready(None) => {
                    let started = received.unwrap_or_else(Instant::now);
                    let last = this
                        .parser
                        .finish()
                        .map_or(Ok(()), |event| this.relay_event(event, started, &mut out))
                        .and_then(|()| {
                            if this.saw_data {
                                Ok(())
                            } else {
                                Err(this.invalid_output("it ended without any event with data"))
                            }
                        });
                    this.add_overhead(started.elapsed());
                    match last {
                        Ok(()) => {
                            this.end_translation(&mut out);
                            this.finish(Some(Outcome::Ok));
                        }
                        Err(error) => out.push(this.fail(&error)),
                    }
                    return frame(out.take());
                }
                Poll::Pending => break,
            }
        }
        if let Some(started) = received {
            let now = Instant::now();
            this.add_overhead(now - started);
            this.last_data = tokio::time::Instant::from_std(now);
            // A worker that always has data ready never lets the timer below be polled.
            if this.last_data >= this.total_deadline {
                out.push(this.timeout(TimeoutPhase::Total));
                return frame(out.take());
            }
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
        if this.cut.as_ref().is_some_and(|cut| cut.poll_cut(cx)) {
            return frame(Some(this.fail(&GatewayError::ShuttingDown)));
        }
        Poll::Pending
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if let Some(watch) = &self.watch {
            watch.resumed();
        }
        if self.exchange.is_some() {
            // hyper dropped the body before the end: the client went away. Dropping
            // `upstream` right after this cancels the upstream request.
            self.finish(Some(Outcome::Cancelled));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::plausible_data;

    #[test]
    fn event_data_must_open_a_json_object() {
        assert!(plausible_data(br#"{"choices":[]}"#));
        assert!(plausible_data(b" \t{}"));
        assert!(!plausible_data(b"<html>"));
        assert!(!plausible_data(b"[1]"));
        assert!(!plausible_data(b""));
        assert!(!plausible_data(&[0xff]));
    }
}
