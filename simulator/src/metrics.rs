//! Prometheus metrics under vLLM's names, in a registry per worker (several workers share a
//! process in tests and `sluice demo`, so the global default registry is never used).

use prometheus::{
    Encoder, Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry, TextEncoder,
};

use crate::engine::EngineStats;
use crate::error::SimError;

// Bucket boundaries copied from vLLM's `vllm/v1/metrics/loggers.py`.
const TTFT_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0,
    160.0, 640.0, 2560.0,
];
const ITL_BUCKETS: &[f64] =
    &[0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0];
const E2E_BUCKETS: &[f64] = &[
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0,
    1920.0, 7680.0,
];

const MODEL: &str = "model_name";

#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    running: Gauge,
    waiting: Gauge,
    kv_usage: Gauge,
    prefix_queries: IntCounter,
    prefix_hits: IntCounter,
    preemptions: IntCounter,
    prompt_tokens: IntCounterVec,
    generation_tokens: IntCounterVec,
    success: IntCounterVec,
    ttft: HistogramVec,
    itl: HistogramVec,
    e2e: HistogramVec,
}

impl Metrics {
    /// `engine_model` labels the engine-wide series (one engine serves all model aliases).
    pub fn new(engine_model: &str) -> Result<Self, SimError> {
        let registry = Registry::new();
        let gauge = |name: &str, help: &str| -> Result<Gauge, SimError> {
            let v = GaugeVec::new(Opts::new(name, help), &[MODEL])?;
            registry.register(Box::new(v.clone()))?;
            Ok(v.with_label_values(&[engine_model]))
        };
        let running = gauge("vllm:num_requests_running", "Requests in the running batch.")?;
        let waiting = gauge("vllm:num_requests_waiting", "Requests waiting to be scheduled.")?;
        let kv_usage = gauge("vllm:kv_cache_usage_perc", "KV cache usage, 1 means 100 percent.")?;
        let counter_vec = |name: &str, help: &str, labels: &[&str]| -> Result<IntCounterVec, SimError> {
            let v = IntCounterVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(v.clone()))?;
            Ok(v)
        };
        let engine_counter = |name: &str, help: &str| -> Result<IntCounter, SimError> {
            Ok(counter_vec(name, help, &[MODEL])?.with_label_values(&[engine_model]))
        };
        let prefix_queries =
            engine_counter("vllm:prefix_cache_queries_total", "Prompt tokens looked up in the prefix cache.")?;
        let prefix_hits = engine_counter("vllm:prefix_cache_hits_total", "Prompt tokens found in the prefix cache.")?;
        let preemptions = engine_counter("vllm:num_preemptions_total", "Sequences preempted for KV space.")?;
        let prompt_tokens = counter_vec("vllm:prompt_tokens_total", "Prefill tokens processed.", &[MODEL])?;
        let generation_tokens = counter_vec("vllm:generation_tokens_total", "Generation tokens produced.", &[MODEL])?;
        let success = counter_vec(
            "vllm:request_success_total",
            "Finished requests by finish reason.",
            &[MODEL, "finished_reason"],
        )?;
        let histogram = |name: &str, help: &str, buckets: &[f64]| -> Result<HistogramVec, SimError> {
            let v = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets.to_vec()), &[MODEL])?;
            registry.register(Box::new(v.clone()))?;
            Ok(v)
        };
        let ttft = histogram("vllm:time_to_first_token_seconds", "Time to first token.", TTFT_BUCKETS)?;
        let itl =
            histogram("vllm:inter_token_latency_seconds", "Time between consecutive output tokens.", ITL_BUCKETS)?;
        let e2e =
            histogram("vllm:e2e_request_latency_seconds", "Request latency from arrival to last token.", E2E_BUCKETS)?;
        Ok(Self {
            registry,
            running,
            waiting,
            kv_usage,
            prefix_queries,
            prefix_hits,
            preemptions,
            prompt_tokens,
            generation_tokens,
            success,
            ttft,
            itl,
            e2e,
        })
    }

    /// Mirrors engine state; counters advance by the difference from the previous snapshot.
    pub fn publish_engine(&self, prev: &EngineStats, now: &EngineStats) {
        self.running.set(f64::from(now.running));
        self.waiting.set(f64::from(now.waiting));
        self.kv_usage.set(now.kv_usage);
        self.prefix_queries.inc_by(now.prefix_queries.saturating_sub(prev.prefix_queries));
        self.prefix_hits.inc_by(now.prefix_hits.saturating_sub(prev.prefix_hits));
        self.preemptions.inc_by(now.preemptions.saturating_sub(prev.preemptions));
    }

    pub fn first_token(&self, model: &str, prompt_tokens: u32, ttft_s: f64) {
        self.prompt_tokens.with_label_values(&[model]).inc_by(u64::from(prompt_tokens));
        self.ttft.with_label_values(&[model]).observe(ttft_s);
    }

    pub fn token(&self, model: &str, itl_s: Option<f64>) {
        self.generation_tokens.with_label_values(&[model]).inc();
        if let Some(itl) = itl_s {
            self.itl.with_label_values(&[model]).observe(itl);
        }
    }

    pub fn finished(&self, model: &str, reason: &str, e2e_s: f64) {
        self.success.with_label_values(&[model, reason]).inc();
        self.e2e.with_label_values(&[model]).observe(e2e_s);
    }

    /// Zero-delay answers skip the engine; they still count their tokens.
    pub fn instant(&self, model: &str, prompt_tokens: u32, generation_tokens: u32, reason: &str) {
        self.prompt_tokens.with_label_values(&[model]).inc_by(u64::from(prompt_tokens));
        self.generation_tokens.with_label_values(&[model]).inc_by(u64::from(generation_tokens));
        self.success.with_label_values(&[model, reason]).inc();
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        // Encoding into a Vec fails only on malformed metric families, which we never build.
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!(error = %e, "encoding metrics failed");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_workers_have_separate_registries_with_vllm_names() {
        let a = Metrics::new("m").unwrap();
        let b = Metrics::new("m").unwrap();
        a.first_token("m", 10, 0.05);
        a.publish_engine(
            &EngineStats::default(),
            &EngineStats { running: 3, kv_usage: 0.5, prefix_queries: 10, prefix_hits: 4, ..EngineStats::default() },
        );
        let text = String::from_utf8(a.render()).unwrap();
        assert!(text.contains("vllm:num_requests_running{model_name=\"m\"} 3"), "{text}");
        assert!(text.contains("vllm:kv_cache_usage_perc{model_name=\"m\"} 0.5"));
        assert!(text.contains("vllm:prefix_cache_hits_total{model_name=\"m\"} 4"));
        assert!(text.contains("vllm:prompt_tokens_total{model_name=\"m\"} 10"));
        assert!(text.contains("vllm:time_to_first_token_seconds_bucket"));
        let other = String::from_utf8(b.render()).unwrap();
        assert!(other.contains("vllm:num_requests_running{model_name=\"m\"} 0"));
    }
}
