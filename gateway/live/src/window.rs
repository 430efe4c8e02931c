//! The rolling windows behind a frame: the last [`PERCENTILE_WINDOW_SECS`] seconds of latency
//! histograms and the last [`ATTAINMENT_WINDOW_SECS`] seconds of SLO counts, per slice.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use hdrhistogram::Histogram;
use sluice_metrics::Api;

use crate::accumulate::{API_COUNT, NameMap, Second, Slice};
use crate::frame::{
    ATTAINMENT_WINDOW_SECS, CacheCounts, CacheLive, PERCENTILE_WINDOW_SECS, Percentiles, SloLive, SloTarget,
    TenantLive, Traffic,
};

/// One slice's past seconds, newest last.
#[derive(Debug, Default)]
struct History {
    seconds: VecDeque<Past>,
}

#[derive(Debug, Default)]
struct Past {
    requests: u64,
    eligible: u64,
    met: u64,
    unjudged: u64,
    /// Dropped once older than the percentile window, to bound memory.
    ttft: Option<Histogram<u32>>,
    tpot: Option<Histogram<u32>>,
    target: Option<SloTarget>,
    cache: CacheCounts,
}

impl History {
    fn push(&mut self, slice: &mut Slice) {
        self.seconds.push_back(Past {
            requests: slice.requests,
            eligible: slice.eligible,
            met: slice.met,
            unjudged: slice.unjudged,
            ttft: slice.ttft.take(),
            tpot: slice.tpot.take(),
            target: slice.target,
            cache: slice.cache,
        });
        while self.seconds.len() > ATTAINMENT_WINDOW_SECS as usize {
            self.seconds.pop_front();
        }
        let keep = PERCENTILE_WINDOW_SECS as usize;
        if let Some(old) = self.seconds.len().checked_sub(keep + 1).and_then(|i| self.seconds.get_mut(i)) {
            old.ttft = None;
            old.tpot = None;
        }
    }

    /// The cache's rates for this interval and counts over the window (pushed already), or
    /// `None` when nothing in the window went through a cache policy.
    fn cache(&self, now: &CacheCounts, secs: f64) -> Option<CacheLive> {
        let mut window = CacheCounts::default();
        for past in &self.seconds {
            window.add(&past.cache);
        }
        if window.is_empty() {
            return None;
        }
        let per_s = |n: u64| n as f64 / secs;
        Some(CacheLive {
            hits_per_s: per_s(now.hits),
            semantic_hits_per_s: per_s(now.semantic_hits),
            misses_per_s: per_s(now.misses),
            bypasses_per_s: per_s(now.bypasses),
            saved_tokens_per_s: per_s(now.saved_tokens),
            window,
        })
    }

    fn idle(&self) -> bool {
        self.seconds.iter().all(|p| p.requests == 0)
    }

    /// The slice's rates over this interval (`slice`, pushed already) and its window's
    /// percentiles and cache counts.
    fn traffic(&self, slice: &Slice, secs: f64) -> Traffic {
        let mut traffic = rates(slice, secs);
        traffic.ttft_ms = self.percentiles(|p| p.ttft.as_ref());
        traffic.tpot_ms = self.percentiles(|p| p.tpot.as_ref());
        traffic.cache = self.cache(&slice.cache, secs);
        traffic
    }

    fn percentiles(&self, pick: impl Fn(&Past) -> Option<&Histogram<u32>>) -> Option<Percentiles> {
        let mut merged: Option<Histogram<u32>> = None;
        for h in self.seconds.iter().rev().take(PERCENTILE_WINDOW_SECS as usize).filter_map(&pick) {
            match merged.as_mut() {
                None => merged = Some(h.clone()),
                Some(m) => {
                    let _ = m.add(h);
                }
            }
        }
        merged.as_ref().and_then(percentiles_ms)
    }

    fn slo(&self, eligible_now: u64, met_now: u64) -> Option<SloLive> {
        let target = self.seconds.iter().rev().find_map(|p| p.target)?;
        let (eligible, met, unjudged) =
            self.seconds.iter().fold((0, 0, 0), |(e, m, u), p| (e + p.eligible, m + p.met, u + p.unjudged));
        let attainment = (eligible > 0).then(|| met as f64 / eligible as f64);
        Some(SloLive {
            target,
            eligible: eligible_now,
            met: met_now,
            attainment,
            window_eligible: eligible,
            window_unjudged: unjudged,
        })
    }
}

