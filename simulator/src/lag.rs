//! How late the real-time driver hands out each step's tokens, measured against its own clock
//! (the instant the step's modelled duration ends). A worker that keeps up stays in the
//! microseconds; one that cannot (too many streams for the CPU) shows it here first.
//!
//! A lock-free log-linear histogram: 16 linear sub-buckets per power of two of microseconds,
//! so any quantile is within ~6% of the true value.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

const SUB: u64 = 16;
/// Enough buckets for any u64 number of microseconds.
const BUCKETS: usize = 61 * SUB as usize;

/// A summary of step lag since the worker started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StepLag {
    /// Engine steps measured.
    pub steps: u64,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

#[derive(Debug)]
pub(crate) struct LagHistogram {
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    max_us: AtomicU64,
}

impl Default for LagHistogram {
    fn default() -> Self {
        Self {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            max_us: AtomicU64::new(0),
        }
    }
}

fn index(us: u64) -> usize {
    if us < 2 * SUB {
        return us as usize;
    }
    let exp = u64::from(63 - us.leading_zeros()); // >= 5
    let mantissa = (us >> (exp - 4)) - SUB;
    ((exp - 3) * SUB + mantissa) as usize
}

/// The smallest value that falls in bucket `i`.
fn lower_bound(i: usize) -> u64 {
    let i = i as u64;
    if i < 2 * SUB {
        return i;
    }
    let (exp, mantissa) = (i / SUB + 3, i % SUB);
    (SUB + mantissa) << (exp - 4)
}

impl LagHistogram {
    pub fn record(&self, lag: Duration) {
        let us = u64::try_from(lag.as_micros()).unwrap_or(u64::MAX);
        if let Some(b) = self.buckets.get(index(us)) {
            b.fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.max_us.fetch_max(us, Ordering::Relaxed);
    }

    pub fn summary(&self) -> StepLag {
        let steps = self.count.load(Ordering::Relaxed);
        let counts: Vec<u64> = self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).collect();
        let quantile = |q: f64| {
            let rank = ((steps as f64 * q).ceil() as u64).max(1);
            let mut seen = 0;
            for (i, &c) in counts.iter().enumerate() {
                seen += c;
                if seen >= rank {
                    // The bucket's midpoint.
                    let (lo, hi) = (lower_bound(i), lower_bound(i + 1));
                    return Duration::from_micros(lo + (hi - lo) / 2);
                }
            }
            Duration::ZERO
        };
        if steps == 0 {
            return StepLag::default();
        }
        StepLag {
            steps,
            p50: quantile(0.5),
            p99: quantile(0.99),
            max: Duration::from_micros(self.max_us.load(Ordering::Relaxed)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_quantiles_close() {
        for us in [0, 1, 15, 16, 31, 32, 33, 63, 64, 1000, 123_456, u64::MAX >> 1] {
            let i = index(us);
            assert!(lower_bound(i) <= us && us < lower_bound(i + 1), "{us} in bucket {i}");
        }
        let h = LagHistogram::default();
        for us in 1..=1000 {
            h.record(Duration::from_micros(us));
        }
        let s = h.summary();
        assert_eq!(s.steps, 1000);
        assert_eq!(s.max, Duration::from_micros(1000));
        let p50 = s.p50.as_micros() as f64;
        assert!((p50 - 500.0).abs() / 500.0 < 0.07, "{p50}");
        let p99 = s.p99.as_micros() as f64;
        assert!((p99 - 990.0).abs() / 990.0 < 0.07, "{p99}");
    }
}
