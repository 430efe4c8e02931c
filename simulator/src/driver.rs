//! The real-time driver: one task that owns the [`Engine`], steps it against the tokio clock and
//! hands each step's tokens to the requests' streams once the step's time has passed.
//!
//! Requests talk to it over a channel (`EngineClient`). Dropping a [`Generation`] before it
//! finishes sends an abort, which the driver applies as soon as it arrives, even mid-step, so a
//! client that disconnects frees its batch slot and KV blocks at once.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sluice_openai::Usage;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::SimConfig;
use crate::engine::latency::{LatencyConfig, PolynomialLatency};
use crate::engine::{Engine, EngineError, EngineEvent, EngineStats, SeqId, SeqSpec, SimTime};
use crate::kv_log::KvEventLog;
use crate::metrics::{Metrics, TokenMetrics};
use crate::sampling::FinishReason;
use crate::stats::{StatsCell, bump};

/// What a request asks the engine to run.
#[derive(Debug)]
pub(crate) struct Submission {
    pub model: Arc<str>,
    pub prompt: Vec<u32>,
    pub output: Vec<u32>,
    pub finish_reason: FinishReason,
    pub stall: Duration,
    pub token_interval: Duration,
}

#[derive(Debug)]
pub(crate) enum GenEvent {
    Token(u32),
    Finished { reason: FinishReason, usage: Usage },
    Rejected(EngineError),
}

#[derive(Debug)]
enum Command {
    Add { id: SeqId, submission: Submission, sink: UnboundedSender<GenEvent> },
    Abort(SeqId),
}

#[derive(Debug, Clone)]
pub(crate) struct EngineClient {
    tx: UnboundedSender<Command>,
    next_id: Arc<AtomicU64>,
}

impl EngineClient {
    pub fn submit(&self, submission: Submission) -> Generation {
        let id = SeqId(self.next_id.fetch_add(1, Ordering::Relaxed));
        let (sink, rx) = unbounded_channel();
        // If the driver is gone the receiver sees a closed channel, which callers report.
        let _ = self.tx.send(Command::Add { id, submission, sink });
        Generation { rx, guard: AbortGuard { id, tx: self.tx.clone(), armed: true } }
    }
}

/// The receiving end of one request's tokens. Dropping it early aborts the sequence.
#[derive(Debug)]
pub(crate) struct Generation {
    rx: UnboundedReceiver<GenEvent>,
    guard: AbortGuard,
}

impl Generation {
    /// The next event; `None` if the engine stopped.
    pub async fn next(&mut self) -> Option<GenEvent> {
        let ev = self.rx.recv().await;
        if matches!(ev, Some(GenEvent::Finished { .. } | GenEvent::Rejected(_)) | None) {
            self.guard.armed = false;
        }
        ev
    }
}

#[derive(Debug)]
struct AbortGuard {
    id: SeqId,
    tx: UnboundedSender<Command>,
    armed: bool,
}

impl Drop for AbortGuard {
    fn drop(&mut self) {
        if self.armed {
            let _ = self.tx.send(Command::Abort(self.id));
        }
    }
}

struct Sink {
    tx: UnboundedSender<GenEvent>,
    model: Arc<str>,
    token_metrics: TokenMetrics,
    prompt_len: u32,
    arrived: SimTime,
    first_token: Option<SimTime>,
    last_token: Option<SimTime>,
}

pub(crate) struct Driver {
    engine: Engine,
    rx: UnboundedReceiver<Command>,
    sinks: HashMap<SeqId, Sink>,
    stats: Arc<StatsCell>,
    metrics: Arc<Metrics>,
    published: EngineStats,
    origin: Instant,
    kv_log: Option<Arc<KvEventLog>>,
}

/// Builds the engine for `config` with its client; run the driver with [`Driver::run`].
pub(crate) fn new(
    config: &SimConfig,
    stats: Arc<StatsCell>,
    metrics: Arc<Metrics>,
    kv_log: Option<Arc<KvEventLog>>,
) -> (EngineClient, Driver) {
    let (tx, rx) = unbounded_channel();
    // `--speedup` divides step times exactly like a faster GPU would.
    let latency = LatencyConfig { speed: config.latency.speed * config.speedup, ..config.latency };
    let mut engine = Engine::new(config.engine, Box::new(PolynomialLatency::new(latency)));
    if kv_log.is_some() {
        engine.record_kv_events();
    }
    let client = EngineClient { tx, next_id: Arc::new(AtomicU64::new(0)) };
    let driver = Driver {
        engine,
        rx,
        sinks: HashMap::new(),
        stats,
        metrics,
        published: EngineStats::default(),
        origin: Instant::now(),
        kv_log,
    };
    (client, driver)
}

