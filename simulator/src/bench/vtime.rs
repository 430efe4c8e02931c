//! The virtual-time driver: a deterministic discrete-event run of many engines and a routing
//! policy in one thread, with no sockets and no clock.
//!
//! Events are step-level (a worker's step ends, a request arrives, a metrics sample is due), not
//! per token: a step produces all its tokens at its end. The host side mirrors the gateway: it
//! counts its own in-flight requests and uncached prefill tokens per worker, serves scraped-style
//! engine metrics that are refreshed at most every `scrape_interval`, and computes each
//! candidate's prefix overlap from its [`PrefixIndex`], fed as the gateway's is: by the engines'
//! KV events, delivered `event_delay` after the step that caused them, and by a guess written on
//! each routing decision. The workers' actual caches are the ground truth the report compares
//! with (`best_cached_tokens`).
//!
//! Clients behave like inference-perf's. At most `max_in_flight` requests are out at once; a
//! request due while that many are out waits in the client's queue and is sent (and its TTFT
//! and timeout start) when one finishes. A request not finished `request_timeout` after it was
//! sent is abandoned, and its sequence is aborted in the engine (vLLM aborts a request whose
//! client disconnected, freeing its blocks); the tokens it got before that are not output.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::Duration;

use sluice_routing::{
    Candidate, CandidateId, CandidateStats, Decision, EngineMetrics, Health, PrefixIndex, PrefixOverlap,
    RequestSummary, RoutingPolicy,
};

use super::report::Histogram;
use super::workload::{Arrival, Workload};
use crate::engine::kv_events::KvCacheEvent;
use crate::engine::latency::{LatencyConfig, PolynomialLatency};
use crate::engine::{Engine, EngineConfig, EngineEvent, EngineStats, SeqId, SeqSpec};
use crate::sampling::FinishReason;

/// The simulated pool.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterConfig {
    pub workers: u32,
    pub engine: EngineConfig,
    pub latency: LatencyConfig,
    /// Per-worker speed factors (heterogeneous pools); missing entries are 1.0.
    pub speeds: Vec<f64>,
    /// How stale the engine metrics a policy sees may be.
    pub scrape_interval: Duration,
    /// How often queue and KV usage are sampled for the report.
    pub sample_interval: Duration,
    pub model: String,
    pub seed: u64,
    /// The client's timeout, counted from sending; `None`: clients wait forever.
    pub request_timeout: Option<Duration>,
    /// Most requests the client has out at once (inference-perf: `num_workers ×
    /// worker_max_concurrency`); `None`: open loop, every request is sent when due.
    pub max_in_flight: Option<u32>,
    /// How long an engine's KV events take to reach the host's prefix index.
    pub event_delay: Duration,
    /// How long the host believes its routing guesses (0: no guesses, events only).
    pub speculative_ttl: Duration,
}

/// What happened to one request.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RequestOutcome {
    pub worker: u32,
    /// When the workload scheduled it (its arrival).
    pub scheduled_s: f64,
    /// When the client sent it: later than `scheduled_s` if it waited for an in-flight slot.
    pub sent_s: f64,
    pub first_token_s: Option<f64>,
    /// When the last token arrived (the final one, or the last before a timeout).
    pub last_token_s: Option<f64>,
    /// Set only for requests that completed.
    pub finished_s: Option<f64>,
    pub prompt_tokens: u32,
    /// Tokens received (all of them, or those before a timeout).
    pub output_tokens: u32,
    pub cached_tokens: u32,
    /// Cached tokens on the best worker at routing time (ground truth the router may not see).
    pub best_cached_tokens: u32,
    pub prefill_computed: u32,
    /// Sum and count of inter-token gaps, and the largest one.
    pub itl_sum_s: f64,
    pub itl_count: u32,
    pub rejected: bool,
    /// The client gave up before the last token (see [`ClusterConfig::request_timeout`]).
    pub timed_out: bool,
}

/// One periodic look at every worker.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub at_s: f64,
    pub waiting: Vec<u32>,
    pub kv_usage: Vec<f64>,
    /// Cached blocks summed over workers / distinct cached blocks (1.0 = no prefix held twice).
    pub duplication: f64,
}

