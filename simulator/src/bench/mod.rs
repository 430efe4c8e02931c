//! `sluice-sim bench-routing`: routing policies compared on a simulated pool in virtual time;
//! `sluice-sim bench-streams`: one real-time worker under thousands of concurrent streams.
//!
//! - `workload`: the generators (inference-perf `shared_prefix`, multi-turn chat, a no-reuse
//!   control, bursts of siblings sharing a long prefix).
//! - `vtime`: the deterministic discrete-event driver over the same [`crate::engine::Engine`].
//! - `report`: per-stage and overall figures, the table and the JSON.
//! - `streams`: the real-time concurrency benchmark.
//!
//! The policies are `sluice_routing` policies; `sluice` is the gateway's shipped `router`
//! component itself, run through the plugin host (`shipped`).

pub mod report;
pub mod shipped;
pub mod streams;
pub mod vtime;
pub mod workload;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use report::{PolicyReport, Slo};
use serde::Serialize;
use sluice_routing::{PoolFacts, RoutingPolicy};
use vtime::ClusterConfig;
use workload::{SharedPrefix, Workload};

use crate::engine::latency::{BatchShape, LatencyConfig, LatencyProfile, PolynomialLatency};

/// Scenario names accepted by `--scenario`.
pub const SCENARIOS: [&str; 4] = ["llmd-73", "multi-turn", "no-reuse", "burst"];

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("unknown scenario {0:?} (known: llmd-73, multi-turn, no-reuse, burst)")]
    UnknownScenario(String),
    #[error("unknown policy {0:?} (known: {known})", known = sluice_routing::POLICY_NAMES.join(", "))]
    UnknownPolicy(String),
    #[error("--timeout-s must be a finite number of seconds >= 0, got {0}")]
    BadTimeout(f64),
    #[error("unknown latency profile {0:?}")]
    UnknownProfile(String),
    #[error("writing {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("encoding the report: {0}")]
    Json(#[from] serde_json::Error),
    #[error("binding the benchmark's worker: {0}")]
    Io(std::io::Error),
    #[error("starting the benchmark's worker: {0}")]
    Worker(#[source] crate::SimError),
    #[error("loading the shipped router component: {0}")]
    Plugin(String),
}

/// Command-line arguments of `sluice-sim bench-routing`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Workload: llmd-73, multi-turn, no-reuse or burst.
    #[arg(long)]
    pub scenario: String,
    /// Comma-separated policies to compare: random, round-robin, least-loaded, llmd-approx,
    /// llmd-precise, llmd-sticky, sglang-cache-aware, dynamo-cost, sluice.
    #[arg(long, default_value = "random,least-loaded,llmd-precise,llmd-sticky,sluice", value_delimiter = ',')]
    pub policies: Vec<String>,
    /// Write the report as JSON (one object per policy) to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// A small, fast version of the scenario (fewer workers, proportionally less load).
    #[arg(long)]
    pub quick: bool,
    /// Seed for the workload, the latency jitter and the random policy.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Goodput SLO: time to first token, in milliseconds.
    #[arg(long, default_value_t = 2_000)]
    pub slo_ttft_ms: u64,
    /// Goodput SLO: mean inter-token latency, in milliseconds.
    #[arg(long, default_value_t = 100)]
    pub slo_itl_ms: u64,
    /// How stale the engine metrics the policies see may be, in milliseconds.
    #[arg(long, default_value_t = 50)]
    pub scrape_interval_ms: u64,
    /// How long the engines' KV events take to reach the host's prefix index, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub event_delay_ms: u64,
    /// Client timeout per request, in seconds from sending (default 300, inference-perf's);
    /// a request still unfinished then is abandoned and its sequence aborted. 0 disables it.
    #[arg(long)]
    pub timeout_s: Option<f64>,
    /// Most requests the client has out at once (default 100 per simulated worker, 800 for the
    /// full pools, as inference-perf's 8 workers × 100); requests due beyond it wait in the
    /// client. 0 = open loop.
    #[arg(long)]
    pub max_in_flight: Option<u32>,
    /// Override the scenario's output length per request, in tokens (a sensitivity knob: the
    /// scenarios' own lengths are the published ones).
    #[arg(long)]
    pub output_len: Option<u32>,
}

