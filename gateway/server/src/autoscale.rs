//! Per pool, how many workers it needs now: `sluice_pool_desired_replicas`, for a
//! HorizontalPodAutoscaler or KEDA to scale the pool's workers on, with the ratio it follows from
//! (`sluice_pool_load_ratio`) and that ratio's inputs.
//!
//! The load ratio is the largest of three measures of how loaded the pool is against how loaded
//! it should be, each 1.0 at the mark:
//! - the engines' own utilisation: their mean KV-cache usage over [`TARGET_KV_USAGE`] (an engine
//!   with a wait queue counts as full), so a pool whose memory fills grows before it queues;
//! - the p95 (the SLOs' own quantile, `ttft_p95_ms`), over the last `[autoscaling] window`'s
//!   streamed requests with a TTFT target, of measured TTFT over that target;
//! - the same for TPOT.
//!
//! Desired replicas are the available endpoints times the ratio, rounded up: at most double per
//! evaluation, at least one. An SLO being missed (a ratio above 1) can only add workers; an idle
//! pool asks for fewer, and the autoscaler's own stabilisation window decides how fast to give
//! them back. With no measure at all (engines whose metrics are not read, no SLOs) the ratio is
//! 1: the pool stays as it is.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use sluice_config::AutoscalingConfig;
use sluice_metrics::{Outcome, PoolLoadMetrics, RecordSink, RequestRecord};
use sluice_proxy::Gateway;
use sluice_proxy::upstream::Pool;
use sluice_store::slo::Slos;
use tokio_util::sync::CancellationToken;

/// KV-cache usage a worker should run at: above it a burst of long answers has no room to grow
/// into and the engine starts preempting.
pub const TARGET_KV_USAGE: f64 = 0.8;
/// SLO ratios kept per pool per tick; past it, the newest replace the oldest, so a burst costs
/// bounded memory and the percentile follows the end of the tick.
const MAX_SAMPLES: usize = 4096;
/// The quantile of the SLO ratios that drives the signal: the one the SLOs name.
const QUANTILE: f64 = 0.95;

/// What the load ratio is computed from.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LoadInputs {
    /// Endpoints serving now (healthy, not ejected, not drained).
    pub available: usize,
    /// Mean engine utilisation over the window: KV usage, or 1 for an engine with a wait queue.
    pub kv_usage: Option<f64>,
    /// p95 of measured over target, for requests that have one.
    pub ttft_slo_ratio: Option<f64>,
    pub tpot_slo_ratio: Option<f64>,
}

/// The load ratio and the replicas it asks for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoadSignal {
    pub ratio: f64,
    pub desired_replicas: u32,
}

/// The signal for `inputs`; see the module's documentation.
pub fn signal(inputs: &LoadInputs) -> LoadSignal {
    let ratio = [inputs.kv_usage.map(|u| u / TARGET_KV_USAGE), inputs.ttft_slo_ratio, inputs.tpot_slo_ratio]
        .into_iter()
        .flatten()
        .filter(|r| r.is_finite())
        .reduce(f64::max)
        .unwrap_or(1.0)
        .max(0.0);
    // A pool with no endpoint left is sized as if it had one: it needs at least that.
    let current = inputs.available.max(1) as f64;
    let desired = (current * ratio).ceil().clamp(1.0, current * 2.0);
    LoadSignal { ratio, desired_replicas: desired as u32 }
}

/// One tick's SLO ratios for a pool.
#[derive(Debug, Default)]
struct Ratios {
    ttft: VecDeque<f64>,
    tpot: VecDeque<f64>,
}

fn push(samples: &mut VecDeque<f64>, value: f64) {
    if samples.len() == MAX_SAMPLES {
        samples.pop_front();
    }
    samples.push_back(value);
}

/// One tick of a pool's window.
#[derive(Debug, Default)]
struct Tick {
    ratios: Ratios,
    kv_usage: Option<f64>,
}

#[derive(Debug, Default)]
struct PoolWindow {
    /// The newest last; at most the window's number of ticks.
    ticks: VecDeque<Tick>,
}