#[derive(Debug, Default)]
pub struct RunResult {
    pub requests: Vec<RequestOutcome>,
    pub samples: Vec<Sample>,
    /// Inter-token gaps per stage of the request (index = stage).
    pub itl: Vec<Histogram>,
    /// Output tokens by the time they were produced: `(time_s, count)` per step.
    pub token_times: Vec<(f64, u32)>,
    /// When each token of a request that later timed out arrived: produced, but not output any
    /// client kept (inference-perf counts only successful requests' tokens).
    pub abandoned_token_times: Vec<f64>,
    pub engine_stats: Vec<EngineStats>,
    pub end_s: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    StepEnd(u32),
    Arrival(u32),
    Timeout(u32),
    /// A batch of KV events (index into `Host::kv_batches`) reaches the host.
    KvEvents(u32),
    Sample,
}

struct Worker {
    engine: Engine,
    busy: bool,
    pending: Vec<EngineEvent>,
    in_flight: u32,
    in_flight_prefill: u64,
    scraped: Option<(Duration, EngineMetrics)>,
}

struct Host<'a> {
    cfg: &'a ClusterConfig,
    workload: &'a Workload,
    policy: &'a dyn RoutingPolicy,
    workers: Vec<Worker>,
    queue: BinaryHeap<Reverse<(Duration, u64, Event)>>,
    seq: u64,
    followers: HashMap<usize, Vec<usize>>,
    out: RunResult,
    last_token: Vec<f64>,
    /// Arrival times of the tokens of requests in flight, kept until they finish or time out.
    token_log: Vec<Vec<f64>>,
    /// Uncached prefill tokens the host charged to the worker for each request until its first token.
    charged: Vec<u64>,
    remaining: usize,
    /// Requests due but not sent: the client had `max_in_flight` out.
    client_queue: std::collections::VecDeque<usize>,
    /// Requests sent and not yet finished, timed out or refused.
    client_in_flight: u32,
    index: PrefixIndex,
    /// KV event batches on their way to the index: (worker, events), taken when delivered.
    kv_batches: Vec<Option<(u32, Vec<KvCacheEvent>)>>,
    overlaps: Vec<u32>,
    /// Where the next request's candidate list starts.
    rotation: usize,
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// Runs `workload` through `policy` on a simulated pool; deterministic for a seed.
pub fn run(cfg: &ClusterConfig, workload: &Workload, policy: &dyn RoutingPolicy) -> RunResult {
    let workers = (0..cfg.workers)
        .map(|w| {
            let speed = cfg.speeds.get(w as usize).copied().unwrap_or(1.0);
            let latency = LatencyConfig {
                seed: cfg.seed.wrapping_add(u64::from(w) * 0x9E37),
                speed: cfg.latency.speed * speed,
                ..cfg.latency
            };
            let mut engine = Engine::new(cfg.engine, Box::new(PolynomialLatency::new(latency)));
            engine.record_kv_events();
            Worker { engine, busy: false, pending: Vec::new(), in_flight: 0, in_flight_prefill: 0, scraped: None }
        })
        .collect();
    let n = workload.requests.len();
    let mut host = Host {
        cfg,
        workload,
        policy,
        workers,
        queue: BinaryHeap::new(),
        seq: 0,
        followers: HashMap::new(),
        out: RunResult {
            requests: vec![RequestOutcome::default(); n],
            itl: vec![Histogram::new(); workload.stages.len()],
            ..RunResult::default()
        },
        last_token: vec![0.0; n],
        token_log: vec![Vec::new(); n],
        charged: vec![0; n],
        remaining: n,
        client_queue: std::collections::VecDeque::new(),
        client_in_flight: 0,
        // Room for every worker's whole cache twice over: guesses and stale entries included.
        index: PrefixIndex::new(2 * cfg.workers as usize * cfg.engine.kv_blocks as usize, cfg.speculative_ttl),
        kv_batches: Vec::new(),
        overlaps: vec![0; cfg.workers as usize],
        rotation: 0,
    };
    for (i, r) in workload.requests.iter().enumerate() {
        match r.arrival {
            Arrival::At(t) => host.push(Duration::from_secs_f64(t.max(0.0)), Event::Arrival(i as u32)),
            Arrival::After { prev, .. } => host.followers.entry(prev).or_default().push(i),
        }
    }
    host.push(Duration::ZERO, Event::Sample);
    let mut now = Duration::ZERO;
    while let Some(Reverse((t, _, ev))) = host.queue.pop() {
        now = t;
        match ev {
            Event::Arrival(i) => host.schedule(i as usize, now),
            Event::StepEnd(w) => host.step_end(w as usize, now),
            Event::Timeout(i) => host.time_out(i as usize, now),
            Event::KvEvents(b) => host.deliver_kv_events(b as usize),
            Event::Sample => {
                host.sample(now);
                if host.remaining > 0 {
                    host.push(now + cfg.sample_interval.max(Duration::from_millis(1)), Event::Sample);
                }
            }
        }
    }
    host.out.end_s = secs(now);
    host.out.engine_stats = host.workers.iter().map(|w| w.engine.stats()).collect();
    host.out
}

