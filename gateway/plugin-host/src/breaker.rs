//! A circuit breaker per binding. After `failures` failures (timeouts, limits, traps, output
//! limits) within `window`, the binding opens: its calls are not made and its failure policy
//! applies at once, so a plugin that loops or traps stops costing the gateway CPU. After
//! `cooldown` one call at a time is let through as a probe (half-open); `probes` successful
//! probes in a row close it, a failed one opens it again.
//!
//! The closed state costs one atomic load per call; the mutex is taken only on failures and
//! while open or half-open.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use crate::metrics::BreakerMetrics;

/// When a binding's breaker trips and how it recovers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerSettings {
    /// Failures within `window` that open the breaker; 0 disables it.
    pub failures: u32,
    pub window: Duration,
    /// How long it stays open before a probe is let through.
    pub cooldown: Duration,
    /// Successful probes in a row that close it again.
    pub probes: u32,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        BreakerSettings { failures: 5, window: Duration::from_secs(10), cooldown: Duration::from_secs(5), probes: 2 }
    }
}

/// A breaker's state, as shown in metrics, the live view and the plugins page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    HalfOpen,
    Open,
}

impl BreakerState {
    pub fn name(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::HalfOpen => "half_open",
            BreakerState::Open => "open",
        }
    }

    fn code(self) -> u8 {
        match self {
            BreakerState::Closed => 0,
            BreakerState::HalfOpen => 1,
            BreakerState::Open => 2,
        }
    }

    fn from_code(code: u8) -> Self {
        match code {
            0 => BreakerState::Closed,
            1 => BreakerState::HalfOpen,
            _ => BreakerState::Open,
        }
    }
}

/// What the breaker lets a call do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Call,
    /// A call made while half-open: its outcome decides the state.
    Probe,
    /// Not made: the breaker is open (or a probe is already running).
    Refused,
}

#[derive(Debug)]
struct Inner {
    /// When recent failures happened, oldest first (at most `failures` kept).
    failures: VecDeque<Instant>,
    opened_at: Option<Instant>,
    /// When the running probe started; a probe whose call was abandoned is replaced after a
    /// cooldown.
    probe_started: Option<Instant>,
    probe_successes: u32,
}

#[derive(Debug)]
pub struct Breaker {
    settings: BreakerSettings,
    state: AtomicU8,
    inner: Mutex<Inner>,
    metrics: Option<BreakerMetrics>,
}

impl std::fmt::Debug for BreakerMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BreakerMetrics")
    }
}

impl Breaker {
    pub fn new(settings: BreakerSettings, metrics: Option<BreakerMetrics>) -> Self {
        if let Some(m) = &metrics {
            m.state.set(0);
        }
        Breaker {
            settings,
            state: AtomicU8::new(BreakerState::Closed.code()),
            inner: Mutex::new(Inner {
                failures: VecDeque::new(),
                opened_at: None,
                probe_started: None,
                probe_successes: 0,
            }),
            metrics,
        }
    }

    pub fn settings(&self) -> BreakerSettings {
        self.settings
    }

    pub fn state(&self) -> BreakerState {
        BreakerState::from_code(self.state.load(Ordering::Relaxed))
    }

    /// Whether a call may be made now.
    pub fn admit(&self) -> Admission {
        if self.state.load(Ordering::Relaxed) == BreakerState::Closed.code() {
            return Admission::Call;
        }
        let now = Instant::now();
        let Ok(mut inner) = self.inner.lock() else { return Admission::Call };
        let admission = match self.state() {
            BreakerState::Closed => Admission::Call,
            BreakerState::Open => {
                if inner.opened_at.is_some_and(|at| now.saturating_duration_since(at) >= self.settings.cooldown) {
                    self.set(BreakerState::HalfOpen);
                    inner.probe_started = Some(now);
                    inner.probe_successes = 0;
                    Admission::Probe
                } else {
                    Admission::Refused
                }
            }
            BreakerState::HalfOpen => {
                let stale =
                    inner.probe_started.is_none_or(|at| now.saturating_duration_since(at) >= self.settings.cooldown);
                if stale {
                    inner.probe_started = Some(now);
                    Admission::Probe
                } else {
                    Admission::Refused
                }
            }
        };
        if admission == Admission::Refused
            && let Some(m) = &self.metrics
        {
            m.short_circuits.inc();
        }
        admission
    }

