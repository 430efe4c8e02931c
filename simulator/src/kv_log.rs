//! One worker's published KV event stream: batches of [`KvCacheEvent`]s with a monotonically
//! increasing sequence number, kept in a bounded ring so a subscriber that reconnects can replay
//! what it missed, and told plainly (a `gap` event) when the ring no longer holds it.
//!
//! vLLM publishes the same batches over ZMQ (PUB socket plus a replay socket keyed by sequence
//! number); here they travel as server-sent events on the worker's own port (`GET /kv_events`),
//! which the gateway can read with the HTTP client it already has.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use serde::Serialize;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::engine::kv_events::KvCacheEvent;

/// KV event publishing of one worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvEventsConfig {
    /// Publish events at all (`GET /kv_events` answers 404 when off).
    pub enabled: bool,
    /// How long after the engine step that produced a batch it becomes visible to subscribers
    /// (an event bus's latency, or a deliberately stale index in tests). Divided by
    /// `SimConfig::speedup`, like the other injected delays.
    pub publish_delay: Duration,
    /// Batches kept for replay (`?since=`); older ones are reported as a gap.
    pub buffer: usize,
}

impl Default for KvEventsConfig {
    fn default() -> Self {
        Self { enabled: true, publish_delay: Duration::ZERO, buffer: 4096 }
    }
}

/// Most batches sent to a subscriber in one body chunk.
const MAX_BATCHES_PER_CHUNK: usize = 256;
/// A comment line keeps idle subscriptions from being cut by proxies.
const KEEPALIVE: Duration = Duration::from_secs(15);

#[derive(Debug)]
pub(crate) struct KvEventLog {
    ring: Mutex<Ring>,
    /// The newest published sequence number (0 before the first batch).
    head: watch::Sender<u64>,
    closed: CancellationToken,
    delay: Duration,
    delayed: Option<UnboundedSender<Pending>>,
}

#[derive(Debug)]
struct Ring {
    /// Serialized SSE frames; the front one has sequence number `next_seq - len`.
    frames: VecDeque<Bytes>,
    capacity: usize,
    next_seq: u64,
}

impl Ring {
    fn oldest(&self) -> u64 {
        self.next_seq - self.frames.len() as u64
    }
}

#[derive(Debug)]
struct Pending {
    due: Instant,
    ts: f64,
    events: Vec<KvCacheEvent>,
}

#[derive(Serialize)]
struct BatchJson<'a> {
    seq: u64,
    /// Unix time in seconds at the end of the engine step that produced the events.
    ts: f64,
    events: &'a [KvCacheEvent],
}

#[derive(Serialize)]
struct GapJson {
    gap: Gap,
}

#[derive(Serialize)]
struct Gap {
    /// The sequence number the subscriber asked for next.
    expected_seq: u64,
    /// The sequence number the stream continues with.
    resume_seq: u64,
}

/// Runs the publish delay: batches wait here until they are due, in order.
#[derive(Debug)]
pub(crate) struct DelayedPublisher {
    rx: UnboundedReceiver<Pending>,
    log: Arc<KvEventLog>,
}

impl DelayedPublisher {
    pub async fn run(mut self, stop: CancellationToken) {
        loop {
            let pending = tokio::select! {
                biased;
                () = stop.cancelled() => return,
                p = self.rx.recv() => match p { Some(p) => p, None => return },
            };
            tokio::select! {
                biased;
                () = stop.cancelled() => return,
                () = tokio::time::sleep_until(pending.due) => {}
            }
            self.log.publish(pending.ts, &pending.events);
        }
    }
}

fn unix_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

impl KvEventLog {
    /// The log, and the task to spawn when batches are delayed. The first batch is
    /// `AllBlocksCleared`: a subscriber learns that this worker's cache starts empty.
    pub fn new(config: &KvEventsConfig) -> (Arc<Self>, Option<DelayedPublisher>) {
        let (tx, rx) = if config.publish_delay.is_zero() {
            (None, None)
        } else {
            let (tx, rx) = unbounded_channel();
            (Some(tx), Some(rx))
        };
        let log = Arc::new(Self {
            ring: Mutex::new(Ring { frames: VecDeque::new(), capacity: config.buffer.max(1), next_seq: 1 }),
            head: watch::Sender::new(0),
            closed: CancellationToken::new(),
            delay: config.publish_delay,
            delayed: tx,
        });
        log.publish(unix_now(), &[KvCacheEvent::AllBlocksCleared]);
        let task = rx.map(|rx| DelayedPublisher { rx, log: log.clone() });
        (log, task)
    }

