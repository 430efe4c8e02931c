use super::*;

fn engine_stats() -> EngineStats {
    EngineStats { running: 3, waiting: 2, kv_usage: 0.5, prefix_queries: 64, prefix_hits: 32, ..EngineStats::default() }
}

fn render(m: &Metrics) -> String {
    String::from_utf8(m.render()).unwrap()
}

fn exercised(flavor: Flavor) -> String {
    let engine = EngineConfig { kv_blocks: 100, block_size: 16, ..EngineConfig::default() };
    let m = Metrics::new(flavor, "m", &engine).unwrap();
    m.publish_engine(&EngineStats::default(), &engine_stats());
    m.first_token("m", 10, 0.05);
    m.token("m", None);
    m.token("m", Some(0.02));
    m.token("m", Some(0.02));
    m.finished("m", "length", 0.2, 0.04, 0.01, 3);
    render(&m)
}

#[test]
fn two_workers_have_separate_registries() {
    let a = Metrics::new(Flavor::Vllm, "m", &EngineConfig::default()).unwrap();
    let b = Metrics::new(Flavor::Vllm, "m", &EngineConfig::default()).unwrap();
    a.publish_engine(&EngineStats::default(), &engine_stats());
    assert!(render(&a).contains("vllm:num_requests_running{model_name=\"m\"} 3"));
    assert!(render(&b).contains("vllm:num_requests_running{model_name=\"m\"} 0"));
}

#[test]
fn vllm_dialect() {
    let text = exercised(Flavor::Vllm);
    for line in [
        "vllm:num_requests_running{model_name=\"m\"} 3",
        "vllm:num_requests_waiting{model_name=\"m\"} 2",
        "vllm:kv_cache_usage_perc{model_name=\"m\"} 0.5",
        "vllm:prefix_cache_queries_total{model_name=\"m\"} 64",
        "vllm:prefix_cache_hits_total{model_name=\"m\"} 32",
        "vllm:cache_config_info{block_size=\"16\",num_gpu_blocks=\"100\"} 1",
        "vllm:prompt_tokens_total{model_name=\"m\"} 10",
        "vllm:generation_tokens_total{model_name=\"m\"} 3",
        "vllm:request_success_total{finished_reason=\"length\",model_name=\"m\"} 1",
        "vllm:inter_token_latency_seconds_count{model_name=\"m\"} 2",
        "vllm:time_to_first_token_seconds_count{model_name=\"m\"} 1",
        "vllm:e2e_request_latency_seconds_count{model_name=\"m\"} 1",
        "vllm:request_queue_time_seconds_count{model_name=\"m\"} 1",
    ] {
        assert!(text.contains(line), "missing {line}\n{text}");
    }
    assert!(!text.contains("sglang:") && !text.contains("trtllm_"));
}

#[test]
fn sglang_dialect() {
    let text = exercised(Flavor::Sglang);
    for line in [
        "sglang:num_running_reqs{model_name=\"m\"} 3",
        "sglang:num_queue_reqs{model_name=\"m\"} 2",
        "sglang:token_usage{model_name=\"m\"} 0.5",
        "sglang:cache_hit_rate{model_name=\"m\"} 0.5",
        "sglang:prompt_tokens_total{model_name=\"m\"} 10",
        "sglang:generation_tokens_total{model_name=\"m\"} 3",
        "sglang:num_requests_total{model_name=\"m\"} 1",
        "sglang:time_to_first_token_seconds_count{model_name=\"m\"} 1",
        "sglang:inter_token_latency_seconds_count{model_name=\"m\"} 2",
        "sglang:e2e_request_latency_seconds_count{model_name=\"m\"} 1",
    ] {
        assert!(text.contains(line), "missing {line}\n{text}");
    }
    assert!(!text.contains("vllm:"));
}

#[test]
fn trtllm_dialect() {
    let text = exercised(Flavor::Trtllm);
    for line in [
        "trtllm_num_requests_running{engine_type=\"trtllm\",model_name=\"m\"} 3",
        "trtllm_num_requests_waiting{engine_type=\"trtllm\",model_name=\"m\"} 2",
        "trtllm_kv_cache_utilization{engine_type=\"trtllm\",model_name=\"m\"} 0.5",
        "trtllm_kv_cache_used_blocks{engine_type=\"trtllm\",model_name=\"m\"} 50",
        "trtllm_kv_cache_free_blocks{engine_type=\"trtllm\",model_name=\"m\"} 50",
        "trtllm_kv_cache_max_blocks{engine_type=\"trtllm\",model_name=\"m\"} 100",
        "trtllm_kv_cache_tokens_per_block{engine_type=\"trtllm\",model_name=\"m\"} 16",
        "trtllm_kv_cache_reused_blocks_total{engine_type=\"trtllm\",model_name=\"m\"} 2",
        "trtllm_kv_cache_missed_blocks_total{engine_type=\"trtllm\",model_name=\"m\"} 2",
        "trtllm_kv_cache_hit_rate{engine_type=\"trtllm\",model_name=\"m\"} 0.5",
        "trtllm_prompt_tokens_total{engine_type=\"trtllm\",model_name=\"m\"} 10",
        "trtllm_generation_tokens_total{engine_type=\"trtllm\",model_name=\"m\"} 3",
        "trtllm_request_success_total{engine_type=\"trtllm\",finished_reason=\"length\",model_name=\"m\"} 1",
        "trtllm_time_to_first_token_seconds_count{engine_type=\"trtllm\",model_name=\"m\"} 1",
        "trtllm_e2e_request_latency_seconds_count{engine_type=\"trtllm\",model_name=\"m\"} 1",
        "trtllm_request_queue_time_seconds_count{engine_type=\"trtllm\",model_name=\"m\"} 1",
        // One observation per request: (0.04 s between first and last) / 2 gaps.
        "trtllm_time_per_output_token_seconds_count{engine_type=\"trtllm\",model_name=\"m\"} 1",
        "trtllm_time_per_output_token_seconds_sum{engine_type=\"trtllm\",model_name=\"m\"} 0.02",
    ] {
        assert!(text.contains(line), "missing {line}\n{text}");
    }
    assert!(!text.contains("vllm:"));
}
