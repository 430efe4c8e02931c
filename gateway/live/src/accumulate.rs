//! The current second's counters. `record` runs on every request's task, so it only adds to
//! numbers under a briefly held, uncontended-in-practice shard lock; the ticker takes the whole
//! second out once a second.

use std::collections::HashMap;
use std::sync::Arc;

use hdrhistogram::Histogram;
use sluice_metrics::{Api, CacheStatus, Outcome, RequestRecord};

use crate::frame::{CacheCounts, SloTarget};

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
    /// `Some((target, verdict))` when the request counts towards its tenant's SLO.
    pub slo: Option<(SloTarget, Verdict)>,
    /// One count for what the response cache did, if anything.
    pub cache: CacheCounts,
}

/// What one request says about its tenant's SLO.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Met,
    Missed,
    /// A whole (non-streamed) response: its targets are for streams (see [`Sample::of`]), so it
    /// is counted, to show what the attainment leaves out, but not judged.
    NotJudged,
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
        // TTFT and TPOT targets describe streams. A whole response has no first token of its
        // own — it arrives with the rest of the answer — so judging it by its end-to-end time
        // against a first-token target made a fleet whose every percentile was inside its
        // targets read as missing a third of its requests.
        let slo = target.filter(|_| counts_for_slo).map(|t| {
            let verdict = if !record.stream {
                Verdict::NotJudged
            } else if record.outcome == Outcome::Ok && {
                // A stream that ended before any token waited its whole length for the first.
                let ttft = record.ttft.unwrap_or(record.e2e);
                t.met_by(Some(ttft.as_secs_f64() * 1e3), record.tpot.map(|d| d.as_secs_f64() * 1e3))
            } {
                Verdict::Met
            } else {
                Verdict::Missed
            };
            (t, verdict)
        });
        let mut cache = CacheCounts::default();
        match record.cache {
            Some(CacheStatus::Hit) => cache.hits = 1,
            Some(CacheStatus::SemanticHit) => cache.semantic_hits = 1,
            Some(CacheStatus::Miss) => cache.misses = 1,
            Some(CacheStatus::Bypass) => cache.bypasses = 1,
            None => {}
        }
        if record.cache.is_some_and(CacheStatus::is_hit) {
            cache.saved_tokens = record.prompt_tokens + record.completion_tokens;
        }
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
            cache,
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
    /// Requests that would count but are not judged ([`Verdict::NotJudged`]).
    pub unjudged: u64,
    /// The SLO target of the latest request that counts (judged or not).
    pub target: Option<SloTarget>,
    pub cache: CacheCounts,
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
        self.cache.add(&s.cache);
        if let Some(v) = s.ttft_us {
            observe(&mut self.ttft, v);
        }
        if let Some(v) = s.tpot_us {
            observe(&mut self.tpot, v);
        }
        if let Some((target, verdict)) = s.slo {
            match verdict {
                Verdict::Met => {
                    self.eligible += 1;
                    self.met += 1;
                }
                Verdict::Missed => self.eligible += 1,
                Verdict::NotJudged => self.unjudged += 1,
            }
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
        self.cache.add(&other.cache);
        merge_hist(&mut self.ttft, other.ttft);
        merge_hist(&mut self.tpot, other.tpot);
        self.eligible += other.eligible;
        self.met += other.met;
        self.unjudged += other.unjudged;
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
    /// By API, in [`Api::ALL`]'s order: five fixed slots, so no key to hash or clone.
    pub apis: [Slice; API_COUNT],
}

pub(crate) const API_COUNT: usize = Api::ALL.len();

/// `api`'s slot in [`Second::apis`]: its position in [`Api::ALL`].
fn api_slot(api: Api) -> usize {
    match api {
        Api::ChatCompletions => 0,
        Api::Completions => 1,
        Api::Embeddings => 2,
        Api::Responses => 3,
        Api::Messages => 4,
    }
}

/// Per-name state, looked up on every request: hashed with foldhash, not SipHash.
pub(crate) type NameMap<V> = HashMap<Arc<str>, V, foldhash::fast::RandomState>;

fn slot<'a>(map: &'a mut NameMap<Slice>, key: &Arc<str>) -> &'a mut Slice {
    // Cloning the Arc is a reference-count bump; the map allocates only for a key new this second.
    map.entry(Arc::clone(key)).or_default()
}

impl Second {
    /// `api` is `None` for a request refused before its API was known: it counts in `total`,
    /// its tenant and its model only.
    pub fn add(&mut self, tenant: &Arc<str>, model: &Arc<str>, api: Option<Api>, sample: &Sample) {
        self.total.add(sample);
        slot(&mut self.tenants, tenant).add(sample);
        slot(&mut self.models, model).add(sample);
        if let Some(slice) = api.and_then(|api| self.apis.get_mut(api_slot(api))) {
            slice.add(sample);
        }
    }

