//! Prometheus metrics in the dialect of the impersonated engine ([`Flavor`]), in a registry per
//! worker (several workers share a process in tests and `sluice demo`, so the global default
//! registry is never used). The names per dialect are in `dialect.rs`; this file keeps them
//! up to date from the engine and the requests.

mod dialect;

use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry,
    TextEncoder,
};

use self::dialect::{Dialect, EngineNames};
use crate::engine::{EngineConfig, EngineStats};
use crate::error::SimError;
use crate::flavor::Flavor;

const MODEL: &str = "model_name";

#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    running: Gauge,
    waiting: Gauge,
    kv_usage: Gauge,
    cache: CacheSeries,
    prompt_tokens: IntCounterVec,
    generation_tokens: IntCounterVec,
    /// Finished requests; labelled by finish reason where the dialect does.
    success: IntCounterVec,
    success_has_reason: bool,
    ttft: HistogramVec,
    /// Per token (vLLM, SGLang) or per request (TensorRT-LLM's time per output token).
    itl: TokenLatency,
    e2e: HistogramVec,
    queue: Option<HistogramVec>,
    kv_blocks: u32,
    block_size: u32,
}

/// The prefix-cache series, which differ most between engines.
#[derive(Debug)]
enum CacheSeries {
    Vllm { queries: IntCounter, hits: IntCounter, preemptions: IntCounter },
    Sglang { hit_rate: Gauge },
    Trtllm { hit_rate: Gauge, reused_blocks: IntCounter, missed_blocks: IntCounter, used: Gauge, free: Gauge },
}

#[derive(Debug)]
enum TokenLatency {
    PerToken(HistogramVec),
    PerRequest(HistogramVec),
}

/// Registers series in one registry with the dialect's constant labels.
struct Builder<'a> {
    registry: &'a Registry,
    dialect: &'a Dialect,
    model: &'a str,
}

impl Builder<'_> {
    fn opts(&self, name: &str, help: &str) -> Opts {
        let mut opts = Opts::new(name, help);
        for (k, v) in self.dialect.const_labels {
            opts = opts.const_label(*k, *v);
        }
        opts
    }

    fn gauge(&self, name: &str, help: &str) -> Result<Gauge, SimError> {
        let v = GaugeVec::new(self.opts(name, help), &[MODEL])?;
        self.registry.register(Box::new(v.clone()))?;
        Ok(v.with_label_values(&[self.model]))
    }

    fn counter_vec(&self, name: &str, help: &str, labels: &[&str]) -> Result<IntCounterVec, SimError> {
        let v = IntCounterVec::new(self.opts(name, help), labels)?;
        self.registry.register(Box::new(v.clone()))?;
        Ok(v)
    }

    fn counter(&self, name: &str, help: &str) -> Result<IntCounter, SimError> {
        Ok(self.counter_vec(name, help, &[MODEL])?.with_label_values(&[self.model]))
    }

    fn histogram(&self, name: &str, help: &str, buckets: &[f64]) -> Result<HistogramVec, SimError> {
        let mut opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
        for (k, v) in self.dialect.const_labels {
            opts = opts.const_label(*k, *v);
        }
        let v = HistogramVec::new(opts, &[MODEL])?;
        self.registry.register(Box::new(v.clone()))?;
        Ok(v)
    }
}

