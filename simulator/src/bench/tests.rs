use super::*;

/// A small llmd-73: 2 workers of the 32B profile with a sixteenth of the KV, shorter prompts and
/// outputs, a short ladder whose last stage is beyond the pool. Finishes in seconds and keeps
/// the shape: prefix reuse is available (best-achievable hit rate high) but load-only policies
/// capture little of it, and the top of the ladder queues.
fn small_llmd() -> Scenario {
    let mut cluster = cluster("qwen3-32b-h100-tp2", 2, 3).unwrap();
    cluster.engine.kv_blocks = 300;
    let params = SharedPrefix {
        groups: 24,
        prompts_per_group: 5,
        system_prompt_len: 1_500,
        question_len: 300,
        output_len: 300,
        ladder: vec![(1.0, 20.0), (4.0, 20.0), (16.0, 20.0)],
    };
    let workload = workload::shared_prefix(&params, cluster.engine.block_size, 3);
    Scenario { name: "llmd-73-small".to_owned(), cluster, workload }
}

#[test]
fn small_llmd_73_runs_every_baseline_deterministically() {
    let sc = small_llmd();
    let slo = Slo { ttft_s: 2.0, itl_s: 0.1 };
    let policies: Vec<_> =
        ["random", "round-robin", "least-loaded"].iter().map(|p| policy(p, 3, &sc.cluster).unwrap()).collect();
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
        assert_eq!((r.overall.timeouts, r.overall.failed), (0, 0), "{}: nothing waits 300 s", r.policy);
        // The shape: the top of the ladder queues, the bottom does not.
        assert!(r.stages[2].ttft_p90_s > 2.0 * r.stages[0].ttft_p90_s, "{}: {:?}", r.policy, r.stages);
        assert!(r.stages[2].wait_queue_mean > r.stages[0].wait_queue_mean, "{}", r.policy);
    }
    // Deterministic for a seed.
    let again = compare(&sc, &[policy("random", 3, &sc.cluster).unwrap()], slo);
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
    assert!(matches!(
        policy("nope", 1, &scenario("burst", true, 1).unwrap().cluster),
        Err(BenchError::UnknownPolicy(_))
    ));
}

#[test]
fn multi_turn_later_turns_hit_their_own_history() {
    let mut sc = scenario("multi-turn", true, 2).unwrap();
    sc.workload.requests.truncate(40);
    let reports = compare(&sc, &[policy("round-robin", 2, &sc.cluster).unwrap()], Slo { ttft_s: 2.0, itl_s: 0.1 });
    assert!(reports[0].overall.best_prefix_hit_rate > 0.3, "{:?}", reports[0].overall);
}

/// One worker, far more load than it can serve, clients that give up after 5 s.
fn overloaded(timeout_s: Option<f64>) -> Scenario {
    let mut cluster = cluster("qwen3-32b-h100-tp2", 1, 5).unwrap();
    cluster.engine.kv_blocks = 400;
    cluster.request_timeout = timeout(timeout_s.unwrap_or(0.0)).unwrap();
    let params = SharedPrefix {
        groups: 6,
        prompts_per_group: 4,
        system_prompt_len: 1_000,
        question_len: 300,
        output_len: 200,
        ladder: vec![(2.0, 10.0), (40.0, 20.0)],
    };
    let workload = workload::shared_prefix(&params, cluster.engine.block_size, 5);
    Scenario { name: "overloaded".to_owned(), cluster, workload }
}

#[test]
fn timed_out_requests_are_abandoned_freed_and_reported() {
    let sc = overloaded(Some(5.0));
    let run = vtime::run(&sc.cluster, &sc.workload, policy("round-robin", 5, &sc.cluster).unwrap().as_ref());
    let n = run.requests.len();
    let timed_out = run.requests.iter().filter(|o| o.timed_out).count();
    let completed = run.requests.iter().filter(|o| o.finished_s.is_some()).count();
    assert!(timed_out > 0 && completed > 0, "{timed_out} timed out, {completed} completed of {n}");
    assert_eq!(timed_out + completed, n, "every request either completes or times out");
    for o in &run.requests {
        assert!(!(o.timed_out && o.finished_s.is_some()), "a timed-out request never completes");
        if let Some(done) = o.finished_s {
            assert!(done - o.sent_s <= 5.0 + 1e-9, "completed within the timeout: {o:?}");
        }
    }
    // The engine let go of every abandoned sequence: nothing left running or holding blocks.
    for s in &run.engine_stats {
        assert_eq!((s.running, s.waiting), (0, 0));
        assert_eq!(s.kv_usage, 0.0);
    }
    // Output counts only completed requests' tokens.
    let produced: u64 = run.token_times.iter().map(|&(_, n)| u64::from(n)).sum();
    let kept: u64 = run.requests.iter().filter(|o| o.finished_s.is_some()).map(|o| u64::from(o.output_tokens)).sum();
    assert_eq!(produced - run.abandoned_token_times.len() as u64, kept);

    let slo = Slo { ttft_s: 2.0, itl_s: 0.1 };
    let r = report::report("round-robin", &run, &sc.workload, slo, 0.0);
    assert_eq!(r.overall.timeouts, timed_out as u64);
    assert_eq!(r.overall.failed, timed_out as u64);
    assert_eq!(r.overall.completed, completed as u64);
    assert_eq!(r.stages.iter().map(|f| f.timeouts).sum::<u64>(), timed_out as u64);
    assert_eq!(r.stages[0].timeouts, 0, "the light stage keeps up");
    // TTFT percentiles are over completed requests only, all of which finished inside 5 s.
    assert!(r.overall.ttft_p99_s <= 5.0, "{:?}", r.overall);
    let json = serde_json::to_value(&r).unwrap();
    for field in ["timeouts", "failed", "ttft_p90_s", "output_tokens_per_s", "goodput", "stages"] {
        assert!(json.get(field).is_some(), "{field}");
    }
    assert!(json["stages"][1].get("timeouts").is_some());

    // Without a timeout the same load completes everything, later.
    let patient = overloaded(None);
    let run =
        vtime::run(&patient.cluster, &patient.workload, policy("round-robin", 5, &patient.cluster).unwrap().as_ref());
    assert!(run.requests.iter().all(|o| o.finished_s.is_some() && !o.timed_out));
}