/// A scenario ready to run: pool and workload.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: String,
    pub cluster: ClusterConfig,
    pub workload: Workload,
}

fn cluster(profile: &str, workers: u32, seed: u64) -> Result<ClusterConfig, BenchError> {
    let p = LatencyProfile::by_name(profile).ok_or_else(|| BenchError::UnknownProfile(profile.to_owned()))?;
    Ok(ClusterConfig {
        workers,
        engine: p.engine,
        latency: p.latency,
        speeds: Vec::new(),
        scrape_interval: Duration::from_millis(50),
        sample_interval: Duration::from_secs(1),
        model: p.name.to_owned(),
        seed,
        request_timeout: Some(Duration::from_secs_f64(DEFAULT_TIMEOUT_S)),
        max_in_flight: Some(MAX_IN_FLIGHT_PER_WORKER * workers),
        event_delay: Duration::ZERO,
        speculative_ttl: sluice_routing::DEFAULT_SPECULATIVE_TTL,
    })
}

/// The llm-d "73% capacity" ladder as published (`benchmarking/73-capacity/README.md` in
/// llm-d-kv-cache-manager): `(qps, seconds)`, a 50 s warm-up at 15 QPS that seats the prefixes,
/// then 3 → 60 QPS in stages of 20–38 s. About 17,000 requests.
pub const LLMD_LADDER: [(f64, f64); 17] = [
    (15.0, 50.0),
    (3.0, 20.0),
    (10.0, 20.0),
    (15.0, 20.0),
    (20.0, 38.0),
    (22.0, 34.0),
    (25.0, 30.0),
    (30.0, 25.0),
    (35.0, 21.0),
    (40.0, 38.0),
    (43.0, 36.0),
    (46.0, 33.0),
    (49.0, 30.0),
    (52.0, 29.0),
    (55.0, 27.0),
    (57.0, 26.0),
    (60.0, 25.0),
];

/// inference-perf's client gives up on a request after aiohttp's default total timeout (5 min):
/// it sets no timeout of its own unless configured, and the published llm-d runs configure none.
pub const DEFAULT_TIMEOUT_S: f64 = 300.0;

/// inference-perf has at most `num_workers × worker_max_concurrency` requests out: one worker
/// process per client CPU, 100 requests each by default (`docs/loadgen.md`). The published run's
/// client is not described; 8 CPUs (800 in flight for 8 pods) fits its per-pod wait queue
/// (p90 63–67, max 108–124). Scaled with the pool so `--quick` keeps the proportion.
pub const MAX_IN_FLIGHT_PER_WORKER: u32 = 100;

/// The llm-d shared-prefix workload scaled to `workers` of 8 (load and groups scale with it),
/// stage durations multiplied by `time_scale`.
pub fn llmd_73(workers: u32, time_scale: f64, seed: u64) -> Result<Scenario, BenchError> {
    let cluster = cluster("qwen3-32b-h100-tp2", workers, seed)?;
    let scale = f64::from(workers) / 8.0;
    let params = SharedPrefix {
        groups: ((150.0 * scale).round() as u32).max(1),
        prompts_per_group: 5,
        system_prompt_len: 6_000,
        question_len: 1_200,
        output_len: 1_000,
        ladder: LLMD_LADDER.iter().map(|&(q, d)| (q * scale, d * time_scale)).collect(),
    };
    let workload = workload::shared_prefix(&params, cluster.engine.block_size, seed);
    Ok(Scenario { name: "llmd-73".to_owned(), cluster, workload })
}