impl Metrics {
    /// `engine_model` labels the engine-wide series (one engine serves all model aliases).
    pub fn new(flavor: Flavor, engine_model: &str, engine: &EngineConfig) -> Result<Self, SimError> {
        let registry = Registry::new();
        let dialect = Dialect::of(flavor);
        let b = Builder { registry: &registry, dialect: &dialect, model: engine_model };
        let n = &dialect.names;
        let running = b.gauge(n.running, "Requests in the running batch.")?;
        let waiting = b.gauge(n.waiting, "Requests waiting to be scheduled.")?;
        let kv_usage = b.gauge(n.kv_usage, "Fraction of KV cache blocks in use, 1 means 100 percent.")?;
        let cache = match &dialect.engine {
            EngineNames::Vllm { queries, hits, preemptions, cache_config } => {
                let info = GaugeVec::new(
                    b.opts(cache_config, "Information of the KV cache configuration."),
                    &["block_size", "num_gpu_blocks"],
                )?;
                registry.register(Box::new(info.clone()))?;
                info.with_label_values(&[&engine.block_size.to_string(), &engine.kv_blocks.to_string()]).set(1.0);
                CacheSeries::Vllm {
                    queries: b.counter(queries, "Prompt tokens looked up in the prefix cache.")?,
                    hits: b.counter(hits, "Prompt tokens found in the prefix cache.")?,
                    preemptions: b.counter(preemptions, "Sequences preempted for KV space.")?,
                }
            }
            EngineNames::Sglang { hit_rate } => {
                CacheSeries::Sglang { hit_rate: b.gauge(hit_rate, "Prefix cache hit rate (cached / prompt tokens).")? }
            }
            EngineNames::Trtllm {
                hit_rate,
                reused_blocks,
                missed_blocks,
                max_blocks,
                used,
                free,
                tokens_per_block,
            } => {
                b.gauge(max_blocks, "KV cache capacity in blocks.")?.set(f64::from(engine.kv_blocks));
                b.gauge(tokens_per_block, "Tokens per KV cache block.")?.set(f64::from(engine.block_size));
                CacheSeries::Trtllm {
                    hit_rate: b.gauge(hit_rate, "KV cache hit rate.")?,
                    reused_blocks: b.counter(reused_blocks, "KV cache blocks reused (cache hits).")?,
                    missed_blocks: b.counter(missed_blocks, "KV cache blocks missed (cache misses).")?,
                    used: b.gauge(used, "KV cache blocks in use.")?,
                    free: b.gauge(free, "Free KV cache blocks.")?,
                }
            }
        };
        let prompt_tokens = b.counter_vec(n.prompt_tokens, "Prefill tokens processed.", &[MODEL])?;
        let generation_tokens = b.counter_vec(n.generation_tokens, "Generation tokens produced.", &[MODEL])?;
        let success_has_reason = dialect.success_has_reason;
        let success_labels: &[&str] = if success_has_reason { &[MODEL, "finished_reason"] } else { &[MODEL] };
        let success = b.counter_vec(n.success, "Finished requests.", success_labels)?;
        let ttft = b.histogram(n.ttft, "Time to first token in seconds.", dialect.buckets.ttft)?;
        let itl = if dialect.itl_per_token {
            TokenLatency::PerToken(b.histogram(
                n.itl,
                "Time between consecutive output tokens.",
                dialect.buckets.itl,
            )?)
        } else {
            TokenLatency::PerRequest(b.histogram(n.itl, "Time per output token in seconds.", dialect.buckets.itl)?)
        };
        let e2e = b.histogram(n.e2e, "Request latency from arrival to last token.", dialect.buckets.e2e)?;
        let queue = match n.queue {
            Some(name) => Some(b.histogram(name, "Time from arrival to first scheduling.", dialect.buckets.queue)?),
            None => None,
        };
        Ok(Self {
            registry,
            running,
            waiting,
            kv_usage,
            cache,
            prompt_tokens,
            generation_tokens,
            success,
            success_has_reason,
            ttft,
            itl,
            e2e,
            queue,
            kv_blocks: engine.kv_blocks,
            block_size: engine.block_size.max(1),
        })
    }

