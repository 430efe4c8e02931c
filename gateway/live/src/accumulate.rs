//! The current second's counters. `record` runs on every request's task, so it only adds to
//! numbers under a briefly held, uncontended-in-practice shard lock; the ticker takes the whole
//! second out once a second.

use std::collections::HashMap;
use std::sync::Arc;

use hdrhistogram::Histogram;
use sluice_metrics::{Outcome, RequestRecord};

use crate::frame::SloTarget;

/// Two significant digits: percentiles within 1 %, and a histogram that starts at a few hundred
/// bytes and grows only as far as the values recorded.
const SIGNIFICANT_DIGITS: u8 = 2;

/// An hour, in microseconds.
const MAX_TRACKED_US: u64 = 3_600_000_000;

pub(crate) fn histogram() -> Option<Histogram<u32>> {
    Histogram::new(SIGNIFICANT_DIGITS).ok()
}

/// What one request contributes, computed before taking any lock.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sample {
    pub error: bool,
    pub rejected: bool,
    pub tokens_in: u64,
    pub tokens_out: u64,
    pub cached: u64,
    /// Microseconds.
    pub ttft_us: Option<u64>,
    pub tpot_us: Option<u64>,
    /// `Some((target, met))` when the request counts towards its tenant's SLO.
    pub slo: Option<(SloTarget, bool)>,
}

impl Sample {
    pub fn of(record: &RequestRecord, target: Option<SloTarget>) -> Self {
        let us = |d: std::time::Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let ttft_us = record.ttft.map(us);
        let tpot_us = record.tpot.map(us);
        // Client-caused, rate-limited and abandoned requests say nothing about the service level.
        let counts_for_slo = !matches!(
            record.outcome,
            Outcome::ClientError | Outcome::UpstreamRejected | Outcome::Cancelled | Outcome::RateLimited
        );
        let slo = target.filter(|_| counts_for_slo).map(|t| {
            let met = record.outcome == Outcome::Ok && {
                let ttft = record.ttft.unwrap_or(record.e2e);
                t.met_by(Some(ttft.as_secs_f64() * 1e3), record.tpot.map(|d| d.as_secs_f64() * 1e3))
            };
            (t, met)
        });
        Sample {
            // A limit's refusal is shown as rejected, not as an error of the service.
            error: !matches!(record.outcome, Outcome::Ok | Outcome::Cancelled | Outcome::RateLimited),
            rejected: record.status == 429 && record.attempts == 0,
            tokens_in: record.prompt_tokens,
            tokens_out: record.completion_tokens,
            cached: record.cached_tokens,
            ttft_us,
            tpot_us,
            slo,
        }
    }
}

/// One second of one slice of traffic (everything, a tenant, or a model).
#[derive(Debug, Default)]
pub(crate) struct Slice {
    pub requests: u64,
    pub errors: u64,
    pub rejected: u64,
    pub tokens_in: u64,
    pub tokens_out: u64,
    pub cached: u64,
    pub ttft: Option<Histogram<u32>>,
    pub tpot: Option<Histogram<u32>>,
    pub eligible: u64,
    pub met: u64,
    /// The SLO target of the latest eligible request.
    pub target: Option<SloTarget>,
}

fn observe(hist: &mut Option<Histogram<u32>>, value: u64) {
    if hist.is_none() {
        *hist = histogram();
    }
    if let Some(h) = hist {
        // Zero is below the lowest trackable value (a sub-microsecond time counts as 1 µs), and
        // an hour bounds how far the histogram grows. Recording in range cannot fail.
        let _ = h.record(value.clamp(1, MAX_TRACKED_US));
    }
}

fn merge_hist(into: &mut Option<Histogram<u32>>, from: Option<Histogram<u32>>) {
    match (into.as_mut(), from) {
        (_, None) => {}
        (None, Some(h)) => *into = Some(h),
        (Some(a), Some(b)) => {
            // Auto-resizing histograms of the same precision always add.
            let _ = a.add(&b);
        }
    }
}

impl Slice {
    pub fn add(&mut self, s: &Sample) {
        self.requests += 1;
        self.errors += u64::from(s.error);
        self.rejected += u64::from(s.rejected);
        self.tokens_in += s.tokens_in;
        self.tokens_out += s.tokens_out;
        self.cached += s.cached;
        if let Some(v) = s.ttft_us {
            observe(&mut self.ttft, v);
        }
        if let Some(v) = s.tpot_us {
            observe(&mut self.tpot, v);
        }
        if let Some((target, met)) = s.slo {
            self.eligible += 1;
            self.met += u64::from(met);
            self.target = Some(target);
        }
    }

    pub fn merge(&mut self, other: Slice) {
        self.requests += other.requests;
        self.errors += other.errors;
        self.rejected += other.rejected;
        self.tokens_in += other.tokens_in;
        self.tokens_out += other.tokens_out;
        self.cached += other.cached;
        merge_hist(&mut self.ttft, other.ttft);
        merge_hist(&mut self.tpot, other.tpot);
        self.eligible += other.eligible;
        self.met += other.met;
        if other.target.is_some() {
            self.target = other.target;
        }
    }
}

/// One second of everything.
#[derive(Debug, Default)]
pub(crate) struct Second {
    pub total: Slice,
    pub tenants: NameMap<Slice>,
    pub models: NameMap<Slice>,
}

/// Per-name state, looked up on every request: hashed with foldhash, not SipHash.
pub(crate) type NameMap<V> = HashMap<Arc<str>, V, foldhash::fast::RandomState>;

fn slot<'a>(map: &'a mut NameMap<Slice>, key: &Arc<str>) -> &'a mut Slice {
    // Cloning the Arc is a reference-count bump; the map allocates only for a key new this second.
    map.entry(Arc::clone(key)).or_default()
}

impl Second {
    pub fn add(&mut self, tenant: &Arc<str>, model: &Arc<str>, sample: &Sample) {
        self.total.add(sample);
        slot(&mut self.tenants, tenant).add(sample);
        slot(&mut self.models, model).add(sample);
    }

    pub fn merge(&mut self, other: Second) {
        self.total.merge(other.total);
        for (k, v) in other.tenants {
            self.tenants.entry(k).or_default().merge(v);
        }
        for (k, v) in other.models {
            self.models.entry(k).or_default().merge(v);
        }
    }
}
