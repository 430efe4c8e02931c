//! `sluice bench`: the gateway's cost, measured against a zero-delay simulated worker.
//!
//! In one process and one run: a zero-delay `sluice-sim` worker, a gateway in front of it (and,
//! with `--baseline-append`, a second gateway configured differently), and a closed-loop
//! client. Each scenario is measured straight to the worker and through each gateway, so the
//! difference is what the gateway adds. The targets take turns in short slices rather than one
//! long phase each: on a shared VM the machine's speed changes from one second to the next, and
//! sequential phases would compare different machines. Latency phases use one connection (no
//! queueing); throughput phases use `--concurrency` connections.
//!
//! The worker and each gateway run on tokio runtimes of their own, as they would in processes of
//! their own: on the client's runtime, the roles' tasks would share run queues, and the client
//! could hand a request to the worker within one thread, a shortcut no deployment has
//! (`--shared-runtime` measures that arrangement; `docs/bench/processes.sh` measures separate
//! processes, the reference).

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use serde_json::json;
use sluice_config::Config;
use sluice_server::{Running, Sluice};
use sluice_sim::{OutputLength, SimConfig, SimWorker};
use tokio::net::TcpListener;
use tokio::runtime::{Handle, Runtime};

use crate::BenchArgs;
use crate::loadgen::{LoadResult, Target, closed_loop};

const KEY: &str = "sk-bench-0123456789";
const MODEL: &str = "bench-model";

struct Row {
    scenario: &'static str,
    direct: LoadResult,
    gateway: LoadResult,
    baseline: Option<LoadResult>,
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let worker = Role::new("sim", args.shared_runtime)?;
    let sim_config = SimConfig {
        models: vec![MODEL.to_owned()],
        zero_delay: true,
        output: OutputLength { min: args.stream_tokens, max: args.stream_tokens, fixed: Some(args.stream_tokens) },
        ..SimConfig::default()
    };
    let sim = worker
        .run(async move { SimWorker::start(sim_config, TcpListener::bind("127.0.0.1:0").await?).await })
        .await?
        .context("starting the simulated worker")?;

    let gateways = Role::new("gateway", args.shared_runtime)?;
    let start = |append: Option<PathBuf>| gateways.run(start_gateway(sim.base_url(), args.upstream_http2, append));
    let gateway = start(args.config_append.clone()).await??;
    let baseline = match &args.baseline_append {
        Some(path) => Some(start(Some(path.clone())).await?.context("starting the baseline gateway")?),
        None => None,
    };

    let chat = |stream: bool| {
        Bytes::from(
            json!({
                "model": MODEL,
                "messages": [{"role": "user", "content": "Say something short about rivers."}],
                "max_tokens": args.stream_tokens,
                "stream": stream,
            })
            .to_string(),
        )
    };
    let direct = |body: Bytes| Target { addr: sim.addr(), path: "/v1/chat/completions", bearer: None, body };
    let via = |addr: SocketAddr, body: Bytes| Target {
        addr,
        path: "/v1/chat/completions",
        bearer: Some(KEY.to_owned()),
        body,
    };

    let phase = Duration::from_secs_f64(args.seconds);
    let warmup = Duration::from_millis(500);
    let mut rows = Vec::new();
    for (scenario, stream, concurrency) in [
        ("latency, non-streaming, 1 conn", false, 1),
        ("latency, streaming, 1 conn", true, 1),
        ("throughput, non-streaming", false, args.concurrency),
        ("throughput, streaming", true, args.concurrency),
    ] {
        if args.only.as_deref().is_some_and(|only| !scenario.contains(only)) {
            continue;
        }
        let body = chat(stream);
        let mut targets = vec![direct(body.clone()), via(gateway.data_addr, body.clone())];
        if let Some(b) = &baseline {
            targets.push(via(b.data_addr, body));
        }
        for target in &targets {
            closed_loop(target, concurrency, warmup).await;
        }
        let mut results: Vec<LoadResult> = targets.iter().map(|_| LoadResult::default()).collect();
        let slice = phase / args.slices;
        for _ in 0..args.slices {
            for (target, result) in targets.iter().zip(&mut results) {
                result.absorb(&closed_loop(target, concurrency, slice).await);
            }
        }
        let mut results = results.into_iter();
        let (Some(direct), Some(gateway)) = (results.next(), results.next()) else {
            anyhow::bail!("the bench lost a target's results");
        };
        rows.push(Row { scenario, direct, gateway, baseline: results.next() });
    }

    print_table(&rows, args.concurrency, args.slices);
    if let Some(path) = &args.json {
        write_json(path, &rows)?;
    }
    gateways.run(gateway.shutdown()).await?;
    if let Some(baseline) = baseline {
        gateways.run(baseline.shutdown()).await?;
    }
    worker.run(sim.shutdown()).await?;
    Ok(())
}

/// Where one role of the bench runs: a runtime of its own, or the client's.
struct Role {
    handle: Handle,
    own: Option<Runtime>,
}