impl Driver {
    pub async fn run(mut self, stop: CancellationToken) {
        loop {
            let now = self.origin.elapsed();
            let (wake, events, stepping) = match self.engine.step(now) {
                Some(step) => (Some(now + step.duration), step.events, true),
                None => (self.engine.next_ready_at(now), Vec::new(), false),
            };
            let due = wake.filter(|_| stepping).map(|w| self.origin + w);
            self.publish();
            let sleep = tokio::time::sleep_until(self.origin + wake.unwrap_or(now + Duration::from_secs(3600)));
            tokio::pin!(sleep);
            loop {
                tokio::select! {
                    biased;
                    () = stop.cancelled() => return,
                    cmd = self.rx.recv() => {
                        let Some(cmd) = cmd else { return };
                        let added = self.apply(cmd);
                        self.publish();
                        // An idle engine (or one only waiting on fault delays) starts at once;
                        // a running step finishes first, as a real engine's would.
                        if added && !stepping {
                            break;
                        }
                    }
                    () = &mut sleep, if wake.is_some() => break,
                }
            }
            self.deliver(events);
            if let Some(due) = due {
                self.stats.step_lag.record(Instant::now().saturating_duration_since(due));
            }
        }
    }

    fn apply(&mut self, cmd: Command) -> bool {
        match cmd {
            Command::Add { id, submission, sink } => {
                let now = self.origin.elapsed();
                let prompt_len = submission.prompt.len() as u32;
                let spec = SeqSpec {
                    prompt: submission.prompt.into(),
                    prompt_hashes: None,
                    output: submission.output,
                    finish_reason: submission.finish_reason,
                    ready_at: now + submission.stall,
                    token_interval: submission.token_interval,
                };
                match self.engine.add(id, spec) {
                    Ok(()) => {
                        self.sinks.insert(
                            id,
                            Sink {
                                tx: sink,
                                token_metrics: self.metrics.for_request(&submission.model),
                                model: submission.model,
                                prompt_len,
                                arrived: now,
                                first_token: None,
                                last_token: None,
                            },
                        );
                    }
                    Err(e) => {
                        let _ = sink.send(GenEvent::Rejected(e));
                    }
                }
                true
            }
            Command::Abort(id) => {
                if self.sinks.remove(&id).is_some() {
                    self.engine.abort(id);
                    bump(&self.stats.requests_aborted, 1);
                }
                false
            }
        }
    }

    fn deliver(&mut self, events: Vec<EngineEvent>) {
        // The step's cache changes become public when the step is over, like its tokens.
        if let Some(log) = &self.kv_log {
            log.submit(self.engine.take_kv_events());
        }
        for ev in events {
            match ev {
                EngineEvent::Token { id, token, index, at } => {
                    let Some(sink) = self.sinks.get_mut(&id) else {
                        continue; // aborted while the step ran
                    };
                    let itl = sink.last_token.map(|last| secs(at.saturating_sub(last)));
                    if index == 0 {
                        let ttft = secs(at.saturating_sub(sink.arrived));
                        self.metrics.first_token(&sink.model, sink.prompt_len, ttft);
                        bump(&self.stats.prompt_tokens, u64::from(sink.prompt_len));
                        sink.first_token = Some(at);
                    }
                    sink.token_metrics.token(itl);
                    bump(&self.stats.generation_tokens, 1);
                    sink.last_token = Some(at);
                    if sink.tx.send(GenEvent::Token(token)).is_err() {
                        self.sinks.remove(&id);
                        self.engine.abort(id);
                        bump(&self.stats.requests_aborted, 1);
                    }
                }
                EngineEvent::Finished {
                    id,
                    reason,
                    prompt_tokens,
                    cached_tokens,
                    completion_tokens,
                    first_scheduled,
                    at,
                    ..
                } => {
                    let Some(sink) = self.sinks.remove(&id) else {
                        continue;
                    };
                    let e2e = secs(at.saturating_sub(sink.arrived));
                    let decode = secs(at.saturating_sub(sink.first_token.unwrap_or(at)));
                    let queued = secs(first_scheduled.saturating_sub(sink.arrived));
                    self.metrics.finished(&sink.model, reason.as_str(), e2e, decode, queued, completion_tokens);
                    bump(&self.stats.requests_completed, 1);
                    bump(&self.stats.cached_tokens, u64::from(cached_tokens));
                    let usage =
                        Usage::new(u64::from(prompt_tokens), u64::from(cached_tokens), u64::from(completion_tokens));
                    let _ = sink.tx.send(GenEvent::Finished { reason, usage });
                }
            }
        }
        self.publish();
    }

    fn publish(&mut self) {
        let now = self.engine.stats();
        self.stats.publish_engine(&now);
        self.metrics.publish_engine(&self.published, &now);
        self.published = now;
    }
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}