/// Builds a named scenario (full or `--quick`).
pub fn scenario(name: &str, quick: bool, seed: u64) -> Result<Scenario, BenchError> {
    let (workers, scale) = if quick { (2u32, 0.25) } else { (8u32, 1.0) };
    let ladder = |rates: &[f64], secs: f64| -> Vec<(f64, f64)> {
        rates.iter().map(|&q| (q * scale, if quick { secs / 2.0 } else { secs })).collect()
    };
    match name {
        "llmd-73" => llmd_73(workers, if quick { 0.5 } else { 1.0 }, seed),
        "multi-turn" => {
            let cluster = cluster("llama-8b-h100", workers, seed)?;
            let rates = ladder(&[0.5, 1.0, 2.0, 3.0, 4.0, 6.0], 60.0);
            let workload = workload::multi_turn(&rates, 5, 2_000, 300, 300, 5.0, cluster.engine.block_size, seed);
            Ok(Scenario { name: name.to_owned(), cluster, workload })
        }
        "no-reuse" => {
            let cluster = cluster("llama-8b-h100", workers, seed)?;
            let rates = ladder(&[5.0, 10.0, 20.0, 30.0, 40.0, 50.0], 60.0);
            let workload = workload::no_reuse(&rates, (1_000, 4_000), 300, cluster.engine.block_size, seed);
            Ok(Scenario { name: name.to_owned(), cluster, workload })
        }
        "burst" => {
            let cluster = cluster("qwen3-32b-h100-tp2", workers, seed)?;
            let sizes: &[u32] = if quick { &[4, 8, 16] } else { &[8, 16, 32, 64] };
            let bursts = if quick { 2 } else { 3 };
            let bs = cluster.engine.block_size;
            let workload = workload::burst(sizes, bursts, 30.0, 0.2, 8_000, 200, 300, bs, seed);
            Ok(Scenario { name: name.to_owned(), cluster, workload })
        }
        other => Err(BenchError::UnknownScenario(other.to_owned())),
    }
}

/// `--timeout-s`: seconds, 0 for none.
fn timeout(seconds: f64) -> Result<Option<Duration>, BenchError> {
    if seconds == 0.0 {
        return Ok(None);
    }
    Duration::try_from_secs_f64(seconds).map(Some).map_err(|_| BenchError::BadTimeout(seconds))
}

/// A policy by name, seeded, calibrated for the scenario's pool as its project's setup would be.
/// `sluice` is the shipped `router` component through the plugin host, not the library's code
/// compiled into this binary.
pub fn policy(name: &str, seed: u64, cluster: &ClusterConfig) -> Result<Box<dyn RoutingPolicy>, BenchError> {
    if name == "sluice" {
        return Ok(Box::new(shipped::ShippedRouter::new()?));
    }
    sluice_routing::by_name(name, seed, &pool_facts(cluster)).ok_or_else(|| BenchError::UnknownPolicy(name.to_owned()))
}

/// The calibration inputs of the comparison policies. The peak prefill throughput is measured
/// the way llm-d's calibration script does: full prefill steps on an idle worker.
pub fn pool_facts(cluster: &ClusterConfig) -> PoolFacts {
    let model = PolynomialLatency::new(LatencyConfig { jitter: 0.0, ..cluster.latency });
    let budget = cluster.engine.max_batched_tokens;
    let step = model.mean_step_time(&BatchShape {
        prefill_tokens: budget,
        decode_seqs: 0,
        num_seqs: 1,
        decode_context_tokens: 0,
    });
    PoolFacts {
        workers: cluster.workers,
        kv_capacity_blocks: cluster.engine.kv_blocks,
        peak_prefill_tokens_per_s: f64::from(budget) / step.as_secs_f64().max(1e-9),
    }
}

