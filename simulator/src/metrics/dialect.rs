//! Metric names per engine. Sources (checked against the engines' own code and docs):
//!
//! - vLLM: `vllm/v1/metrics/loggers.py` and https://docs.vllm.ai/en/latest/usage/metrics/.
//! - SGLang: https://docs.sglang.io/references/production_metrics.html (`--enable-metrics`);
//!   histogram buckets from `python/sglang/srt/metrics/collector.py`
//!   (`TokenizerMetricsCollector`'s defaults when no `--bucket-*` flag is given).
//! - TensorRT-LLM: `tensorrt_llm/metrics/collector.py` (`MetricsCollector`, prefix `trtllm_`,
//!   labels `model_name` and `engine_type`), served by `trtllm-serve` at `/prometheus/metrics`.
//!   The `trtllm:` spelling in NVIDIA Dynamo's docs is Dynamo's re-export, not the engine's.

use crate::flavor::Flavor;

// Bucket boundaries of vLLM's `vllm/v1/metrics/loggers.py`; TensorRT-LLM's `MetricsCollector`
// copies them.
const VLLM_TTFT_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0,
    160.0, 640.0, 2560.0,
];
const VLLM_ITL_BUCKETS: &[f64] =
    &[0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0];
const VLLM_E2E_BUCKETS: &[f64] = &[
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0,
    1920.0, 7680.0,
];

// SGLang's defaults (`TokenizerMetricsCollector.__init__`): coarser at the low end of TTFT,
// finer for ITL, and an e2e range that stops at 40 minutes.
const SGLANG_TTFT_BUCKETS: &[f64] =
    &[0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 2.0, 4.0, 6.0, 8.0, 10.0, 20.0, 40.0, 60.0, 80.0, 100.0, 200.0, 400.0];
const SGLANG_ITL_BUCKETS: &[f64] = &[
    0.002, 0.004, 0.006, 0.008, 0.010, 0.015, 0.020, 0.025, 0.030, 0.035, 0.040, 0.060, 0.080, 0.100, 0.200, 0.400,
    0.600, 0.800, 1.000, 2.000, 4.000, 6.000, 8.000,
];
const SGLANG_E2E_BUCKETS: &[f64] = &[
    0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 2.0, 4.0, 6.0, 8.0, 10.0, 20.0, 40.0, 60.0, 80.0, 100.0, 200.0, 400.0, 600.0, 1200.0,
    1800.0, 2400.0,
];

/// Histogram bucket upper bounds, in seconds, as the engine declares them.
#[derive(Debug)]
pub(super) struct Buckets {
    pub ttft: &'static [f64],
    pub itl: &'static [f64],
    pub e2e: &'static [f64],
    /// The queue-time histogram (engines that export one use their e2e buckets).
    pub queue: &'static [f64],
}

const VLLM_BUCKETS: Buckets =
    Buckets { ttft: VLLM_TTFT_BUCKETS, itl: VLLM_ITL_BUCKETS, e2e: VLLM_E2E_BUCKETS, queue: VLLM_E2E_BUCKETS };
const SGLANG_BUCKETS: Buckets =
    Buckets { ttft: SGLANG_TTFT_BUCKETS, itl: SGLANG_ITL_BUCKETS, e2e: SGLANG_E2E_BUCKETS, queue: SGLANG_E2E_BUCKETS };

/// Series every dialect has, under its own names.
#[derive(Debug)]
pub(super) struct Names {
    pub running: &'static str,
    pub waiting: &'static str,
    pub kv_usage: &'static str,
    pub prompt_tokens: &'static str,
    pub generation_tokens: &'static str,
    pub success: &'static str,
    pub ttft: &'static str,
    pub itl: &'static str,
    pub e2e: &'static str,
    /// Arrival to first scheduling; not every engine exports it.
    pub queue: Option<&'static str>,
}

/// Prefix-cache series, which have no common shape.
#[derive(Debug)]
pub(super) enum EngineNames {
    Vllm {
        queries: &'static str,
        hits: &'static str,
        preemptions: &'static str,
        cache_config: &'static str,
    },
    Sglang {
        hit_rate: &'static str,
    },
    Trtllm {
        hit_rate: &'static str,
        reused_blocks: &'static str,
        missed_blocks: &'static str,
        max_blocks: &'static str,
        used: &'static str,
        free: &'static str,
        tokens_per_block: &'static str,
    },
}

