use super::*;

/// A small llmd-73: 2 workers of the 32B profile with a quarter of the KV, shorter prompts and
/// outputs, a short ladder. Finishes in seconds and keeps the shape: prefix reuse is available
/// (best-achievable hit rate high) but load-only policies capture little of it.
fn small_llmd() -> Scenario {
    let mut cluster = cluster("qwen3-32b-h100-tp2", 2, 3).unwrap();
    cluster.engine.kv_blocks = 600;
    let params = SharedPrefix {
        groups: 12,
        prompts_per_group: 5,
        system_prompt_len: 1_500,
        question_len: 300,
        output_len: 60,
        ladder: vec![(1.0, 20.0), (4.0, 20.0), (8.0, 20.0)],
    };
    let workload = workload::shared_prefix(&params, cluster.engine.block_size, 3);
    Scenario { name: "llmd-73-small".to_owned(), cluster, workload }
}

#[test]
fn small_llmd_73_runs_every_baseline_deterministically() {
    let sc = small_llmd();
    let slo = Slo { ttft_s: 2.0, itl_s: 0.1 };
    let policies: Vec<_> = ["random", "round-robin", "least-loaded"].iter().map(|p| policy(p, 3).unwrap()).collect();
    let reports = compare(&sc, &policies, slo);
    assert_eq!(reports.len(), 3);
    let n = sc.workload.requests.len() as u64;
    for r in &reports {
        assert_eq!(r.overall.requests, n);
        assert_eq!(r.overall.completed, n, "{}: everything finishes", r.policy);
        assert_eq!(r.stages.len(), 3);
        assert!(r.overall.prefix_hit_rate <= r.overall.best_prefix_hit_rate + 1e-9);
        assert!(r.overall.prefill_computed_tokens > 0 && r.overall.prefill_needed_tokens > 0);
        assert!(r.overall.output_tokens_per_s > 0.0 && r.overall.ttft_p90_s > 0.0);
        assert!(r.stages[2].kv_usage_mean > r.stages[0].kv_usage_mean, "{}: load fills KV", r.policy);
    }
    // Deterministic for a seed.
    let again = compare(&sc, &[policy("random", 3).unwrap()], slo);
    assert_eq!(again[0].overall.ttft_p90_s, reports[0].overall.ttft_p90_s);
    assert_eq!(again[0].overall.output_tokens_per_s, reports[0].overall.output_tokens_per_s);
}

#[test]
fn scenarios_build_and_unknown_names_are_errors() {
    for name in SCENARIOS {
        let sc = scenario(name, true, 1).unwrap();
        assert!(!sc.workload.requests.is_empty(), "{name}");
        assert!(!sc.workload.stages.is_empty(), "{name}");
    }
    assert!(matches!(scenario("nope", true, 1), Err(BenchError::UnknownScenario(_))));
    assert!(matches!(policy("nope", 1), Err(BenchError::UnknownPolicy(_))));
}

#[test]
fn multi_turn_later_turns_hit_their_own_history() {
    let mut sc = scenario("multi-turn", true, 2).unwrap();
    sc.workload.requests.truncate(40);
    let reports = compare(&sc, &[policy("round-robin", 2).unwrap()], Slo { ttft_s: 2.0, itl_s: 0.1 });
    assert!(reports[0].overall.best_prefix_hit_rate > 0.3, "{:?}", reports[0].overall);
}