    /// Hands over the events of a step that just ended; they are published after the delay.
    pub fn submit(&self, events: Vec<KvCacheEvent>) {
        if events.is_empty() {
            return;
        }
        let ts = unix_now();
        match &self.delayed {
            Some(tx) => {
                // A send fails only once the delay task has stopped, i.e. during shutdown.
                let _ = tx.send(Pending { due: Instant::now() + self.delay, ts, events });
            }
            None => self.publish(ts, &events),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Ring> {
        self.ring.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn publish(&self, ts: f64, events: &[KvCacheEvent]) {
        let seq = {
            let mut ring = self.lock();
            let seq = ring.next_seq;
            let json = serde_json::to_string(&BatchJson { seq, ts, events }).unwrap_or_else(|_| "{}".to_owned());
            ring.frames.push_back(Bytes::from(format!("id: {seq}\ndata: {json}\n\n")));
            ring.next_seq += 1;
            if ring.frames.len() > ring.capacity {
                ring.frames.pop_front();
            }
            seq
        };
        self.head.send_replace(seq);
    }

    /// The newest published sequence number (0 before the first batch).
    pub fn head(&self) -> u64 {
        *self.head.borrow()
    }

    /// Ends every subscription (the worker is shutting down).
    pub fn close(&self) {
        self.closed.cancel();
    }

    /// A subscription that delivers batches after `after` (the last sequence number the
    /// subscriber has), or only new ones when `after` is `None`.
    pub fn subscribe(self: &Arc<Self>, after: Option<u64>) -> Subscription {
        let rx = self.head.subscribe();
        let next = after.map_or_else(|| *rx.borrow() + 1, |a| a.saturating_add(1));
        Subscription { log: self.clone(), next, rx }
    }
}

#[derive(Debug)]
pub(crate) struct Subscription {
    log: Arc<KvEventLog>,
    next: u64,
    rx: watch::Receiver<u64>,
}

impl Subscription {
    /// The next body chunk (SSE frames), or `None` when the worker shuts down.
    pub async fn next_chunk(&mut self) -> Option<Bytes> {
        loop {
            self.rx.borrow_and_update();
            if let Some(chunk) = self.ready() {
                return Some(chunk);
            }
            tokio::select! {
                biased;
                () = self.log.closed.cancelled() => return None,
                changed = self.rx.changed() => changed.ok()?,
                () = tokio::time::sleep(KEEPALIVE) => return Some(Bytes::from_static(b": keepalive\n\n")),
            }
        }
    }

    /// Frames from `next` on, or a gap marker if they are gone (or were never published by this
    /// worker: a subscriber ahead of the stream is talking to a restarted worker).
    fn ready(&mut self) -> Option<Bytes> {
        let ring = self.log.lock();
        let (oldest, end) = (ring.oldest(), ring.next_seq);
        if self.next < oldest || self.next > end {
            let gap = Gap { expected_seq: self.next, resume_seq: oldest };
            self.next = oldest;
            let json = serde_json::to_string(&GapJson { gap }).unwrap_or_else(|_| "{}".to_owned());
            return Some(Bytes::from(format!("event: gap\ndata: {json}\n\n")));
        }
        if self.next == end {
            return None;
        }
        let start = (self.next - oldest) as usize;
        let mut chunk = BytesMut::new();
        for frame in ring.frames.iter().skip(start).take(MAX_BATCHES_PER_CHUNK) {
            chunk.extend_from_slice(frame);
            self.next += 1;
        }
        Some(chunk.freeze())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(b: Option<Bytes>) -> String {
        String::from_utf8(b.unwrap().to_vec()).unwrap()
    }

    #[tokio::test]
    async fn replays_from_the_ring_and_reports_what_fell_out() {
        let (log, task) = KvEventLog::new(&KvEventsConfig { buffer: 3, ..KvEventsConfig::default() });
        assert!(task.is_none());
        assert_eq!(log.head(), 1, "AllBlocksCleared first");
        let mut live = log.subscribe(None);
        for _ in 0..4 {
            log.submit(vec![KvCacheEvent::AllBlocksCleared]);
        }
        assert_eq!(log.head(), 5);
        let gap = text(live.next_chunk().await);
        assert_eq!(gap, "event: gap\ndata: {\"gap\":{\"expected_seq\":2,\"resume_seq\":3}}\n\n");
        let rest = text(live.next_chunk().await);
        assert_eq!(rest.matches("data: ").count(), 3, "{rest}");

        let mut replay = log.subscribe(Some(3));
        let frames = text(replay.next_chunk().await);
        assert!(frames.starts_with("id: 4\ndata: {\"seq\":4,"), "{frames}");
        assert!(frames.contains("id: 5\n"));

        // Ahead of the stream: this is not the worker the subscriber knew.
        let mut ahead = log.subscribe(Some(40));
        assert!(text(ahead.next_chunk().await).contains("\"expected_seq\":41,\"resume_seq\":3"));
        log.close();
        assert!(live.next_chunk().await.is_none());
    }
}