impl PoolWindow {
    fn inputs(&self, available: usize) -> LoadInputs {
        let quantile = |pick: fn(&Ratios) -> &VecDeque<f64>| {
            let mut all: Vec<f64> = self.ticks.iter().flat_map(|t| pick(&t.ratios).iter().copied()).collect();
            quantile(&mut all, QUANTILE)
        };
        let usages: Vec<f64> = self.ticks.iter().filter_map(|t| t.kv_usage).collect();
        LoadInputs {
            available,
            kv_usage: (!usages.is_empty()).then(|| usages.iter().sum::<f64>() / usages.len() as f64),
            ttft_slo_ratio: quantile(|r| &r.ttft),
            tpot_slo_ratio: quantile(|r| &r.tpot),
        }
    }
}

fn quantile(values: &mut [f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable_by(f64::total_cmp);
    let rank = ((values.len() as f64 * q).ceil() as usize).clamp(1, values.len());
    values.get(rank - 1).copied()
}

/// A record sink collecting each pool's SLO ratios, and the ticker that turns them and the
/// engines' figures into the signal.
pub struct Autoscaler {
    slos: Option<Arc<Slos>>,
    config: AutoscalingConfig,
    /// The current tick's ratios, by pool.
    current: Mutex<HashMap<Arc<str>, Ratios>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Plain samples: a panic elsewhere cannot leave them inconsistent.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Autoscaler {
    /// Judges requests against `slos` (none without a store: the signal then follows the engines).
    pub fn new(slos: Option<Arc<Slos>>, config: AutoscalingConfig) -> Arc<Self> {
        Arc::new(Autoscaler { slos, config, current: Mutex::new(HashMap::new()) })
    }

    /// Ticks per window: the window's length in intervals, rounded up.
    fn window_ticks(&self) -> usize {
        let ticks = self.config.window.as_secs_f64() / self.config.interval.as_secs_f64();
        (ticks.ceil() as usize).max(1)
    }

    /// Recomputes every pool's signal each tick until `cancel` fires.
    pub async fn run(self: Arc<Self>, gateway: Arc<Gateway>, cancel: CancellationToken) {
        let mut windows: HashMap<Arc<str>, PoolWindow> = HashMap::new();
        let mut interval = tokio::time::interval(self.config.interval);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                _ = interval.tick() => {}
            }
            self.tick(&gateway, &mut windows);
        }
    }

    fn tick(&self, gateway: &Gateway, windows: &mut HashMap<Arc<str>, PoolWindow>) {
        let mut ratios = std::mem::take(&mut *lock(&self.current));
        let upstreams = gateway.upstreams();
        let now = Instant::now();
        for pool in &upstreams.pools {
            let window = windows.entry(Arc::clone(&pool.name)).or_default();
            while window.ticks.len() >= self.window_ticks() {
                window.ticks.pop_front();
            }
            let max_age = pool.config.engine_metrics.max_age;
            window.ticks.push_back(Tick {
                ratios: ratios.remove(&pool.name).unwrap_or_default(),
                kv_usage: utilisation(pool, now, max_age),
            });
            let available = pool.endpoints.iter().filter(|e| e.is_available()).count();
            publish(&gateway.metrics.pool_load(&pool.name), &window.inputs(available));
        }
        windows.retain(|name, _| {
            let kept = upstreams.pools.iter().any(|p| p.name == *name);
            if !kept {
                gateway.metrics.forget_pool_load(name);
            }
            kept
        });
    }
}

/// The mean utilisation of the pool's serving engines with a fresh reading.
fn utilisation(pool: &Pool, now: Instant, max_age: Duration) -> Option<f64> {
    let readings: Vec<f64> = pool
        .endpoints
        .iter()
        .filter(|e| e.is_available())
        .filter_map(|e| e.engine.last())
        .filter(|s| s.age(now) <= max_age)
        .filter_map(|s| {
            let queued = s.reading.waiting.is_some_and(|w| w > 0.0);
            match (s.reading.kv_cache_usage, queued) {
                (_, true) => Some(1.0),
                (usage, false) => usage,
            }
        })
        .collect();
    (!readings.is_empty()).then(|| readings.iter().sum::<f64>() / readings.len() as f64)
}