    /// Records how an admitted call ended: `failed` for the failures the breaker counts.
    pub fn record(&self, admission: Admission, failed: bool) {
        if self.settings.failures == 0 || admission == Admission::Refused {
            return;
        }
        if admission == Admission::Call && !failed {
            return;
        }
        let now = Instant::now();
        let Ok(mut inner) = self.inner.lock() else { return };
        match (admission, failed) {
            (Admission::Probe, true) => {
                inner.probe_started = None;
                inner.opened_at = Some(now);
                self.set(BreakerState::Open);
            }
            (Admission::Probe, false) => {
                inner.probe_started = None;
                inner.probe_successes += 1;
                if inner.probe_successes >= self.settings.probes.max(1) {
                    inner.failures.clear();
                    inner.opened_at = None;
                    self.set(BreakerState::Closed);
                }
            }
            (Admission::Call, _) => {
                let window = self.settings.window;
                while inner.failures.front().is_some_and(|&at| now.saturating_duration_since(at) >= window) {
                    inner.failures.pop_front();
                }
                inner.failures.push_back(now);
                let limit = self.settings.failures as usize;
                while inner.failures.len() > limit {
                    inner.failures.pop_front();
                }
                if inner.failures.len() >= limit && self.state() == BreakerState::Closed {
                    inner.opened_at = Some(now);
                    self.set(BreakerState::Open);
                }
            }
            (Admission::Refused, _) => {}
        }
    }

    /// An admitted call that will not be made after all: a probe's place is given back.
    pub fn abandon(&self, admission: Admission) {
        if admission == Admission::Probe
            && let Ok(mut inner) = self.inner.lock()
        {
            inner.probe_started = None;
        }
    }

    fn set(&self, state: BreakerState) {
        let previous = self.state.swap(state.code(), Ordering::Relaxed);
        if previous == state.code() {
            return;
        }
        if let Some(m) = &self.metrics {
            m.state.set(i64::from(state.code()));
            m.transitions[usize::from(state.code())].inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(cooldown: Duration) -> Breaker {
        let settings = BreakerSettings { failures: 3, window: Duration::from_secs(60), cooldown, probes: 2 };
        Breaker::new(settings, None)
    }

    #[test]
    fn opens_after_failures_within_the_window() {
        let b = breaker(Duration::from_secs(60));
        for _ in 0..2 {
            assert_eq!(b.admit(), Admission::Call);
            b.record(Admission::Call, true);
        }
        b.record(Admission::Call, false);
        assert_eq!(b.state(), BreakerState::Closed, "successes do not reset the count, but two are not three");
        b.record(Admission::Call, true);
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(b.admit(), Admission::Refused);
    }

    #[test]
    fn failures_outside_the_window_do_not_count() {
        let settings =
            BreakerSettings { failures: 2, window: Duration::ZERO, cooldown: Duration::from_secs(60), probes: 1 };
        let b = Breaker::new(settings, None);
        b.record(Admission::Call, true);
        b.record(Admission::Call, true);
        // With a zero window the earlier failure has always aged out.
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn half_open_probes_one_at_a_time_then_closes() {
        let b = breaker(Duration::ZERO);
        for _ in 0..3 {
            b.record(Admission::Call, true);
        }
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(b.admit(), Admission::Probe, "the cooldown is over");
        assert_eq!(b.state(), BreakerState::HalfOpen);
        b.record(Admission::Probe, false);
        assert_eq!(b.state(), BreakerState::HalfOpen, "two probes must succeed");
        assert_eq!(b.admit(), Admission::Probe);
        b.record(Admission::Probe, false);
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(b.admit(), Admission::Call);
    }

    #[test]
    fn a_failed_probe_opens_again() {
        let b = breaker(Duration::from_secs(60));
        for _ in 0..3 {
            b.record(Admission::Call, true);
        }
        {
            // Pretend the cooldown passed.
            let mut inner = b.inner.lock().unwrap();
            inner.opened_at = Some(Instant::now() - Duration::from_secs(61));
        }
        assert_eq!(b.admit(), Admission::Probe);
        assert_eq!(b.admit(), Admission::Refused, "one probe at a time");
        b.abandon(Admission::Probe);
        assert_eq!(b.admit(), Admission::Probe, "an abandoned probe's place is given back");
        assert_eq!(b.state(), BreakerState::HalfOpen, "abandoning is not a success");
        b.record(Admission::Probe, true);
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(b.admit(), Admission::Refused);
    }

    #[test]
    fn zero_failures_disables_it() {
        let b = Breaker::new(BreakerSettings { failures: 0, ..BreakerSettings::default() }, None);
        for _ in 0..100 {
            b.record(Admission::Call, true);
        }
        assert_eq!(b.state(), BreakerState::Closed);
    }
}
