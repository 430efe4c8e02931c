//! Turning a run into the report: per-stage and overall latency, throughput, goodput, cache and
//! load figures, as a table and as JSON (field names are a contract of `bench-routing`).

use serde::Serialize;

use super::vtime::RunResult;
use super::workload::Workload;

/// A log-bucketed histogram of seconds (1% resolution from 1 µs), with an exact mean.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    n: u64,
}

const GROWTH: f64 = 1.01;
const MIN_S: f64 = 1e-6;
const BUCKETS: usize = 2_600; // up to ~1.6e5 s

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

impl Histogram {
    pub fn new() -> Self {
        Self { counts: vec![0; BUCKETS], sum: 0.0, n: 0 }
    }

    pub fn record(&mut self, v: f64) {
        let b = if v <= MIN_S { 0 } else { ((v / MIN_S).ln() / GROWTH.ln()) as usize + 1 };
        self.counts[b.min(BUCKETS - 1)] += 1;
        self.sum += v;
        self.n += 1;
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.sum += other.sum;
        self.n += other.n;
    }

    pub fn mean(&self) -> f64 {
        if self.n == 0 { 0.0 } else { self.sum / self.n as f64 }
    }

    /// The upper edge of the bucket holding quantile `q`.
    pub fn quantile(&self, q: f64) -> f64 {
        if self.n == 0 {
            return 0.0;
        }
        let target = ((q * self.n as f64).ceil() as u64).clamp(1, self.n);
        let mut seen = 0;
        for (b, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= target {
                return if b == 0 { MIN_S } else { MIN_S * GROWTH.powi(b as i32) };
            }
        }
        0.0
    }
}

/// Latency objectives for goodput: a request counts if it meets both.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Slo {
    pub ttft_s: f64,
    pub itl_s: f64,
}

/// Figures for a stage or for the whole run. Field names are part of the JSON contract.
///
/// As in inference-perf, latencies (TTFT, ITL, e2e), throughput and cache figures count only
/// requests that completed: a request that timed out is a failure, counted in `timeouts`, and
/// the tokens it received before its client gave up are not output.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Figures {
    pub qps: f64,
    pub requests: u64,
    pub completed: u64,
    /// Requests whose client gave up (the harness's request timeout).
    pub timeouts: u64,
    /// Requests that did not complete: timeouts plus requests the engine refused.
    pub failed: u64,
    /// How long requests waited in the client for an in-flight slot before being sent
    /// (inference-perf's `schedule_delay`), over every request of the stage. TTFT, e2e and the
    /// timeout start at sending, as in inference-perf.
    pub schedule_delay_mean_s: f64,
    pub schedule_delay_p90_s: f64,
    pub duration_s: f64,
    pub output_tokens_per_s: f64,
    pub requests_per_s: f64,
    pub ttft_mean_s: f64,
    pub ttft_p90_s: f64,
    pub ttft_p99_s: f64,
    pub itl_mean_s: f64,
    pub itl_p90_s: f64,
    pub e2e_mean_s: f64,
    pub e2e_p90_s: f64,
    /// Requests per second that met both SLOs.
    pub goodput: f64,
    /// Fraction of requests that met both SLOs.
    pub goodput_fraction: f64,
    /// Prompt tokens served from cache / prompt tokens.
    pub prefix_hit_rate: f64,
    /// Ground truth: what the best worker held at routing time / prompt tokens.
    pub best_prefix_hit_rate: f64,
    /// Ground truth: prompt tokens run through the model (recomputation included) and the
    /// minimum needed had every request gone to the worker with the longest cached prefix.
    pub prefill_computed_tokens: u64,
    pub prefill_needed_tokens: u64,
    pub wait_queue_mean: f64,
    pub wait_queue_p90: f64,
    pub wait_queue_max: f64,
    pub kv_usage_mean: f64,
    pub kv_usage_p90: f64,
    pub kv_usage_max: f64,
    /// Mean over samples of (max − min) across workers.
    pub wait_queue_imbalance: f64,
    pub kv_usage_imbalance: f64,
    /// Cached blocks summed over workers / distinct cached blocks.
    pub prefix_duplication: f64,
}

/// One policy's result. Field names are part of the JSON contract.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PolicyReport {
    pub policy: String,
    #[serde(flatten)]
    pub overall: Figures,
    pub preemptions: u64,
    pub wall_time_s: f64,
    pub stages: Vec<Figures>,
}

