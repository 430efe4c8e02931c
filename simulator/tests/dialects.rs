//! `/metrics` in each engine's dialect, scraped over HTTP after real requests.

mod support;

use serde_json::json;
use sluice_sim::{Flavor, SimConfig};
use support::*;

/// Two identical 200-token prompts: the second hits the first's 12 cached blocks.
async fn scrape_after_two_requests(flavor: Flavor, path: &str) -> String {
    let sim = start(SimConfig { flavor, ..SimConfig::default() }).await;
    let c = client();
    let url = format!("{}/v1/completions", sim.base_url());
    let prompt: Vec<u32> = (100..300).collect();
    for _ in 0..2 {
        let (status, _) =
            post(&c, url.clone(), &json!({"model": "llama-3-8b", "prompt": prompt, "max_tokens": 4})).await;
        assert_eq!(status, 200);
    }
    let (status, body) = get(&c, format!("{}{path}", sim.base_url())).await;
    assert_eq!(status, 200);
    sim.shutdown().await;
    String::from_utf8_lossy(&body).into_owned()
}

fn assert_lines(text: &str, lines: &[&str]) {
    for line in lines {
        assert!(text.contains(line), "missing `{line}` in\n{text}");
    }
}

#[tokio::test]
async fn vllm_names_and_values() {
    let text = scrape_after_two_requests(Flavor::Vllm, "/metrics").await;
    assert_lines(
        &text,
        &[
            "vllm:num_requests_running{model_name=\"llama-3-8b\"} 0",
            "vllm:num_requests_waiting{model_name=\"llama-3-8b\"} 0",
            "vllm:kv_cache_usage_perc{model_name=\"llama-3-8b\"} 0",
            "vllm:prefix_cache_queries_total{model_name=\"llama-3-8b\"} 400",
            "vllm:prefix_cache_hits_total{model_name=\"llama-3-8b\"} 192",
            "vllm:cache_config_info{block_size=\"16\",num_gpu_blocks=\"8192\"} 1",
            "vllm:prompt_tokens_total{model_name=\"llama-3-8b\"} 400",
            "vllm:generation_tokens_total{model_name=\"llama-3-8b\"} 8",
            "vllm:request_success_total{finished_reason=\"length\",model_name=\"llama-3-8b\"} 2",
            "vllm:time_to_first_token_seconds_count{model_name=\"llama-3-8b\"} 2",
            "vllm:inter_token_latency_seconds_count{model_name=\"llama-3-8b\"} 6",
            "vllm:e2e_request_latency_seconds_count{model_name=\"llama-3-8b\"} 2",
            "vllm:num_preemptions_total{model_name=\"llama-3-8b\"} 0",
            "vllm:request_queue_time_seconds_count{model_name=\"llama-3-8b\"} 2",
        ],
    );
}

#[tokio::test]
async fn sglang_names_and_values() {
    let text = scrape_after_two_requests(Flavor::Sglang, "/metrics").await;
    assert_lines(
        &text,
        &[
            "sglang:num_running_reqs{model_name=\"llama-3-8b\"} 0",
            "sglang:num_queue_reqs{model_name=\"llama-3-8b\"} 0",
            "sglang:token_usage{model_name=\"llama-3-8b\"} 0",
            "sglang:cache_hit_rate{model_name=\"llama-3-8b\"} 0.48",
            "sglang:prompt_tokens_total{model_name=\"llama-3-8b\"} 400",
            "sglang:generation_tokens_total{model_name=\"llama-3-8b\"} 8",
            "sglang:num_requests_total{model_name=\"llama-3-8b\"} 2",
            "sglang:time_to_first_token_seconds_count{model_name=\"llama-3-8b\"} 2",
            "sglang:inter_token_latency_seconds_count{model_name=\"llama-3-8b\"} 6",
            "sglang:e2e_request_latency_seconds_count{model_name=\"llama-3-8b\"} 2",
        ],
    );
    assert!(!text.contains("vllm:"), "{text}");
}

#[tokio::test]
async fn trtllm_names_and_values_on_its_prometheus_path() {
    let text = scrape_after_two_requests(Flavor::Trtllm, "/prometheus/metrics").await;
    let l = "engine_type=\"trtllm\",model_name=\"llama-3-8b\"";
    let lines: Vec<String> = [
        "trtllm_num_requests_running{L} 0",
        "trtllm_num_requests_waiting{L} 0",
        "trtllm_kv_cache_utilization{L} 0",
        "trtllm_kv_cache_max_blocks{L} 8192",
        "trtllm_kv_cache_free_blocks{L} 8192",
        "trtllm_kv_cache_tokens_per_block{L} 16",
        // 12 blocks reused; missed = the 208 uncached prompt tokens in blocks, rounded up.
        "trtllm_kv_cache_reused_blocks_total{L} 12",
        "trtllm_kv_cache_missed_blocks_total{L} 13",
        "trtllm_prompt_tokens_total{L} 400",
        "trtllm_generation_tokens_total{L} 8",
        "trtllm_time_to_first_token_seconds_count{L} 2",
        "trtllm_time_per_output_token_seconds_count{L} 2",
        "trtllm_e2e_request_latency_seconds_count{L} 2",
        "trtllm_request_queue_time_seconds_count{L} 2",
    ]
    .iter()
    .map(|s| s.replace("{L}", &format!("{{{l}}}")))
    .collect();
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    assert_lines(&text, &refs);
    assert!(text.contains("trtllm_request_success_total{engine_type=\"trtllm\",finished_reason=\"length\""), "{text}");
    assert!(!text.contains("vllm:"), "{text}");
}