#[derive(Debug)]
pub(super) struct Dialect {
    pub names: Names,
    pub engine: EngineNames,
    pub buckets: Buckets,
    /// Labels with one value on every series (TensorRT-LLM's `engine_type`).
    pub const_labels: &'static [(&'static str, &'static str)],
    /// Whether the finished-request counter is split by `finished_reason`.
    pub success_has_reason: bool,
    /// Inter-token latency observed per token (vLLM, SGLang) or time per output token per
    /// request (TensorRT-LLM).
    pub itl_per_token: bool,
}

impl Dialect {
    pub fn of(flavor: Flavor) -> Self {
        match flavor {
            Flavor::Vllm => Dialect {
                names: Names {
                    running: "vllm:num_requests_running",
                    waiting: "vllm:num_requests_waiting",
                    kv_usage: "vllm:kv_cache_usage_perc",
                    prompt_tokens: "vllm:prompt_tokens_total",
                    generation_tokens: "vllm:generation_tokens_total",
                    success: "vllm:request_success_total",
                    ttft: "vllm:time_to_first_token_seconds",
                    itl: "vllm:inter_token_latency_seconds",
                    e2e: "vllm:e2e_request_latency_seconds",
                    queue: Some("vllm:request_queue_time_seconds"),
                },
                engine: EngineNames::Vllm {
                    queries: "vllm:prefix_cache_queries_total",
                    hits: "vllm:prefix_cache_hits_total",
                    preemptions: "vllm:num_preemptions_total",
                    cache_config: "vllm:cache_config_info",
                },
                buckets: VLLM_BUCKETS,
                const_labels: &[],
                success_has_reason: true,
                itl_per_token: true,
            },
            Flavor::Sglang => Dialect {
                names: Names {
                    running: "sglang:num_running_reqs",
                    waiting: "sglang:num_queue_reqs",
                    kv_usage: "sglang:token_usage",
                    prompt_tokens: "sglang:prompt_tokens_total",
                    generation_tokens: "sglang:generation_tokens_total",
                    success: "sglang:num_requests_total",
                    ttft: "sglang:time_to_first_token_seconds",
                    itl: "sglang:inter_token_latency_seconds",
                    e2e: "sglang:e2e_request_latency_seconds",
                    queue: None,
                },
                engine: EngineNames::Sglang { hit_rate: "sglang:cache_hit_rate" },
                buckets: SGLANG_BUCKETS,
                const_labels: &[],
                success_has_reason: false,
                itl_per_token: true,
            },
            Flavor::Trtllm => Dialect {
                names: Names {
                    running: "trtllm_num_requests_running",
                    waiting: "trtllm_num_requests_waiting",
                    kv_usage: "trtllm_kv_cache_utilization",
                    prompt_tokens: "trtllm_prompt_tokens_total",
                    generation_tokens: "trtllm_generation_tokens_total",
                    success: "trtllm_request_success_total",
                    ttft: "trtllm_time_to_first_token_seconds",
                    itl: "trtllm_time_per_output_token_seconds",
                    e2e: "trtllm_e2e_request_latency_seconds",
                    queue: Some("trtllm_request_queue_time_seconds"),
                },
                engine: EngineNames::Trtllm {
                    hit_rate: "trtllm_kv_cache_hit_rate",
                    reused_blocks: "trtllm_kv_cache_reused_blocks_total",
                    missed_blocks: "trtllm_kv_cache_missed_blocks_total",
                    max_blocks: "trtllm_kv_cache_max_blocks",
                    used: "trtllm_kv_cache_used_blocks",
                    free: "trtllm_kv_cache_free_blocks",
                    tokens_per_block: "trtllm_kv_cache_tokens_per_block",
                },
                buckets: VLLM_BUCKETS,
                const_labels: &[("engine_type", "trtllm")],
                success_has_reason: true,
                itl_per_token: false,
            },
        }
    }
}