    /// Mirrors engine state; counters advance by the difference from the previous snapshot.
    pub fn publish_engine(&self, prev: &EngineStats, now: &EngineStats) {
        self.running.set(f64::from(now.running));
        self.waiting.set(f64::from(now.waiting));
        self.kv_usage.set(now.kv_usage);
        let hit_rate = if now.prefix_queries > 0 { now.prefix_hits as f64 / now.prefix_queries as f64 } else { 0.0 };
        match &self.cache {
            CacheSeries::Vllm { queries, hits, preemptions } => {
                queries.inc_by(now.prefix_queries.saturating_sub(prev.prefix_queries));
                hits.inc_by(now.prefix_hits.saturating_sub(prev.prefix_hits));
                preemptions.inc_by(now.preemptions.saturating_sub(prev.preemptions));
            }
            CacheSeries::Sglang { hit_rate: g } => g.set(hit_rate),
            CacheSeries::Trtllm { hit_rate: g, reused_blocks, missed_blocks, used, free } => {
                // Hits are whole blocks; misses are the uncached prompt tokens so far in blocks,
                // rounded up (the engine counts tokens, not TensorRT-LLM's per-request blocks).
                let bs = u64::from(self.block_size);
                let reused = |s: &EngineStats| s.prefix_hits / bs;
                let missed = |s: &EngineStats| s.prefix_queries.saturating_sub(s.prefix_hits).div_ceil(bs);
                reused_blocks.inc_by(reused(now).saturating_sub(reused(prev)));
                missed_blocks.inc_by(missed(now).saturating_sub(missed(prev)));
                let (r, m) = (reused_blocks.get(), missed_blocks.get());
                g.set(if r + m > 0 { r as f64 / (r + m) as f64 } else { 0.0 });
                let in_use = (now.kv_usage * f64::from(self.kv_blocks)).round();
                used.set(in_use);
                free.set(f64::from(self.kv_blocks) - in_use);
            }
        }
    }

    pub fn first_token(&self, model: &str, prompt_tokens: u32, ttft_s: f64) {
        self.prompt_tokens.with_label_values(&[model]).inc_by(u64::from(prompt_tokens));
        self.ttft.with_label_values(&[model]).observe(ttft_s);
    }

    /// The per-token series of one request, resolved once: with thousands of streams, looking
    /// labels up for every token is most of what delivering a step costs.
    pub fn for_request(&self, model: &str) -> TokenMetrics {
        TokenMetrics {
            generation_tokens: self.generation_tokens.with_label_values(&[model]),
            itl: match &self.itl {
                TokenLatency::PerToken(h) => Some(h.with_label_values(&[model])),
                TokenLatency::PerRequest(_) => None,
            },
        }
    }

    #[cfg(test)]
    pub fn token(&self, model: &str, itl_s: Option<f64>) {
        self.for_request(model).token(itl_s);
    }

    /// A finished generation: `decode_s` is the time from first to last token, `queued_s` from
    /// arrival to first scheduling.
    pub fn finished(
        &self,
        model: &str,
        reason: &str,
        e2e_s: f64,
        decode_s: f64,
        queued_s: f64,
        completion_tokens: u32,
    ) {
        self.count_success(model, reason);
        self.e2e.with_label_values(&[model]).observe(e2e_s);
        if let Some(h) = &self.queue {
            h.with_label_values(&[model]).observe(queued_s);
        }
        if let TokenLatency::PerRequest(h) = &self.itl
            && completion_tokens > 1
        {
            h.with_label_values(&[model]).observe(decode_s / f64::from(completion_tokens - 1));
        }
    }

    /// Zero-delay answers skip the engine; they still count their tokens.
    pub fn instant(&self, model: &str, prompt_tokens: u32, generation_tokens: u32, reason: &str) {
        self.prompt_tokens.with_label_values(&[model]).inc_by(u64::from(prompt_tokens));
        self.generation_tokens.with_label_values(&[model]).inc_by(u64::from(generation_tokens));
        self.count_success(model, reason);
    }

    fn count_success(&self, model: &str, reason: &str) {
        if self.success_has_reason {
            self.success.with_label_values(&[model, reason]).inc();
        } else {
            self.success.with_label_values(&[model]).inc();
        }
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

/// See [`Metrics::for_request`].
#[derive(Debug, Clone)]
pub(crate) struct TokenMetrics {
    generation_tokens: IntCounter,
    itl: Option<Histogram>,
}

impl TokenMetrics {
    pub fn token(&self, itl_s: Option<f64>) {
        self.generation_tokens.inc();
        if let (Some(h), Some(itl)) = (&self.itl, itl_s) {
            h.observe(itl);
        }
    }
}

#[cfg(test)]
mod tests;
