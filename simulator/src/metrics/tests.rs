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

/// The `le` labels of one histogram, in exposition order (`+Inf` last).
fn bucket_edges(text: &str, histogram: &str) -> Vec<String> {
    let prefix = format!("{histogram}_bucket{{");
    text.lines()
        .filter(|l| l.starts_with(&prefix))
        .filter_map(|l| l.split("le=\"").nth(1)?.split('"').next().map(str::to_owned))
        .collect()
}

fn edges(list: &str) -> Vec<String> {
    list.split(',').map(str::to_owned).chain(["+Inf".to_owned()]).collect()
}

#[test]
fn sglang_histograms_use_sglang_bucket_boundaries() {
    // SGLang's `TokenizerMetricsCollector` defaults (python/sglang/srt/metrics/collector.py).
    let text = exercised(Flavor::Sglang);
    assert_eq!(
        bucket_edges(&text, "sglang:time_to_first_token_seconds"),
        edges("0.1,0.2,0.4,0.6,0.8,1,2,4,6,8,10,20,40,60,80,100,200,400")
    );
    assert_eq!(
        bucket_edges(&text, "sglang:inter_token_latency_seconds"),
        edges("0.002,0.004,0.006,0.008,0.01,0.015,0.02,0.025,0.03,0.035,0.04,0.06,0.08,0.1,0.2,0.4,0.6,0.8,1,2,4,6,8")
    );
    assert_eq!(
        bucket_edges(&text, "sglang:e2e_request_latency_seconds"),
        edges("0.1,0.2,0.4,0.6,0.8,1,2,4,6,8,10,20,40,60,80,100,200,400,600,1200,1800,2400")
    );
    // The two 20 ms gaps land in SGLang's 0.02 bucket (vLLM's nearest edge would be 0.025).
    assert!(text.contains("sglang:inter_token_latency_seconds_bucket{model_name=\"m\",le=\"0.02\"} 2"), "{text}");

    // vLLM keeps its own edges.
    let vllm = exercised(Flavor::Vllm);
    assert_eq!(bucket_edges(&vllm, "vllm:time_to_first_token_seconds").first().map(String::as_str), Some("0.001"));
    assert_eq!(bucket_edges(&vllm, "vllm:e2e_request_latency_seconds").last().map(String::as_str), Some("+Inf"));
    assert_eq!(bucket_edges(&vllm, "vllm:e2e_request_latency_seconds").len(), 22);
}