/// p50/p95/p99 of a histogram of microseconds, in milliseconds.
pub(crate) fn percentiles_ms(h: &Histogram<u32>) -> Option<Percentiles> {
    if h.is_empty() {
        return None;
    }
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1e3;
    Some(Percentiles { p50: ms(0.50), p95: ms(0.95), p99: ms(0.99), count: h.len() })
}

fn rates(slice: &Slice, secs: f64) -> Traffic {
    let per_s = |n: u64| n as f64 / secs;
    Traffic {
        requests_per_s: per_s(slice.requests),
        errors_per_s: per_s(slice.errors),
        rejected_per_s: per_s(slice.rejected),
        tokens_in_per_s: per_s(slice.tokens_in),
        tokens_out_per_s: per_s(slice.tokens_out),
        cached_tokens_per_s: per_s(slice.cached),
        in_flight: None,
        ttft_ms: None,
        tpot_ms: None,
        cache: None,
    }
}

/// The windows of every slice; owned by the ticker.
#[derive(Debug, Default)]
pub(crate) struct Windows {
    total: History,
    tenants: NameMap<History>,
    models: NameMap<History>,
    /// In [`Api::ALL`]'s order, like [`Second::apis`]; empty while the API is idle.
    apis: [History; API_COUNT],
}

/// The traffic part of a frame.
#[derive(Debug, Default)]
pub(crate) struct TrafficFrame {
    pub total: Traffic,
    pub tenants: BTreeMap<String, TenantLive>,
    pub models: BTreeMap<String, Traffic>,
    pub apis: BTreeMap<String, Traffic>,
}

impl Windows {
    /// Folds one finished second (`secs` long) in and describes the window as it now stands.
    pub fn advance(&mut self, mut second: Second, secs: f64) -> TrafficFrame {
        let secs = if secs > 0.0 { secs } else { 1.0 };
        let mut out = TrafficFrame { total: rates(&second.total, secs), ..TrafficFrame::default() };
        self.total.push(&mut second.total);
        out.total.cache = self.total.cache(&second.total.cache, secs);
        out.total.ttft_ms = self.total.percentiles(|p| p.ttft.as_ref());
        out.total.tpot_ms = self.total.percentiles(|p| p.tpot.as_ref());

        for (name, traffic, history, slice) in advance_map(&mut self.tenants, second.tenants, secs) {
            let slo = history.slo(slice.eligible, slice.met);
            out.tenants.insert(name, TenantLive { traffic, slo });
        }
        for (name, traffic, _, _) in advance_map(&mut self.models, second.models, secs) {
            out.models.insert(name, traffic);
        }
        for ((api, history), mut slice) in Api::ALL.into_iter().zip(&mut self.apis).zip(second.apis) {
            if history.seconds.is_empty() && slice.requests == 0 {
                continue;
            }
            history.push(&mut slice);
            // Idle for the whole attainment window: forgotten, like a quiet model.
            if history.idle() {
                *history = History::default();
                continue;
            }
            out.apis.insert(api.label().to_owned(), history.traffic(&slice, secs));
        }
        out
    }
}

