//! The live page's memory: the last 15 minutes of frames, turned into named time series the
//! charts draw. Kept in the browser; a reload starts empty.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use sluice_live::{LiveFrame, Percentiles, Traffic};

/// How much history the live page keeps.
pub const KEEP_MS: i64 = 15 * 60 * 1000;

/// One value per frame, `None` where the frame had no figure (no samples, or the slice absent).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Series {
    pub points: VecDeque<(i64, Option<f64>)>,
}

impl Series {
    fn push(&mut self, at_ms: i64, value: Option<f64>) {
        self.points.push_back((at_ms, value));
    }

    fn trim(&mut self, oldest_ms: i64) {
        while self.points.front().is_some_and(|(t, _)| *t < oldest_ms) {
            self.points.pop_front();
        }
    }

    pub fn last(&self) -> Option<f64> {
        self.points.back().and_then(|(_, v)| *v)
    }

    pub fn max(&self) -> f64 {
        self.points.iter().filter_map(|(_, v)| *v).fold(0.0, f64::max)
    }

    /// The value at or just before `at_ms`.
    pub fn at(&self, at_ms: i64) -> Option<f64> {
        let i = self.points.partition_point(|(t, _)| *t <= at_ms);
        i.checked_sub(1).and_then(|i| self.points.get(i)).and_then(|(_, v)| *v)
    }
}

/// What is charted for one slice of traffic.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TrafficSeries {
    pub requests: Series,
    pub errors: Series,
    pub tokens_in: Series,
    pub tokens_out: Series,
    pub in_flight: Series,
    pub ttft_p50: Series,
    pub ttft_p95: Series,
    pub ttft_p99: Series,
    pub tpot_p50: Series,
    pub tpot_p95: Series,
    pub tpot_p99: Series,
    /// SLO attainment over the hub's window (tenants only).
    pub attainment: Series,
}

impl TrafficSeries {
    fn push(&mut self, at: i64, t: Option<&Traffic>, attainment: Option<f64>) {
        let pct = |p: Option<Percentiles>, f: fn(&Percentiles) -> f64| p.map(|p| f(&p));
        self.requests.push(at, t.map(|t| t.requests_per_s).or(Some(0.0)));
        self.errors.push(at, t.map(|t| t.errors_per_s).or(Some(0.0)));
        self.tokens_in.push(at, t.map(|t| t.tokens_in_per_s).or(Some(0.0)));
        self.tokens_out.push(at, t.map(|t| t.tokens_out_per_s).or(Some(0.0)));
        self.in_flight.push(at, t.and_then(|t| t.in_flight).map(|n| n as f64));
        let ttft = t.and_then(|t| t.ttft_ms);
        let tpot = t.and_then(|t| t.tpot_ms);
        self.ttft_p50.push(at, pct(ttft, |p| p.p50));
        self.ttft_p95.push(at, pct(ttft, |p| p.p95));
        self.ttft_p99.push(at, pct(ttft, |p| p.p99));
        self.tpot_p50.push(at, pct(tpot, |p| p.p50));
        self.tpot_p95.push(at, pct(tpot, |p| p.p95));
        self.tpot_p99.push(at, pct(tpot, |p| p.p99));
        self.attainment.push(at, attainment);
    }

    fn trim(&mut self, oldest: i64) {
        for s in [
            &mut self.requests,
            &mut self.errors,
            &mut self.tokens_in,
            &mut self.tokens_out,
            &mut self.in_flight,
            &mut self.ttft_p50,
            &mut self.ttft_p95,
            &mut self.ttft_p99,
            &mut self.tpot_p50,
            &mut self.tpot_p95,
            &mut self.tpot_p99,
            &mut self.attainment,
        ] {
            s.trim(oldest);
        }
    }

    fn is_empty(&self) -> bool {
        self.requests.points.is_empty()
    }
}

/// Fifteen minutes of frames: the overall, per-tenant, per-model and per-API series, plus the
/// latest frame for the tables.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    pub total: TrafficSeries,
    pub tenants: BTreeMap<String, TrafficSeries>,
    pub models: BTreeMap<String, TrafficSeries>,
    /// By API label (`chat`, `messages`, …).
    pub apis: BTreeMap<String, TrafficSeries>,
    pub latest: Option<LiveFrame>,
    /// Plugins' calls/s by name.
    pub plugin_calls: BTreeMap<String, Series>,
}

impl History {
    pub fn ingest(&mut self, frame: LiveFrame) {
        let at = frame.at_ms;
        // A gateway restart or a clock step backwards: start over rather than draw zig-zags.
        if self.latest.as_ref().is_some_and(|l| l.at_ms >= at) {
            *self = History::default();
        }
        self.total.push(at, Some(&frame.total), None);

        let names: BTreeSet<String> = self.tenants.keys().chain(frame.tenants.keys()).cloned().collect();
        for name in names {
            let live = frame.tenants.get(&name);
            let series = self.tenants.entry(name).or_default();
            series.push(at, live.map(|t| &t.traffic), live.and_then(|t| t.slo).and_then(|s| s.attainment));
        }
        push_slices(&mut self.models, &frame.models, at);
        push_slices(&mut self.apis, &frame.apis, at);
        let names: BTreeSet<String> = self.plugin_calls.keys().chain(frame.plugins.keys()).cloned().collect();
        for name in names {
            let calls = frame.plugins.get(&name).map(|p| p.calls_per_s);
            self.plugin_calls.entry(name).or_default().push(at, calls.or(Some(0.0)));
        }

        let oldest = at - KEEP_MS;
        self.total.trim(oldest);
        for s in self.tenants.values_mut().chain(self.models.values_mut()).chain(self.apis.values_mut()) {
            s.trim(oldest);
        }
        // A slice with no traffic left in the window stops being drawn.
        self.tenants.retain(|_, s| !s.is_empty() && s.requests.max() > 0.0);
        self.models.retain(|_, s| !s.is_empty() && s.requests.max() > 0.0);
        self.apis.retain(|_, s| !s.is_empty() && s.requests.max() > 0.0);
        for s in self.plugin_calls.values_mut() {
            s.trim(oldest);
        }
        self.plugin_calls.retain(|_, s| s.max() > 0.0);
        self.latest = Some(frame);
    }