impl Host<'_> {
    fn push(&mut self, at: Duration, ev: Event) {
        self.seq += 1;
        self.queue.push(Reverse((at, self.seq, ev)));
    }

    fn metrics_of(&mut self, w: usize, now: Duration) -> EngineMetrics {
        let interval = self.cfg.scrape_interval;
        let worker = &mut self.workers[w];
        match worker.scraped {
            Some((at, m)) if now.saturating_sub(at) < interval => m,
            _ => {
                let s = worker.engine.stats();
                let hit_rate = if s.prefix_queries > 0 { s.prefix_hits as f64 / s.prefix_queries as f64 } else { 0.0 };
                let m = EngineMetrics {
                    running: s.running,
                    waiting: s.waiting,
                    kv_usage: s.kv_usage,
                    prefix_cache_hit_rate: hit_rate,
                };
                worker.scraped = Some((now, m));
                m
            }
        }
    }

    /// Request `i` is due: sent now, or queued in the client until an in-flight slot frees.
    fn schedule(&mut self, i: usize, now: Duration) {
        self.out.requests[i].scheduled_s = secs(now);
        if self.cfg.max_in_flight.is_some_and(|cap| self.client_in_flight >= cap) {
            self.client_queue.push_back(i);
        } else {
            self.send(i, now);
        }
    }

    fn send(&mut self, i: usize, now: Duration) {
        self.client_in_flight += 1;
        let req = &self.workload.requests[i];
        let bs = self.cfg.engine.block_size;
        let prompt_len = req.prompt.len() as u32;
        let max_hit_blocks = (prompt_len.saturating_sub(1) / bs) as usize;
        let hashes = &req.hashes[..max_hit_blocks.min(req.hashes.len())];
        let mut candidates = Vec::with_capacity(self.workers.len());
        let mut best = 0u32;
        self.index.overlaps(hashes, now, &mut self.overlaps);
        // The candidates in an order rotated from request to request, as the gateway's pool
        // offers them: policies give ties to the first in that order.
        let n = self.workers.len();
        let start = self.rotation % n.max(1);
        self.rotation = self.rotation.wrapping_add(1);
        for w in (0..n).map(|k| (start + k) % n) {
            let actual = self.workers[w].engine.cached_prefix_blocks(hashes) as u32;
            best = best.max(actual * bs);
            let blocks = self.overlaps[w];
            let metrics = self.metrics_of(w, now);
            let worker = &self.workers[w];
            candidates.push(Candidate {
                id: CandidateId(w as u32),
                stats: CandidateStats {
                    in_flight_requests: worker.in_flight,
                    in_flight_prefill_tokens: worker.in_flight_prefill,
                    metrics: Some(metrics),
                    health: Health::Healthy,
                },
                overlap: PrefixOverlap { blocks, tokens: blocks * bs },
            });
        }
        let summary = RequestSummary {
            model: &self.cfg.model,
            prompt_tokens: prompt_len,
            block_size: bs,
            block_hashes: &req.hashes,
            max_output_tokens: Some(req.output_len),
        };
        let w = match self.policy.choose(&summary, &candidates) {
            Decision::Route(CandidateId(id)) if (id as usize) < self.workers.len() => id as usize,
            // Abstain: the host's default, like the gateway's pool, is the least in flight.
            _ => (0..self.workers.len()).min_by_key(|&w| (self.workers[w].in_flight, w)).unwrap_or(0),
        };
        let overlap = candidates.iter().find(|c| c.id.0 as usize == w).map_or(0, |c| c.overlap.tokens);
        if !self.cfg.speculative_ttl.is_zero() {
            self.index.speculate(w as u32, hashes, now);
        }
        let spec = SeqSpec {
            prompt: req.prompt.clone(),
            prompt_hashes: Some(req.hashes.clone()),
            output: super::workload::output_tokens(self.cfg.seed, i, req.output_len),
            finish_reason: FinishReason::Length,
            ready_at: now,
            token_interval: Duration::ZERO,
        };
        let o = &mut self.out.requests[i];
        *o = RequestOutcome {
            worker: w as u32,
            scheduled_s: o.scheduled_s,
            sent_s: secs(now),
            prompt_tokens: prompt_len,
            best_cached_tokens: best,
            ..RequestOutcome::default()
        };
        if self.workers[w].engine.add(SeqId(i as u64), spec).is_err() {
            o.rejected = true;
            self.finish_request(i, now);
            return;
        }
        let charge = u64::from(prompt_len.saturating_sub(overlap));
        self.charged[i] = charge;
        let worker = &mut self.workers[w];
        worker.in_flight += 1;
        worker.in_flight_prefill += charge;
        if let Some(t) = self.cfg.request_timeout {
            self.push(now + t, Event::Timeout(i as u32));
        }
        self.kick(w, now);
    }

    /// The client of request `i` gives up unless it already has its answer.
    fn time_out(&mut self, i: usize, now: Duration) {
        let o = &mut self.out.requests[i];
        if o.finished_s.is_some() || o.rejected || o.timed_out {
            return;
        }
        o.timed_out = true;
        let w = o.worker as usize;
        // A step in progress may already hold this sequence's next tokens; `step_end` drops
        // them. Its blocks are free for the worker's next step, as after a vLLM abort.
        self.workers[w].engine.abort(SeqId(i as u64));
        let charge = std::mem::take(&mut self.charged[i]);
        let worker = &mut self.workers[w];
        worker.in_flight = worker.in_flight.saturating_sub(1);
        worker.in_flight_prefill = worker.in_flight_prefill.saturating_sub(charge);
        let log = std::mem::take(&mut self.token_log[i]);
        self.out.abandoned_token_times.extend(log);
        self.finish_request(i, now);
        self.kick(w, now);
    }

    /// Starts a step on an idle worker that has work.
    fn kick(&mut self, w: usize, now: Duration) {
        let worker = &mut self.workers[w];
        if worker.busy {
            return;
        }
        if let Some(step) = worker.engine.step(now) {
            worker.busy = true;
            worker.pending = step.events;
            let end = now + step.duration;
            self.push(end, Event::StepEnd(w as u32));
        }
    }

    /// The KV events of worker `w`'s last step leave for the host's index.
    fn publish_kv_events(&mut self, w: usize, now: Duration) {
        let events = self.workers[w].engine.take_kv_events();
        if events.is_empty() {
            return;
        }
        if self.cfg.event_delay.is_zero() {
            self.apply_kv_events(w as u32, &events);
        } else {
            let b = self.kv_batches.len() as u32;
            self.kv_batches.push(Some((w as u32, events)));
            self.push(now + self.cfg.event_delay, Event::KvEvents(b));
        }
    }

    fn deliver_kv_events(&mut self, b: usize) {
        if let Some((w, events)) = self.kv_batches.get_mut(b).and_then(Option::take) {
            self.apply_kv_events(w, &events);
        }
    }

    fn apply_kv_events(&mut self, w: u32, events: &[KvCacheEvent]) {
        for ev in events {
            match ev {
                KvCacheEvent::BlockStored { block_hashes, .. } => self.index.stored(w, block_hashes),
                KvCacheEvent::BlockRemoved { block_hashes, .. } => self.index.removed(w, block_hashes),
                KvCacheEvent::AllBlocksCleared => self.index.cleared(w),
            }
        }
    }

    fn step_end(&mut self, w: usize, now: Duration) {
        self.publish_kv_events(w, now);
        let events = std::mem::take(&mut self.workers[w].pending);
        self.workers[w].busy = false;
        let t = secs(now);
        let mut tokens = 0u32;
        for ev in events {
            match ev {
                EngineEvent::Token { id, index, .. } => {
                    let i = id.0 as usize;
                    if self.out.requests[i].timed_out {
                        continue; // nobody is listening any more
                    }
                    tokens += 1;
                    self.token_log[i].push(t);
                    let o = &mut self.out.requests[i];
                    o.output_tokens = index + 1;
                    o.last_token_s = Some(t);
                    if index == 0 {
                        o.first_token_s = Some(t);
                        let charge = std::mem::take(&mut self.charged[i]);
                        let worker = &mut self.workers[w];
                        worker.in_flight_prefill = worker.in_flight_prefill.saturating_sub(charge);
                    } else {
                        let gap = t - self.last_token[i];
                        let o = &mut self.out.requests[i];
                        o.itl_sum_s += gap;
                        o.itl_count += 1;
                        let stage = self.workload.requests[i].stage;
                        if let Some(h) = self.out.itl.get_mut(stage) {
                            h.record(gap);
                        }
                    }
                    self.last_token[i] = t;
                }
                EngineEvent::Finished { id, cached_tokens, completion_tokens, prefill_computed, .. } => {
                    let i = id.0 as usize;
                    if self.out.requests[i].timed_out {
                        continue; // abandoned during its last step
                    }
                    self.token_log[i] = Vec::new();
                    let o = &mut self.out.requests[i];
                    o.finished_s = Some(t);
                    o.cached_tokens = cached_tokens;
                    o.output_tokens = completion_tokens;
                    o.prefill_computed = prefill_computed;
                    let worker = &mut self.workers[w];
                    worker.in_flight = worker.in_flight.saturating_sub(1);
                    self.finish_request(i, now);
                }
            }
        }
        if tokens > 0 {
            self.out.token_times.push((t, tokens));
        }
        self.kick(w, now);
    }

    fn finish_request(&mut self, i: usize, now: Duration) {
        self.remaining = self.remaining.saturating_sub(1);
        self.client_in_flight = self.client_in_flight.saturating_sub(1);
        if let Some(next) = self.client_queue.pop_front() {
            self.send(next, now);
        }
        if let Some(next) = self.followers.remove(&i) {
            for j in next {
                let think = match self.workload.requests[j].arrival {
                    Arrival::After { think_s, .. } => think_s,
                    Arrival::At(_) => 0.0,
                };
                self.push(now + Duration::from_secs_f64(think.max(0.0)), Event::Arrival(j as u32));
            }
        }
    }

    fn sample(&mut self, now: Duration) {
        // Counting duplicates walks every cache: do it on one sample in ten.
        let duplication = if self.out.samples.len().is_multiple_of(10) {
            let mut total = 0usize;
            let mut distinct = std::collections::HashSet::new();
            for w in &self.workers {
                for h in w.engine.cached_block_hashes() {
                    total += 1;
                    distinct.insert(h);
                }
            }
            if distinct.is_empty() { 1.0 } else { total as f64 / distinct.len() as f64 }
        } else {
            self.out.samples.last().map_or(1.0, |s| s.duplication)
        };
        self.out.samples.push(Sample {
            at_s: secs(now),
            waiting: self.workers.iter().map(|w| w.engine.stats().waiting).collect(),
            kv_usage: self.workers.iter().map(|w| w.engine.stats().kv_usage).collect(),
            duplication,
        });
    }
}
