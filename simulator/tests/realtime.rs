//! Real-time mode options: `--speedup` and the named latency profiles.

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use sluice_sim::engine::latency::LatencyProfile;
use sluice_sim::{Faults, SimConfig};
use support::*;

/// Reads `name_sum` from a Prometheus text exposition.
fn sum_of(text: &str, name: &str) -> f64 {
    let prefix = format!("{name}_sum");
    text.lines()
        .find(|l| l.starts_with(&prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

#[tokio::test]
async fn speedup_compresses_injected_delays_and_metrics_use_the_worker_clock() {
    // A 4 s simulated stall at 40x speedup is 100 ms on the worker's clock.
    let faults = Faults { stall_first_token: Duration::from_secs(4), ..Faults::default() };
    let sim = start(SimConfig { speedup: 40.0, faults, ..SimConfig::default() }).await;
    let url = format!("{}/v1/chat/completions", sim.base_url());
    let sent = Instant::now();
    let (status, _) = post(&client(), url, &chat("hi", json!({"max_tokens": 2}))).await;
    let elapsed = sent.elapsed();
    assert_eq!(status, 200);
    assert!(elapsed >= Duration::from_millis(100), "the compressed stall still applies: {elapsed:?}");
    let ttft = sum_of(&sim.metrics_text(), "vllm:time_to_first_token_seconds");
    assert!(ttft >= 0.1, "{ttft}");
    // What the client measured bounds what the worker reports: the same (compressed) clock,
    // not the 4 s of simulated time.
    assert!(ttft <= elapsed.as_secs_f64(), "ttft {ttft} > client-measured {elapsed:?}");
    sim.shutdown().await;
}

#[tokio::test]
async fn real_time_mode_runs_a_named_profile_with_its_kv_geometry() {
    let mut config = SimConfig { seed: 9, ..SimConfig::default() };
    let profile = LatencyProfile::by_name("qwen3-32b-h100-tp2").unwrap();
    config.apply_profile(&profile);
    assert_eq!((config.engine.kv_blocks, config.engine.block_size), (4_802, 64));
    assert_eq!(config.latency.seed, 9, "jitter follows the worker's seed");
    assert_eq!(config.latency.prefill_quadratic_ns, profile.latency.prefill_quadratic_ns);
    let sim = start(SimConfig { speedup: 10.0, ..config }).await;
    let url = format!("{}/v1/completions", sim.base_url());
    let prompt: Vec<u32> = (1..=200).collect();
    for _ in 0..2 {
        let body = json!({"model": "llama-3-8b", "prompt": prompt, "max_tokens": 2});
        assert_eq!(post(&client(), url.clone(), &body).await.0, 200);
    }
    let text = sim.metrics_text();
    assert!(text.contains("vllm:cache_config_info{block_size=\"64\",num_gpu_blocks=\"4802\"} 1"), "{text}");
    // 200 tokens = 3 full blocks of 64: the second request reuses all three.
    assert!(text.contains("vllm:prefix_cache_hits_total{model_name=\"llama-3-8b\"} 192"), "{text}");
    sim.shutdown().await;
}

#[tokio::test]
async fn bench_streams_serves_every_stream_and_reports_the_lag() {
    use sluice_sim::bench::streams::{StreamsArgs, bench_streams};
    let args = StreamsArgs { streams: 40, output_tokens: 6, prompt_tokens: 20, speedup: 20.0, profile: None };
    let report = bench_streams(&args).await.unwrap();
    assert_eq!((report.completed, report.failed), (40, 0));
    assert_eq!(report.tokens, 40 * 6);
    assert!(report.lag.steps >= 6, "{:?}", report.lag);
    assert!(report.table().contains("| 40 | 40 | 0 |"), "{}", report.table());
}

#[test]
fn server_flags_layer_explicit_values_over_a_profile() {
    use clap::Parser;
    use sluice_sim::Flavor;
    use sluice_sim::cli::ServeArgs;
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        serve: ServeArgs,
    }
    let cli = Cli::try_parse_from([
        "sluice-sim",
        "--profile",
        "llama-8b-h100",
        "--kv-blocks",
        "100",
        "--flavor",
        "sglang",
        "--speedup",
        "5",
        "--kv-events",
        "off",
        "--kv-events-delay-ms",
        "20",
    ])
    .unwrap();
    let c = cli.serve.into_config().unwrap();
    assert_eq!((c.engine.kv_blocks, c.engine.block_size, c.engine.max_batched_tokens), (100, 16, 8192));
    assert_eq!(c.latency.per_kv_ktoken, Duration::from_micros(45), "the profile's KV term");
    assert_eq!(c.flavor, Flavor::Sglang);
    assert_eq!(c.speedup, 5.0);
    assert!(!c.kv_events.enabled);
    assert_eq!(c.kv_events.publish_delay, Duration::from_millis(20));
    let bad = Cli::try_parse_from(["sluice-sim", "--profile", "h200"]).unwrap().serve.into_config();
    assert!(bad.unwrap_err().to_string().contains("profile"));
}