#[test]
fn timeout_flag_values() {
    assert_eq!(timeout(0.0).unwrap(), None);
    assert_eq!(timeout(300.0).unwrap(), Some(Duration::from_secs(300)));
    assert!(matches!(timeout(-1.0), Err(BenchError::BadTimeout(_))));
    assert!(matches!(timeout(f64::NAN), Err(BenchError::BadTimeout(_))));
    let quick = scenario("llmd-73", true, 1).unwrap();
    assert_eq!(quick.cluster.request_timeout, Some(Duration::from_secs(300)));
    assert_eq!(quick.cluster.max_in_flight, Some(200), "100 per worker, 2 workers");
    assert_eq!(scenario("llmd-73", false, 1).unwrap().cluster.max_in_flight, Some(800));
}

#[test]
fn llmd_73_follows_the_published_ladder() {
    let sc = scenario("llmd-73", false, 0).unwrap();
    assert_eq!(sc.workload.stages.len(), LLMD_LADDER.len());
    assert_eq!(sc.workload.stages[0].qps, 15.0, "warm-up first");
    assert_eq!(sc.workload.stages[1].qps, 3.0);
    assert_eq!(sc.workload.stages.last().map(|s| s.qps), Some(60.0));
    let offered: f64 = LLMD_LADDER.iter().map(|(q, d)| q * d).sum();
    let n = sc.workload.requests.len() as f64;
    assert!((n - offered).abs() < 0.05 * offered, "{n} requests for {offered} offered");
}

#[test]
fn the_client_never_has_more_than_max_in_flight_requests_out() {
    let mut sc = overloaded(None);
    sc.cluster.max_in_flight = Some(10);
    let run = vtime::run(&sc.cluster, &sc.workload, policy("least-loaded", 5, &sc.cluster).unwrap().as_ref());
    assert!(run.requests.iter().all(|o| o.finished_s.is_some()), "no timeout: everything completes");
    // Sweep sends (+1) and completions (-1) in time order; completions first at equal times,
    // since a finishing request's slot is what lets the next one go.
    let mut edges: Vec<(f64, i32)> =
        run.requests.iter().flat_map(|o| [(o.sent_s, 1), (o.finished_s.unwrap_or(o.sent_s), -1)]).collect();
    edges.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let mut out = 0;
    let mut peak = 0;
    for (_, d) in edges {
        out += d;
        peak = peak.max(out);
    }
    assert_eq!(peak, 10, "the cap is reached and never exceeded");
    let delayed = run.requests.iter().filter(|o| o.sent_s > o.scheduled_s + 1e-9).count();
    assert!(delayed > 0, "overload queues in the client");
    assert!(run.requests.iter().all(|o| o.sent_s >= o.scheduled_s));
    let r = report::report("least-loaded", &run, &sc.workload, Slo { ttft_s: 2.0, itl_s: 0.1 }, 0.0);
    assert!(r.stages[1].schedule_delay_mean_s > 0.0 && r.stages[0].schedule_delay_p90_s == 0.0, "{r:?}");
    // TTFT is counted from sending, so a capped client sees shorter TTFTs than an open one.
    let mut open = overloaded(None);
    open.cluster.max_in_flight = None;
    let run = vtime::run(&open.cluster, &open.workload, policy("least-loaded", 5, &open.cluster).unwrap().as_ref());
    let r_open = report::report("least-loaded", &run, &open.workload, Slo { ttft_s: 2.0, itl_s: 0.1 }, 0.0);
    assert!(r.overall.ttft_p90_s < r_open.overall.ttft_p90_s);
    assert_eq!(r_open.overall.schedule_delay_mean_s, 0.0);
}