impl Role {
    fn new(name: &str, shared: bool) -> anyhow::Result<Role> {
        if shared {
            return Ok(Role { handle: Handle::current(), own: None });
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name(format!("bench-{name}"))
            .build()
            .with_context(|| format!("starting the {name} runtime"))?;
        Ok(Role { handle: runtime.handle().clone(), own: Some(runtime) })
    }

    /// Runs `task` on this role's runtime, so what it spawns and the sockets it opens live there.
    async fn run<F>(&self, task: F) -> anyhow::Result<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle.spawn(task).await.context("a bench task panicked")
    }
}

impl Drop for Role {
    fn drop(&mut self) {
        // Dropping a runtime waits for its threads, which async code must not do; by now its
        // role has shut down (or the bench is failing), so nothing is left to wait for.
        if let Some(runtime) = self.own.take() {
            runtime.shutdown_background();
        }
    }
}

/// A gateway in front of the worker at `sim_url` with the bench tenant, and `append` (a file of
/// TOML) appended to its config.
async fn start_gateway(sim_url: String, upstream_http2: bool, append: Option<PathBuf>) -> anyhow::Result<Running> {
    let append = append.as_deref();
    let appended = match append {
        Some(path) => std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
        None => String::new(),
    };
    let config = Config::from_toml(
        &format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\
             [[pools]]\nname = \"bench\"\nmodels = [\"{MODEL}\"]\nendpoints = [{{ url = \"{}\", http2 = {} }}]\n\
             [[tenants]]\nname = \"bench\"\napi_keys = [\"{KEY}\"]\n{appended}\n",
            sim_url, upstream_http2,
        ),
        &[],
        &|_| None,
    )
    .with_context(|| match append {
        Some(path) => format!("the bench config with {} appended is invalid", path.display()),
        None => "the bench config is invalid".to_owned(),
    })?;
    Ok(Sluice::build(config)?
        .start_on(TcpListener::bind("127.0.0.1:0").await?, TcpListener::bind("127.0.0.1:0").await?)?)
}

fn us(h: &hdrhistogram::Histogram<u64>, q: f64) -> u64 {
    h.value_at_quantile(q)
}

#[expect(clippy::print_stdout, reason = "the bench command's output is its table")]
fn print_table(rows: &[Row], concurrency: usize, slices: u32) {
    println!(
        "sluice bench: zero-delay simulated worker, {concurrency} connections in throughput phases, \
         targets alternating in {slices} slices per phase"
    );
    println!(
        "{:<34} {:>8} {:>10} {:>9} {:>9} {:>10} {:>10} {:>7} {:>12}",
        "scenario", "path", "req/s", "p50 µs", "p99 µs", "+p50 µs", "+p99 µs", "ratio", "vs baseline"
    );
    for row in rows {
        let mut paths = vec![("direct", &row.direct), ("gateway", &row.gateway)];
        if let Some(baseline) = &row.baseline {
            paths.push(("baseline", baseline));
        }
        for (i, (path, r)) in paths.iter().enumerate() {
            let through_gateway = i > 0;
            let added = |q| us(&r.latency_us, q) as i64 - us(&row.direct.latency_us, q) as i64;
            let vs_baseline = match (&row.baseline, *path) {
                (Some(b), "gateway") => format!("{:.3}", r.requests_per_second() / b.requests_per_second().max(1e-9)),
                _ => String::new(),
            };
            println!(
                "{:<34} {:>8} {:>10.0} {:>9} {:>9} {:>10} {:>10} {:>7} {:>12}",
                if i == 0 { row.scenario } else { "" },
                path,
                r.requests_per_second(),
                us(&r.latency_us, 0.5),
                us(&r.latency_us, 0.99),
                if through_gateway { added(0.5).to_string() } else { String::new() },
                if through_gateway { added(0.99).to_string() } else { String::new() },
                if through_gateway {
                    format!("{:.2}", r.requests_per_second() / row.direct.requests_per_second().max(1e-9))
                } else {
                    String::new()
                },
                vs_baseline,
            );
            if r.errors > 0 {
                println!("{:<34} {:>8} errors: {}", "", path, r.errors);
            }
        }
    }
}

fn write_json(path: &Path, rows: &[Row]) -> anyhow::Result<()> {
    let side = |r: &LoadResult| {
        json!({
            "requests": r.ok, "errors": r.errors, "requests_per_s": r.requests_per_second(),
            "p50_us": us(&r.latency_us, 0.5), "p99_us": us(&r.latency_us, 0.99),
            "first_chunk_p50_us": us(&r.first_chunk_us, 0.5),
        })
    };
    let out: Vec<_> = rows
        .iter()
        .map(|row| {
            let mut v = json!({"scenario": row.scenario, "direct": side(&row.direct), "gateway": side(&row.gateway)});
            if let Some(baseline) = &row.baseline {
                v["baseline"] = side(baseline);
            }
            v
        })
        .collect();
    std::fs::write(path, serde_json::to_vec_pretty(&out)?).with_context(|| format!("writing {}", path.display()))
}