fn publish(metrics: &PoolLoadMetrics, inputs: &LoadInputs) {
    let signal = signal(inputs);
    metrics.desired_replicas.set(i64::from(signal.desired_replicas));
    metrics.ratio.set(signal.ratio);
    metrics.input("kv_usage", inputs.kv_usage);
    metrics.input("ttft_slo_ratio", inputs.ttft_slo_ratio);
    metrics.input("tpot_slo_ratio", inputs.tpot_slo_ratio);
    metrics.input("available_endpoints", Some(inputs.available as f64));
}

impl RecordSink for Autoscaler {
    fn record(&self, record: &RequestRecord) {
        // Only what a worker answered in full says how the pool keeps up.
        let (Some(slos), Some(pool), Outcome::Ok) = (&self.slos, &record.pool, record.outcome) else { return };
        let Some(target) = slos.current().target(&record.tenant, &record.model) else { return };
        let ratio = |measured: Option<Duration>, target: Option<Duration>| {
            let (measured, target) = (measured?, target?);
            (!target.is_zero()).then(|| measured.as_secs_f64() / target.as_secs_f64())
        };
        // A whole answer's first token is its last: its TTFT is its whole time and says nothing
        // of the queue alone, so only streams are judged.
        let ttft = if record.stream { ratio(record.ttft, target.ttft) } else { None };
        let tpot = ratio(record.tpot, target.tpot);
        if ttft.is_none() && tpot.is_none() {
            return;
        }
        let mut current = lock(&self.current);
        let ratios = current.entry(Arc::clone(pool)).or_default();
        if let Some(r) = ttft {
            push(&mut ratios.ttft, r);
        }
        if let Some(r) = tpot {
            push(&mut ratios.tpot, r);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(available: usize, kv: Option<f64>, ttft: Option<f64>, tpot: Option<f64>) -> LoadInputs {
        LoadInputs { available, kv_usage: kv, ttft_slo_ratio: ttft, tpot_slo_ratio: tpot }
    }

    #[test]
    fn the_largest_measure_decides_within_double_and_at_least_one() {
        // Nothing measured: stay.
        assert_eq!(signal(&inputs(4, None, None, None)), LoadSignal { ratio: 1.0, desired_replicas: 4 });
        // Memory at the mark: stay; fuller: grow; emptier: shrink.
        assert_eq!(signal(&inputs(4, Some(0.8), None, None)).desired_replicas, 4);
        assert_eq!(signal(&inputs(4, Some(1.0), None, None)).desired_replicas, 5);
        assert_eq!(signal(&inputs(4, Some(0.2), None, None)).desired_replicas, 1);
        // TTFT at 1.5 times its target outweighs half-empty memory.
        let s = signal(&inputs(4, Some(0.4), Some(1.5), Some(0.5)));
        assert_eq!((s.ratio, s.desired_replicas), (1.5, 6));
        // At most double; at least one, also with no endpoint left.
        assert_eq!(signal(&inputs(4, None, Some(10.0), None)).desired_replicas, 8);
        assert_eq!(signal(&inputs(0, None, Some(3.0), None)).desired_replicas, 2);
        assert_eq!(signal(&inputs(3, Some(0.0), Some(0.1), None)).desired_replicas, 1);
        assert_eq!(signal(&inputs(2, Some(f64::NAN), None, None)).ratio, 1.0, "a bad reading is no reading");
    }

    #[test]
    fn the_window_takes_the_p95_of_the_ratios_and_the_mean_usage() {
        let mut window = PoolWindow::default();
        for (i, usage) in [Some(0.2), None, Some(0.6)].into_iter().enumerate() {
            let mut ratios = Ratios::default();
            for k in 0..10 {
                push(&mut ratios.ttft, f64::from(k + 10 * i as u32) / 10.0);
            }
            window.ticks.push_back(Tick { ratios, kv_usage: usage });
        }
        let inputs = window.inputs(3);
        assert_eq!(inputs.ttft_slo_ratio, Some(2.8), "the 29th of 30 ratios 0.0..=2.9");
        assert_eq!(inputs.tpot_slo_ratio, None);
        assert!((inputs.kv_usage.unwrap() - 0.4).abs() < 1e-12);
        let mut many = VecDeque::new();
        for k in 0..(MAX_SAMPLES + 10) {
            push(&mut many, k as f64);
        }
        assert_eq!((many.len(), many.front().copied()), (MAX_SAMPLES, Some(10.0)), "the newest are kept");
    }
}