/// Runs every policy on the scenario, two at a time (one per core), in the order given.
pub fn compare(scenario: &Scenario, policies: &[Box<dyn RoutingPolicy>], slo: Slo) -> Vec<PolicyReport> {
    let run_one = |p: &dyn RoutingPolicy| {
        let started = Instant::now();
        let run = vtime::run(&scenario.cluster, &scenario.workload, p);
        report::report(p.name(), &run, &scenario.workload, slo, started.elapsed().as_secs_f64())
    };
    let mut reports = Vec::with_capacity(policies.len());
    for pair in policies.chunks(2) {
        std::thread::scope(|s| {
            let handles: Vec<_> = pair.iter().map(|p| s.spawn(|| run_one(p.as_ref()))).collect();
            for h in handles {
                if let Ok(r) = h.join() {
                    reports.push(r);
                }
            }
        });
    }
    reports
}

#[derive(Debug, Serialize)]
struct JsonEntry<'a> {
    scenario: &'a str,
    quick: bool,
    seed: u64,
    workers: u32,
    requests: usize,
    /// The client timeout in seconds (`null`: none).
    timeout_s: Option<f64>,
    /// The client's in-flight limit (`null`: open loop).
    max_in_flight: Option<u32>,
    #[serde(flatten)]
    report: &'a PolicyReport,
}

/// What `bench-routing` prints and writes.
#[derive(Debug)]
pub struct BenchOutput {
    pub table: String,
    pub reports: Vec<PolicyReport>,
    pub wall_time: Duration,
}

/// `sluice-sim bench-routing`: builds the scenario, runs the policies, writes the JSON.
pub fn bench_routing(args: &BenchArgs) -> Result<BenchOutput, BenchError> {
    let started = Instant::now();
    let mut sc = scenario(&args.scenario, args.quick, args.seed)?;
    sc.cluster.scrape_interval = Duration::from_millis(args.scrape_interval_ms);
    sc.cluster.event_delay = Duration::from_millis(args.event_delay_ms);
    if let Some(t) = args.timeout_s {
        sc.cluster.request_timeout = timeout(t)?;
    }
    if let Some(n) = args.max_in_flight {
        sc.cluster.max_in_flight = (n > 0).then_some(n);
    }
    if let Some(n) = args.output_len {
        for r in &mut sc.workload.requests {
            r.output_len = n.max(1);
        }
    }
    let policies =
        args.policies.iter().map(|p| policy(p.trim(), args.seed, &sc.cluster)).collect::<Result<Vec<_>, _>>()?;
    let slo = Slo { ttft_s: args.slo_ttft_ms as f64 / 1000.0, itl_s: args.slo_itl_ms as f64 / 1000.0 };
    let reports = compare(&sc, &policies, slo);
    if let Some(path) = &args.json {
        let entries: Vec<_> = reports
            .iter()
            .map(|r| JsonEntry {
                scenario: &sc.name,
                quick: args.quick,
                seed: args.seed,
                workers: sc.cluster.workers,
                requests: sc.workload.requests.len(),
                timeout_s: sc.cluster.request_timeout.map(|t| t.as_secs_f64()),
                max_in_flight: sc.cluster.max_in_flight,
                report: r,
            })
            .collect();
        let text = serde_json::to_string_pretty(&entries)?;
        std::fs::write(path, text).map_err(|source| BenchError::Write { path: path.clone(), source })?;
    }
    let timeout = sc.cluster.request_timeout.map_or("none".to_owned(), |t| format!("{} s", t.as_secs_f64()));
    let in_flight = sc.cluster.max_in_flight.map_or("unbounded".to_owned(), |n| n.to_string());
    let header = format!(
        "scenario {} ({}), {} workers of {}, {} requests, seed {}, client timeout {}, in flight {}\n",
        sc.name,
        if args.quick { "quick" } else { "full" },
        sc.cluster.workers,
        sc.cluster.model,
        sc.workload.requests.len(),
        args.seed,
        timeout,
        in_flight
    );
    Ok(BenchOutput { table: header + &report::table(&reports), reports, wall_time: started.elapsed() })
}

#[cfg(test)]
mod tests;