#[test]
fn prefix_aware_policies_capture_the_reuse_that_load_only_ones_miss() {
    let sc = small_llmd();
    let slo = Slo { ttft_s: 2.0, itl_s: 0.1 };
    let names = ["least-loaded", "llmd-precise", "sluice"];
    let policies: Vec<_> = names.iter().map(|p| policy(p, 3, &sc.cluster).unwrap()).collect();
    let reports = compare(&sc, &policies, slo);
    let by = |name: &str| &reports.iter().find(|r| r.policy == name).unwrap().overall;
    let (load, precise, ours) = (by("least-loaded"), by("llmd-precise"), by("sluice"));
    for r in [precise, ours] {
        assert!(r.prefix_hit_rate > load.prefix_hit_rate + 0.15, "{r:?} vs {load:?}");
        assert!(r.prefill_computed_tokens < load.prefill_computed_tokens, "{r:?}");
        assert_eq!(r.completed, r.requests);
    }
    assert!(ours.output_tokens_per_s >= load.output_tokens_per_s, "{ours:?} vs {load:?}");
}

/// 64 siblings sharing an 8k-token prefix, sent within 50 ms to 8 idle workers.
fn sibling_burst(speculative_ttl: Duration) -> Scenario {
    let mut cluster = cluster("qwen3-32b-h100-tp2", 8, 7).unwrap();
    cluster.speculative_ttl = speculative_ttl;
    let workload = workload::burst(&[64], 1, 30.0, 0.05, 8_192, 200, 50, cluster.engine.block_size, 7);
    Scenario { name: "burst-64".to_owned(), cluster, workload }
}

/// Workers that computed the shared prefix: those that served a request with no cached token.
fn prefix_computed_on(run: &vtime::RunResult) -> std::collections::BTreeSet<u32> {
    run.requests.iter().filter(|o| o.cached_tokens == 0).map(|o| o.worker).collect()
}

#[test]
fn a_burst_of_siblings_computes_its_prefix_on_at_most_two_workers() {
    let sc = sibling_burst(sluice_routing::DEFAULT_SPECULATIVE_TTL);
    let run = vtime::run(&sc.cluster, &sc.workload, policy("sluice", 7, &sc.cluster).unwrap().as_ref());
    assert!(run.requests.iter().all(|o| o.finished_s.is_some()));
    let workers = prefix_computed_on(&run);
    assert!((1..=2).contains(&workers.len()), "computed on {workers:?}");
    // Without the routing guesses the index learns of the prefix only once a worker computed it:
    // the siblings of the first 50 ms all look cold and scatter.
    let blind = sibling_burst(Duration::ZERO);
    let run = vtime::run(&blind.cluster, &blind.workload, policy("sluice", 7, &blind.cluster).unwrap().as_ref());
    assert!(prefix_computed_on(&run).len() > 2, "{:?}", prefix_computed_on(&run));
}

#[test]
fn delayed_kv_events_reach_the_index_later_and_guesses_cover_the_gap() {
    let mut sc = small_llmd();
    let slo = Slo { ttft_s: 2.0, itl_s: 0.1 };
    let now = compare(&sc, &[policy("sluice", 3, &sc.cluster).unwrap()], slo);
    sc.cluster.event_delay = Duration::from_secs(2);
    let later = compare(&sc, &[policy("sluice", 3, &sc.cluster).unwrap()], slo);
    let (a, b) = (&now[0].overall, &later[0].overall);
    assert_eq!(b.completed, b.requests);
    assert!(b.output_tokens_per_s >= 0.9 * a.output_tokens_per_s, "{b:?} vs {a:?}");
    assert!(b.prefix_hit_rate >= a.prefix_hit_rate - 0.1, "{b:?} vs {a:?}");
}

#[test]
fn sluice_is_the_shipped_component_and_decides_as_the_library_does() {
    let sc = small_llmd();
    let slo = Slo { ttft_s: 2.0, itl_s: 0.1 };
    let shipped = policy("sluice", 3, &sc.cluster).unwrap();
    assert!(format!("{shipped:?}").contains("ShippedRouter"), "{shipped:?}");
    let native: Box<dyn sluice_routing::RoutingPolicy> = Box::new(sluice_routing::PredictedTtft::new());
    let reports = compare(&sc, &[shipped, native], slo);
    let (a, b) = (&reports[0], &reports[1]);
    assert_eq!(a.overall.completed, a.overall.requests);
    // The same decisions, so the same run.
    assert_eq!(a.overall.output_tokens_per_s, b.overall.output_tokens_per_s, "{a:?} vs {b:?}");
    assert_eq!(a.overall.ttft_p90_s, b.overall.ttft_p90_s);
    assert_eq!(a.overall.prefix_hit_rate, b.overall.prefix_hit_rate);
}