    /// The time span the charts show: the last 15 minutes up to the newest frame, or since the
    /// first frame while there are fewer (at least a minute, so the first seconds are not
    /// stretched across the whole chart).
    pub fn span(&self) -> (i64, i64) {
        let end = self.latest.as_ref().map_or(0, |f| f.at_ms);
        let first = self.total.requests.points.front().map_or(end, |(t, _)| *t);
        (first.min(end - 60_000).max(end - KEEP_MS), end)
    }
}

/// One frame's slices by name (models, APIs): every name known or new gets a point, zero for one
/// absent from the frame.
fn push_slices(series: &mut BTreeMap<String, TrafficSeries>, live: &BTreeMap<String, Traffic>, at: i64) {
    let names: BTreeSet<String> = series.keys().chain(live.keys()).cloned().collect();
    for name in names {
        let traffic = live.get(&name);
        series.entry(name).or_default().push(at, traffic, None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_live::{SloLive, TenantLive};

    fn frame(at_ms: i64, rps: f64, tenant: Option<&str>) -> LiveFrame {
        let mut f = LiveFrame { v: 1, at_ms, interval_ms: 1000, ..Default::default() };
        f.total.requests_per_s = rps;
        f.total.ttft_ms = Some(Percentiles { p50: 10.0, p95: 20.0, p99: 30.0, count: 5 });
        if let Some(t) = tenant {
            let slo = SloLive { attainment: Some(0.9), ..Default::default() };
            f.tenants.insert(t.into(), TenantLive { traffic: f.total.clone(), slo: Some(slo) });
        }
        f
    }

    #[test]
    fn keeps_fifteen_minutes() {
        let mut h = History::default();
        for i in 0..=1000 {
            h.ingest(frame(i * 1000, i as f64, None));
        }
        let first = h.total.requests.points.front().unwrap().0;
        assert_eq!(first, 1_000_000 - KEEP_MS);
        assert_eq!(h.total.requests.points.len(), 901);
        assert_eq!(h.total.requests.last(), Some(1000.0));
        assert_eq!(h.total.ttft_p99.last(), Some(30.0));
        assert_eq!(h.total.requests.max(), 1000.0);
        assert_eq!(h.total.requests.at(500_500), Some(500.0));
        assert_eq!(h.span(), (1_000_000 - KEEP_MS, 1_000_000));
    }

    #[test]
    fn a_young_history_spans_from_its_first_frame_or_a_minute() {
        let mut h = History::default();
        h.ingest(frame(1_000_000, 1.0, None));
        h.ingest(frame(1_005_000, 1.0, None));
        assert_eq!(h.span(), (1_005_000 - 60_000, 1_005_000));
        h.ingest(frame(1_000_000 + 300_000, 1.0, None));
        assert_eq!(h.span(), (1_000_000, 1_300_000));
    }

    #[test]
    fn a_tenant_that_goes_quiet_reads_zero_then_ages_out() {
        let mut h = History::default();
        h.ingest(frame(1000, 5.0, Some("acme")));
        h.ingest(frame(2000, 5.0, None));
        let acme = &h.tenants["acme"];
        assert_eq!(acme.requests.points.len(), 2);
        assert_eq!(acme.requests.last(), Some(0.0));
        assert_eq!(acme.ttft_p95.last(), None);
        assert_eq!(acme.attainment.at(1000), Some(0.9));
        h.ingest(frame(KEEP_MS, 1.0, None));
        assert!(h.tenants.contains_key("acme"));
        // Its last request leaves the window: it is no longer drawn.
        h.ingest(frame(KEEP_MS + 1001, 1.0, None));
        assert!(!h.tenants.contains_key("acme"));
    }

    #[test]
    fn apis_are_kept_like_models() {
        let mut h = History::default();
        let mut f = frame(1000, 3.0, None);
        f.apis.insert("chat".into(), Traffic { requests_per_s: 2.0, ..Traffic::default() });
        f.apis.insert("messages".into(), Traffic { requests_per_s: 1.0, ..Traffic::default() });
        h.ingest(f);
        let mut f = frame(2000, 1.0, None);
        f.apis.insert("chat".into(), Traffic { requests_per_s: 1.0, ..Traffic::default() });
        h.ingest(f);
        assert_eq!(h.apis.keys().collect::<Vec<_>>(), ["chat", "messages"]);
        assert_eq!(h.apis["chat"].requests.at(1000), Some(2.0));
        assert_eq!(h.apis["chat"].requests.last(), Some(1.0));
        assert_eq!(h.apis["messages"].requests.last(), Some(0.0), "quiet reads zero");
        // Its last request leaves the window: it is no longer drawn.
        h.ingest(frame(KEEP_MS + 1001, 1.0, None));
        assert!(!h.apis.contains_key("messages"));
        assert!(h.apis.contains_key("chat"));
        h.ingest(frame(KEEP_MS + 2001, 1.0, None));
        assert!(h.apis.is_empty());
    }

    #[test]
    fn time_going_backwards_starts_over() {
        let mut h = History::default();
        h.ingest(frame(5000, 1.0, Some("acme")));
        h.ingest(frame(4000, 2.0, None));
        assert_eq!(h.total.requests.points.len(), 1);
        assert!(h.tenants.is_empty());
    }
}
