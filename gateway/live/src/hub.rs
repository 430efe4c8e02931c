//! [`LiveHub`]: a [`RecordSink`] that folds finished requests into the current second and, once
//! a second, publishes a [`LiveFrame`] to its subscribers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sluice_metrics::{RecordSink, RequestRecord};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::accumulate::{Sample, Second};
use crate::frame::{FRAME_VERSION, LiveFrame, PluginLive, WorkerLive};
use crate::sources::{LiveSources, PluginTotals, SloLookup};
use crate::window::Windows;

/// Independent locks the record path spreads over, so that request tasks on different cores
/// rarely meet on one.
const SHARDS: usize = 8;
/// Frames a slow subscriber may fall behind before it skips ahead.
const CHANNEL_CAPACITY: usize = 16;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded state is plain counters: a panic elsewhere cannot leave it inconsistent.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// State only the ticker touches.
struct Ticker {
    windows: Windows,
    last_tick: Instant,
    /// Plugin totals at the previous tick; `None` before the first.
    plugins: Option<HashMap<String, PluginTotals>>,
}

pub struct LiveHub {
    shards: Box<[Mutex<Second>]>,
    next_shard: AtomicUsize,
    slo: Box<dyn SloLookup>,
    sender: broadcast::Sender<Arc<LiveFrame>>,
    latest: Mutex<Option<Arc<LiveFrame>>>,
    ticker: Mutex<Ticker>,
    stopped: CancellationToken,
}

impl std::fmt::Debug for LiveHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveHub").field("subscribers", &self.sender.receiver_count()).finish_non_exhaustive()
    }
}

impl LiveHub {
    /// A hub that judges each request against `slo` (see [`SloLookup`]).
    pub fn new(slo: impl SloLookup + 'static) -> Arc<Self> {
        let (sender, _) = broadcast::channel(CHANNEL_CAPACITY);
        Arc::new(LiveHub {
            shards: (0..SHARDS).map(|_| Mutex::new(Second::default())).collect(),
            next_shard: AtomicUsize::new(0),
            slo: Box::new(slo),
            sender,
            latest: Mutex::new(None),
            ticker: Mutex::new(Ticker { windows: Windows::default(), last_tick: Instant::now(), plugins: None }),
            stopped: CancellationToken::new(),
        })
    }

    /// Frames as they are published. A receiver that falls more than a few frames behind gets
    /// `Lagged` and continues with the newest.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<LiveFrame>> {
        self.sender.subscribe()
    }

    /// The most recent frame, for a subscriber that should not wait a second for its first.
    pub fn latest(&self) -> Option<Arc<LiveFrame>> {
        lock(&self.latest).clone()
    }

    /// Fires once [`LiveHub::run`] has returned: open streams end.
    pub fn stopped(&self) -> &CancellationToken {
        &self.stopped
    }

    /// Publishes a frame every second until `cancel` fires. The server spawns this on its task
    /// tracker once it has built the gateway the sources read from.
    pub async fn run(self: Arc<Self>, sources: LiveSources, cancel: CancellationToken) {
        let mut interval = tokio::time::interval(Duration::from_secs(1));
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        interval.tick().await;
        self.reset_clock();
        loop {
            tokio::select! {
                () = cancel.cancelled() => break,
                _ = interval.tick() => {}
            }
            self.tick(&sources);
        }
        self.stopped.cancel();
    }

    fn reset_clock(&self) {
        lock(&self.ticker).last_tick = Instant::now();
    }

    /// Closes the current second and publishes its frame. [`LiveHub::run`]
    /// calls this every second; tests call it directly.
    pub fn tick(&self, sources: &LiveSources) -> Arc<LiveFrame> {
        let workers = sources.workers.as_ref().map(|w| w.workers()).unwrap_or_default();

        let mut second = Second::default();
        for shard in self.shards.iter() {
            second.merge(std::mem::take(&mut *lock(shard)));
        }
        let mut ticker = lock(&self.ticker);
        let now = Instant::now();
        let elapsed = now.duration_since(ticker.last_tick);
        ticker.last_tick = now;
        let traffic = ticker.windows.advance(second, elapsed.as_secs_f64());

        let mut frame = LiveFrame {
            v: FRAME_VERSION,
            at_ms: unix_ms(),
            interval_ms: u32::try_from(elapsed.as_millis()).unwrap_or(u32::MAX),
            total: traffic.total,
            tenants: traffic.tenants,
            models: traffic.models,
            apis: traffic.apis,
            ..LiveFrame::default()
        };
        frame.total.in_flight = sources.in_flight.as_ref().map(|f| f());
        frame.queues = sources.queues.as_ref().map(|f| f()).unwrap_or_default();
        frame.workers = workers
            .into_iter()
            .map(|w| WorkerLive {
                engine: w.engine,
                pool: w.pool,
                name: w.name,
                in_flight: w.in_flight,
                health: w.health,
            })
            .collect();
        if let Some(source) = &sources.plugins {
            let totals = source.totals();
            frame.plugins = plugin_rates(ticker.plugins.as_ref(), &totals, elapsed);
            ticker.plugins = Some(totals.into_iter().map(|t| (t.plugin.clone(), t)).collect());
        }
        drop(ticker);
        for panel in &sources.panels {
            if let Some(value) = panel.sample(elapsed) {
                frame.panels.insert(panel.name().to_owned(), value);
            }
        }

        let frame = Arc::new(frame);
        *lock(&self.latest) = Some(Arc::clone(&frame));
        // No subscribers is the normal state when nobody has the dashboard open.
        let _ = self.sender.send(Arc::clone(&frame));
        frame
    }
}

impl RecordSink for LiveHub {
    fn record(&self, record: &RequestRecord) {
        let target = self.slo.slo(&record.tenant, &record.model);
        let sample = Sample::of(record, target);
        let shard = self.next_shard.fetch_add(1, Ordering::Relaxed) % SHARDS;
        if let Some(shard) = self.shards.get(shard) {
            lock(shard).add(&record.tenant, &record.model, record.api, &sample);
        }
    }
}

fn unix_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Per-second plugin figures from two readings of cumulative counters. On the first tick there is
/// no earlier reading, so rates are zero; a plugin that appears later counts from zero.
pub(crate) fn plugin_rates(
    previous: Option<&HashMap<String, PluginTotals>>,
    now: &[PluginTotals],
    elapsed: Duration,
) -> std::collections::BTreeMap<String, PluginLive> {
    let secs = elapsed.as_secs_f64().max(1e-3);
    now.iter()
        .map(|t| {
            let zero = PluginTotals::default();
            let before = match previous {
                None => t,
                Some(p) => p.get(&t.plugin).unwrap_or(&zero),
            };
            // Counters only go up; a reset (a new registry) is treated as a fresh start.
            let calls = t.calls.checked_sub(before.calls).unwrap_or(t.calls);
            let errors = t.errors.checked_sub(before.errors).unwrap_or(t.errors);
            let busy = t.busy.checked_sub(before.busy).unwrap_or(t.busy);
            let short_circuits = t.short_circuits.checked_sub(before.short_circuits).unwrap_or(t.short_circuits);
            let live = PluginLive {
                calls_per_s: calls as f64 / secs,
                errors_per_s: errors as f64 / secs,
                mean_us: (calls > 0).then(|| busy.as_secs_f64() * 1e6 / calls as f64),
                calls_total: t.calls,
                errors_total: t.errors,
                breakers_open: t.breakers_open,
                breakers_half_open: t.breakers_half_open,
                short_circuits_per_s: short_circuits as f64 / secs,
            };
            (t.plugin.clone(), live)
        })
        .collect()
}