/// Advances every known or new key, forgetting keys idle for the whole attainment window.
fn advance_map(
    histories: &mut NameMap<History>,
    mut seconds: NameMap<Slice>,
    secs: f64,
) -> Vec<(String, Traffic, &History, Slice)> {
    for key in seconds.keys() {
        if !histories.contains_key(&**key) {
            histories.insert(Arc::clone(key), History::default());
        }
    }
    histories.retain(|key, history| {
        let mut slice = seconds.remove(&**key).unwrap_or_default();
        let eligible = slice.eligible;
        let met = slice.met;
        history.push(&mut slice);
        // Keep the counts for the caller; the histograms moved into the history.
        seconds.insert(Arc::clone(key), Slice { eligible, met, ..slice });
        !history.idle()
    });
    let mut out = Vec::with_capacity(histories.len());
    for (key, history) in histories.iter() {
        let slice = seconds.remove(&**key).unwrap_or_default();
        out.push((key.to_string(), history.traffic(&slice, secs), history, slice));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accumulate::{Sample, Verdict, histogram};

    fn judged(target: SloTarget, met: bool) -> Option<(SloTarget, Verdict)> {
        Some((target, if met { Verdict::Met } else { Verdict::Missed }))
    }

    fn sample(ttft_ms: u64, slo: Option<(SloTarget, Verdict)>) -> Sample {
        Sample {
            error: false,
            rejected: false,
            tokens_in: 10,
            tokens_out: 20,
            cached: 4,
            ttft_us: Some(ttft_ms * 1000),
            tpot_us: Some(5_000),
            slo,
            cache: CacheCounts::default(),
        }
    }

    #[test]
    fn percentiles_of_a_known_distribution() {
        let mut h = histogram().unwrap();
        for ms in 1..=1000u64 {
            h.record(ms * 1000).unwrap();
        }
        let p = percentiles_ms(&h).unwrap();
        assert_eq!(p.count, 1000);
        // Two significant digits: within 1 %.
        for (got, want) in [(p.p50, 500.0), (p.p95, 950.0), (p.p99, 990.0)] {
            assert!((got - want).abs() / want < 0.01, "{got} vs {want}");
        }
        assert!(percentiles_ms(&histogram().unwrap()).is_none());
    }

    #[test]
    fn rates_divide_by_the_real_interval_and_slices_add_up() {
        let tenant: Arc<str> = Arc::from("acme");
        let other: Arc<str> = Arc::from("beta");
        let model: Arc<str> = Arc::from("llama");
        let mut second = Second::default();
        for _ in 0..3 {
            second.add(&tenant, &model, Some(Api::ChatCompletions), &sample(100, None));
        }
        second.add(&other, &model, None, &Sample { error: true, ..sample(100, None) });
        let mut w = Windows::default();
        let f = w.advance(second, 2.0);
        assert_eq!(f.total.requests_per_s, 2.0);
        assert_eq!(f.total.errors_per_s, 0.5);
        assert_eq!(f.total.tokens_in_per_s, 20.0);
        assert_eq!(f.total.tokens_out_per_s, 40.0);
        assert_eq!(f.total.cached_tokens_per_s, 8.0);
        assert_eq!(f.tenants["acme"].traffic.requests_per_s, 1.5);
        assert_eq!(f.tenants["beta"].traffic.errors_per_s, 0.5);
        assert_eq!(f.models["llama"].requests_per_s, 2.0);
        assert_eq!(f.models["llama"].ttft_ms.unwrap().count, 4);
        // The request without an API is in every slice but the APIs'.
        assert_eq!(f.apis.keys().collect::<Vec<_>>(), ["chat"]);
        assert_eq!((f.apis["chat"].requests_per_s, f.apis["chat"].errors_per_s), (1.5, 0.0));
        assert_eq!(f.apis["chat"].ttft_ms.unwrap().count, 3);
    }

    #[test]
    fn cache_counts_are_rates_now_and_totals_over_the_minute() {
        let tenant: Arc<str> = Arc::from("acme");
        let other: Arc<str> = Arc::from("beta");
        let model: Arc<str> = Arc::from("llama");
        let cached = |hits, misses, saved| Sample {
            cache: CacheCounts { hits, misses, saved_tokens: saved, ..CacheCounts::default() },
            ..sample(1, None)
        };
        let mut w = Windows::default();
        let mut second = Second::default();
        second.add(&tenant, &model, None, &cached(1, 0, 30));
        second.add(&tenant, &model, None, &cached(1, 0, 30));
        second.add(&tenant, &model, None, &cached(0, 1, 0));
        second.add(&other, &model, None, &sample(1, None));
        let f = w.advance(second, 1.0);
        let acme = f.tenants["acme"].traffic.cache.unwrap();
        assert_eq!((acme.hits_per_s, acme.misses_per_s, acme.saved_tokens_per_s), (2.0, 1.0, 60.0));
        assert_eq!(acme.window.hit_ratio(), Some(2.0 / 3.0));
        assert!(f.tenants["beta"].traffic.cache.is_none(), "no cache policy ran for beta");
        assert_eq!(f.total.cache.unwrap().window.hits, 2);
        // A quiet second: no rate now, the minute still counts; past the minute, gone.
        let f = w.advance(Second::default(), 1.0);
        let acme = f.tenants["acme"].traffic.cache.unwrap();
        assert_eq!((acme.hits_per_s, acme.window.hits, acme.window.saved_tokens), (0.0, 2, 60));
        for _ in 1..ATTAINMENT_WINDOW_SECS {
            w.advance(Second::default(), 1.0);
        }
        assert!(w.advance(Second::default(), 1.0).total.cache.is_none());
    }

    #[test]
    fn percentiles_slide_over_ten_seconds_and_idle_keys_are_forgotten() {
        let tenant: Arc<str> = Arc::from("acme");
        let model: Arc<str> = Arc::from("llama");
        let mut w = Windows::default();
        // One slow second, then fast ones: the slow samples leave p99 after ten seconds.
        let mut second = Second::default();
        for _ in 0..10 {
            second.add(&tenant, &model, Some(Api::Embeddings), &sample(2000, None));
        }
        let f = w.advance(second, 1.0);
        assert!(f.total.ttft_ms.unwrap().p50 > 1900.0);
        for i in 1..=PERCENTILE_WINDOW_SECS {
            let mut second = Second::default();
            second.add(&tenant, &model, Some(Api::Embeddings), &sample(100, None));
            let f = w.advance(second, 1.0);
            let p99 = f.total.ttft_ms.unwrap().p99;
            if i < PERCENTILE_WINDOW_SECS {
                assert!(p99 > 1900.0, "second {i}: {p99}");
            } else {
                assert!(p99 < 110.0, "second {i}: {p99}");
            }
        }
        // Quiet for the attainment window: the tenant drops out of frames.
        for i in 1..ATTAINMENT_WINDOW_SECS {
            let f = w.advance(Second::default(), 1.0);
            assert!(f.tenants.contains_key("acme") && f.apis.contains_key("embeddings"));
            assert_eq!(f.apis["embeddings"].ttft_ms.is_none(), i >= PERCENTILE_WINDOW_SECS, "idle second {i}");
            assert_eq!(f.total.ttft_ms.is_none(), i >= PERCENTILE_WINDOW_SECS, "idle second {i}");
        }
        let f = w.advance(Second::default(), 1.0);
        assert!(f.tenants.is_empty() && f.models.is_empty() && f.apis.is_empty());
    }

    #[test]
    fn attainment_counts_the_last_minute() {
        let tenant: Arc<str> = Arc::from("acme");
        let model: Arc<str> = Arc::from("llama");
        let target = SloTarget { ttft_ms: Some(500), tpot_ms: None, attainment: 0.9 };
        let mut w = Windows::default();
        let mut second = Second::default();
        for i in 0..10 {
            second.add(&tenant, &model, None, &sample(100, judged(target, i < 9)));
        }
        let f = w.advance(second, 1.0);
        let slo = f.tenants["acme"].slo.unwrap();
        assert_eq!((slo.eligible, slo.met), (10, 9));
        assert!((slo.attainment.unwrap() - 0.9).abs() < 1e-9);
        assert_eq!(slo.target, target);
        // A second with only misses lowers the minute's attainment but not to its own 0 %.
        let mut second = Second::default();
        for _ in 0..10 {
            second.add(&tenant, &model, None, &sample(900, judged(target, false)));
        }
        let slo = w.advance(second, 1.0).tenants["acme"].slo.unwrap();
        assert_eq!((slo.eligible, slo.met), (10, 0));
        assert!((slo.attainment.unwrap() - 0.45).abs() < 1e-9);
        assert_eq!(slo.coverage(), Some((20, 20)), "every request of the minute judged");
        // A tenant without an SLO has none.
        let mut second = Second::default();
        second.add(&Arc::from("free"), &model, None, &sample(100, None));
        assert!(w.advance(second, 1.0).tenants["free"].slo.is_none());
    }

    #[test]
    fn unjudged_requests_are_shown_beside_the_attainment_not_in_it() {
        let tenant: Arc<str> = Arc::from("acme");
        let model: Arc<str> = Arc::from("llama");
        let target = SloTarget { ttft_ms: Some(500), tpot_ms: Some(50), attainment: 0.9 };
        let mut w = Windows::default();
        let mut second = Second::default();
        for i in 0..4 {
            second.add(&tenant, &model, None, &sample(100, judged(target, i < 3)));
        }
        for _ in 0..6 {
            second.add(&tenant, &model, None, &sample(100, Some((target, Verdict::NotJudged))));
        }
        let slo = w.advance(second, 1.0).tenants["acme"].slo.unwrap();
        assert_eq!((slo.eligible, slo.met), (4, 3));
        assert!((slo.attainment.unwrap() - 0.75).abs() < 1e-9, "3 of the 4 streams");
        assert_eq!(slo.coverage(), Some((4, 10)));

        // Only whole responses for a minute: the SLO is still shown, with no attainment.
        let mut w = Windows::default();
        let mut second = Second::default();
        second.add(&tenant, &model, None, &sample(100, Some((target, Verdict::NotJudged))));
        let slo = w.advance(second, 1.0).tenants["acme"].slo.unwrap();
        assert_eq!(slo.target, target);
        assert_eq!((slo.attainment, slo.coverage()), (None, Some((0, 1))));
    }
}