fn pct(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() { 0.0 } else { v.iter().sum::<f64>() / v.len() as f64 }
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

/// Computes figures over the requests of `stage` (all stages when `None`).
fn figures(run: &RunResult, workload: &Workload, stage: Option<usize>, slo: Slo) -> Figures {
    let in_scope = |s: usize| stage.is_none_or(|x| x == s);
    let (window_start, window_end, qps) = match stage.and_then(|s| workload.stages.get(s)) {
        Some(st) => (st.start_s, st.start_s + st.duration_s, st.qps),
        None => {
            let offered: f64 = workload.stages.iter().map(|s| s.qps * s.duration_s).sum();
            let span: f64 = workload.stages.iter().map(|s| s.duration_s).sum();
            (0.0, run.end_s, if span > 0.0 { offered / span } else { 0.0 })
        }
    };
    let duration = (window_end - window_start).max(1e-9);
    let mut f = Figures { qps, duration_s: duration, ..Figures::default() };
    let (mut ttft, mut e2e) = (Vec::new(), Vec::new());
    let (mut prompt, mut cached, mut best, mut good) = (0u64, 0u64, 0u64, 0u64);
    let (mut itl_sum, mut itl_count) = (0.0, 0u64);
    let mut delays = Vec::new();
    for (o, r) in run.requests.iter().zip(&workload.requests) {
        if !in_scope(r.stage) {
            continue;
        }
        f.requests += 1;
        delays.push((o.sent_s - o.scheduled_s).max(0.0));
        f.timeouts += u64::from(o.timed_out);
        let (Some(first), Some(done)) = (o.first_token_s, o.finished_s) else {
            f.failed += 1;
            continue;
        };
        f.completed += 1;
        itl_sum += o.itl_sum_s;
        itl_count += u64::from(o.itl_count);
        ttft.push(first - o.sent_s);
        e2e.push(done - o.sent_s);
        prompt += u64::from(o.prompt_tokens);
        cached += u64::from(o.cached_tokens);
        best += u64::from(o.best_cached_tokens);
        f.prefill_computed_tokens += u64::from(o.prefill_computed);
        f.prefill_needed_tokens += u64::from(o.prompt_tokens.saturating_sub(o.best_cached_tokens));
        let itl = if o.itl_count > 0 { o.itl_sum_s / f64::from(o.itl_count) } else { 0.0 };
        if first - o.sent_s <= slo.ttft_s && itl <= slo.itl_s {
            good += 1;
        }
    }
    // Throughput: tokens and completions that happened inside the window, less the tokens of
    // requests that later timed out.
    let in_window = |t: f64| t >= window_start && t <= window_end;
    let produced: u64 = run.token_times.iter().filter(|(t, _)| in_window(*t)).map(|&(_, n)| u64::from(n)).sum();
    let abandoned = run.abandoned_token_times.iter().filter(|&&t| in_window(t)).count() as u64;
    let tokens = produced.saturating_sub(abandoned);
    let done =
        run.requests.iter().filter(|o| o.finished_s.is_some_and(|t| t >= window_start && t <= window_end)).count();
    f.output_tokens_per_s = tokens as f64 / duration;
    f.requests_per_s = done as f64 / duration;
    let delays = sorted(delays);
    f.schedule_delay_mean_s = mean(&delays);
    f.schedule_delay_p90_s = pct(&delays, 0.90);
    let (ttft, e2e) = (sorted(ttft), sorted(e2e));
    f.ttft_mean_s = mean(&ttft);
    f.ttft_p90_s = pct(&ttft, 0.90);
    f.ttft_p99_s = pct(&ttft, 0.99);
    f.e2e_mean_s = mean(&e2e);
    f.e2e_p90_s = pct(&e2e, 0.90);
    // The mean over completed requests' gaps (inference-perf's); the p90 from every delivered gap,
    // including those of requests that later timed out.
    let mut itl = Histogram::new();
    for (s, h) in run.itl.iter().enumerate() {
        if in_scope(s) {
            itl.merge(h);
        }
    }
    f.itl_mean_s = if itl_count > 0 { itl_sum / itl_count as f64 } else { 0.0 };
    f.itl_p90_s = itl.quantile(0.90);
    f.goodput = good as f64 / duration;
    f.goodput_fraction = if f.requests > 0 { good as f64 / f.requests as f64 } else { 0.0 };
    if prompt > 0 {
        f.prefix_hit_rate = cached as f64 / prompt as f64;
        f.best_prefix_hit_rate = best as f64 / prompt as f64;
    }
    let samples: Vec<_> = run.samples.iter().filter(|s| s.at_s >= window_start && s.at_s < window_end).collect();
    let waits = sorted(samples.iter().flat_map(|s| s.waiting.iter().map(|&w| f64::from(w))).collect());
    let kvs = sorted(samples.iter().flat_map(|s| s.kv_usage.iter().copied()).collect());
    f.wait_queue_mean = mean(&waits);
    f.wait_queue_p90 = pct(&waits, 0.90);
    f.wait_queue_max = waits.last().copied().unwrap_or(0.0);
    f.kv_usage_mean = mean(&kvs);
    f.kv_usage_p90 = pct(&kvs, 0.90);
    f.kv_usage_max = kvs.last().copied().unwrap_or(0.0);
    let spread = |v: &mut dyn Iterator<Item = f64>| {
        let (lo, hi) = v.fold((f64::MAX, f64::MIN), |(lo, hi), x| (lo.min(x), hi.max(x)));
        if hi >= lo { hi - lo } else { 0.0 }
    };
    let wi: Vec<f64> = samples.iter().map(|s| spread(&mut s.waiting.iter().map(|&w| f64::from(w)))).collect();
    let ki: Vec<f64> = samples.iter().map(|s| spread(&mut s.kv_usage.iter().copied())).collect();
    f.wait_queue_imbalance = mean(&wi);
    f.kv_usage_imbalance = mean(&ki);
    f.prefix_duplication = mean(&samples.iter().map(|s| s.duplication).collect::<Vec<_>>());
    f
}

/// The report of one policy's run.
pub fn report(policy: &str, run: &RunResult, workload: &Workload, slo: Slo, wall_time_s: f64) -> PolicyReport {
    PolicyReport {
        policy: policy.to_owned(),
        overall: figures(run, workload, None, slo),
        preemptions: run.engine_stats.iter().map(|s| s.preemptions).sum(),
        wall_time_s,
        stages: (0..workload.stages.len()).map(|s| figures(run, workload, Some(s), slo)).collect(),
    }
}

/// A fixed-width table: one block per policy, one line per stage and one overall.
pub fn table(reports: &[PolicyReport]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<14} {:>6} {:>6} {:>9} {:>7} {:>6} {:>8} {:>8} {:>8} {:>7} {:>7} {:>8} {:>6} {:>6} {:>7} {:>5}",
        "policy",
        "stage",
        "qps",
        "out tok/s",
        "req/s",
        "t/o",
        "ttft avg",
        "ttft p90",
        "ttft p99",
        "itl avg",
        "itl p90",
        "goodput",
        "hit",
        "best",
        "wait",
        "kv"
    );
    for r in reports {
        let rows = r.stages.iter().enumerate().map(|(i, f)| (i.to_string(), f)).chain([("all".to_owned(), &r.overall)]);
        for (stage, f) in rows {
            let _ = writeln!(
                out,
                "{:<14} {:>6} {:>6.1} {:>9.0} {:>7.2} {:>6} {:>8.2} {:>8.2} {:>8.2} {:>7.3} {:>7.3} {:>8.2} {:>5.0}% {:>5.0}% {:>7.1} {:>4.0}%",
                r.policy,
                stage,
                f.qps,
                f.output_tokens_per_s,
                f.requests_per_s,
                f.timeouts,
                f.ttft_mean_s,
                f.ttft_p90_s,
                f.ttft_p99_s,
                f.itl_mean_s,
                f.itl_p90_s,
                f.goodput,
                f.prefix_hit_rate * 100.0,
                f.best_prefix_hit_rate * 100.0,
                f.wait_queue_mean,
                f.kv_usage_mean * 100.0,
            );
        }
        let _ = writeln!(
            out,
            "{:<14} completed {}/{}, timed out {}, failed {}, client wait mean {:.1}s, preemptions {}, prefill computed/needed {}/{} tokens, prefix duplication {:.2}x, wall {:.1}s",
            r.policy,
            r.overall.completed,
            r.overall.requests,
            r.overall.timeouts,
            r.overall.failed,
            r.overall.schedule_delay_mean_s,
            r.preemptions,
            r.overall.prefill_computed_tokens,
            r.overall.prefill_needed_tokens,
            r.overall.prefix_duplication,
            r.wall_time_s
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_quantiles_are_within_a_percent() {
        let mut h = Histogram::new();
        for i in 1..=1000 {
            h.record(f64::from(i) / 1000.0);
        }
        assert!((h.mean() - 0.5005).abs() < 1e-9);
        let p90 = h.quantile(0.9);
        assert!((p90 - 0.9).abs() < 0.01, "{p90}");
        assert_eq!(Histogram::new().quantile(0.5), 0.0);
    }
}