    pub fn merge(&mut self, other: Second) {
        self.total.merge(other.total);
        for (k, v) in other.tenants {
            self.tenants.entry(k).or_default().merge(v);
        }
        for (k, v) in other.models {
            self.models.entry(k).or_default().merge(v);
        }
        for (slice, other) in self.apis.iter_mut().zip(other.apis) {
            slice.merge(other);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use sluice_metrics::Api;

    use super::*;

    const TARGET: SloTarget = SloTarget { ttft_ms: Some(200), tpot_ms: Some(20), attainment: 0.9 };

    fn record(stream: bool, outcome: Outcome, ttft_ms: Option<u64>, e2e_ms: u64) -> RequestRecord {
        RequestRecord {
            tenant: Arc::from("acme"),
            model: Arc::from("llama"),
            api: Some(Api::ChatCompletions),
            stream,
            pool: Some(Arc::from("sim")),
            endpoint: Some(Arc::from("w1")),
            status: if outcome == Outcome::Ok { 200 } else { 502 },
            outcome,
            attempts: 1,
            ttft: ttft_ms.map(Duration::from_millis),
            tpot: stream.then_some(Duration::from_millis(10)),
            e2e: Duration::from_millis(e2e_ms),
            overhead: Duration::from_micros(20),
            prompt_tokens: 10,
            cached_tokens: 0,
            completion_tokens: 50,
            estimated: Default::default(),
            cache: None,
        }
    }

    fn verdict(record: &RequestRecord) -> Option<Verdict> {
        Sample::of(record, Some(TARGET)).slo.map(|(_, v)| v)
    }

    #[test]
    fn streams_are_judged_by_their_first_token_and_token_pace() {
        assert_eq!(verdict(&record(true, Outcome::Ok, Some(150), 900)), Some(Verdict::Met));
        assert_eq!(verdict(&record(true, Outcome::Ok, Some(250), 900)), Some(Verdict::Missed));
        let mut slow_tokens = record(true, Outcome::Ok, Some(150), 900);
        slow_tokens.tpot = Some(Duration::from_millis(30));
        assert_eq!(verdict(&slow_tokens), Some(Verdict::Missed));
        // Ended before its first token: it waited its whole length for it.
        assert_eq!(verdict(&record(true, Outcome::Ok, None, 150)), Some(Verdict::Met));
        assert_eq!(verdict(&record(true, Outcome::Ok, None, 900)), Some(Verdict::Missed));
        // A stream that failed missed, however fast it was.
        assert_eq!(verdict(&record(true, Outcome::UpstreamError, Some(10), 20)), Some(Verdict::Missed));
    }

    #[test]
    fn whole_responses_are_counted_but_not_judged_by_their_end_to_end_time() {
        // 900 ms end to end against a 200 ms first-token target: the old reading called it a
        // miss although nothing was slow.
        assert_eq!(verdict(&record(false, Outcome::Ok, None, 900)), Some(Verdict::NotJudged));
        assert_eq!(verdict(&record(false, Outcome::Ok, None, 50)), Some(Verdict::NotJudged));
        let mut embeddings = record(false, Outcome::Ok, None, 30);
        embeddings.api = Some(Api::Embeddings);
        assert_eq!(verdict(&embeddings), Some(Verdict::NotJudged));
    }

    #[test]
    fn what_the_client_caused_or_abandoned_does_not_count_and_tenants_without_an_slo_have_none() {
        for outcome in [Outcome::ClientError, Outcome::UpstreamRejected, Outcome::Cancelled, Outcome::RateLimited] {
            assert_eq!(verdict(&record(true, outcome, Some(10), 20)), None, "{outcome:?}");
            assert_eq!(verdict(&record(false, outcome, None, 20)), None, "{outcome:?}");
        }
        assert!(Sample::of(&record(true, Outcome::Ok, Some(10), 20), None).slo.is_none());
    }

    #[test]
    fn each_api_has_its_slot_in_the_order_of_all() {
        for (i, api) in Api::ALL.into_iter().enumerate() {
            assert_eq!(api_slot(api), i, "{api:?}");
        }
        let (tenant, model) = (Arc::from("acme"), Arc::from("llama"));
        let sample = Sample::of(&record(true, Outcome::Ok, Some(100), 500), None);
        let mut second = Second::default();
        second.add(&tenant, &model, Some(Api::Messages), &sample);
        second.add(&tenant, &model, None, &sample);
        let requests: Vec<u64> = second.apis.iter().map(|s| s.requests).collect();
        assert_eq!(requests, [0, 0, 0, 0, 1]);
        assert_eq!(second.total.requests, 2, "a request without an API still counts overall");
    }

    #[test]
    fn a_slice_counts_judged_and_unjudged_requests_apart() {
        let mut slice = Slice::default();
        for r in [
            record(true, Outcome::Ok, Some(100), 500),
            record(true, Outcome::Ok, Some(300), 500),
            record(false, Outcome::Ok, None, 500),
            record(false, Outcome::Ok, None, 500),
            record(false, Outcome::Ok, None, 500),
        ] {
            slice.add(&Sample::of(&r, Some(TARGET)));
        }
        assert_eq!((slice.requests, slice.eligible, slice.met, slice.unjudged), (5, 2, 1, 3));
        assert_eq!(slice.target, Some(TARGET));
        let mut other = Slice::default();
        other.add(&Sample::of(&record(false, Outcome::Ok, None, 500), Some(TARGET)));
        slice.merge(other);
        assert_eq!((slice.eligible, slice.met, slice.unjudged), (2, 1, 4));
    }
}
