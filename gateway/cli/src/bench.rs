//! `sluice bench`: the gateway's cost, measured against a zero-delay simulated worker.
//!
//! In one run: a zero-delay `sluice-sim` worker, a gateway in front of it (and, with
//! `--baseline-append`, a second gateway configured differently), and a closed-loop client.
//! Each scenario is measured straight to the worker and through each gateway, so the difference
//! is what the gateway adds. The targets take turns in short slices rather than one long phase
//! each: on a shared VM the machine's speed changes from one second to the next, and sequential
//! phases would compare different machines. Latency phases use one connection (no queueing);
//! throughput phases use `--concurrency` connections.
//!
//! By default the worker and each gateway run in processes of their own (this binary, run again
//! as `sluice bench-role`), as they are deployed. In one process they would share an allocator,
//! and with `--roles shared` a scheduler as well: the client could then hand a request to the
//! worker within one thread, a shortcut no deployment has. `--roles runtimes` (a tokio runtime
//! per role in this process) and `--roles shared` are kept to compare with earlier figures
//! (BENCHMARKS.md).

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use serde_json::json;
use sluice_config::Config;
use sluice_server::{Running, Sluice};
use sluice_sim::{OutputLength, SimConfig, SimHandle, SimWorker};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::{Child, Command};
use tokio::runtime::{Handle, Runtime};

use crate::loadgen::{LoadResult, Target, closed_loop};
use crate::logging::LogArgs;
use crate::{BenchApi, BenchArgs, BenchRole, Roles};

const KEY: &str = "sk-bench-0123456789";
const MODEL: &str = "bench-model";

/// How long a role process may take to stop once told to (its drain is immediate: by then the
/// client has finished).
const ROLE_STOP: Duration = Duration::from_secs(10);

struct Row {
    scenario: &'static str,
    direct: LoadResult,
    gateway: LoadResult,
    baseline: Option<LoadResult>,
}

pub async fn run(args: BenchArgs, log: &LogArgs) -> anyhow::Result<()> {
    // The appended files are read before anything starts, so a missing one is reported with its
    // name and nothing to clean up.
    let read = |path: &Path| std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()));
    let appended = args.config_append.as_deref().map(read).transpose()?.unwrap_or_default();
    let baseline_appended = args.baseline_append.as_deref().map(read).transpose()?;

    let spawner = Spawner { roles: args.roles, log };
    let sim = spawner.sim(args.stream_tokens).await.context("starting the simulated worker")?;
    let sim_url = format!("http://{}", sim.addr);
    let gateway_config = |appended: &str, file: Option<&Path>| -> anyhow::Result<String> {
        let text = gateway_toml(&sim_url, args.upstream_http2, args.api, appended);
        Config::from_toml(&text, &[], &|_| None).with_context(|| match file {
            Some(path) => format!("the bench config with {} appended is invalid", path.display()),
            None => "the bench config is invalid".to_owned(),
        })?;
        Ok(text)
    };
    let gateway_text = gateway_config(&appended, args.config_append.as_deref())?;
    let baseline_text =
        baseline_appended.as_deref().map(|a| gateway_config(a, args.baseline_append.as_deref())).transpose()?;
    let gateway = spawner.gateway(gateway_text).await.context("starting the gateway")?;
    let baseline = match baseline_text {
        Some(text) => Some(spawner.gateway(text).await.context("starting the baseline gateway")?),
        None => None,
    };

    let path = api_path(args.api);
    let direct = |body: Bytes| Target { addr: sim.addr, path, bearer: None, body };
    let via = |addr: SocketAddr, body: Bytes| Target { addr, path, bearer: Some(KEY.to_owned()), body };

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
        let body = request_body(args.api, args.stream_tokens, stream);
        let mut targets = vec![direct(body.clone()), via(gateway.addr, body.clone())];
        if let Some(b) = &baseline {
            targets.push(via(b.addr, body));
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

    print_table(&rows, args.concurrency, args.slices, args.roles, args.api);
    if let Some(path) = &args.json {
        write_json(path, &rows)?;
    }
    gateway.stop().await?;
    if let Some(baseline) = baseline {
        baseline.stop().await?;
    }
    sim.stop().await
}

/// The config of a gateway in front of the worker at `sim_url` with the bench tenant, and
/// `appended` (TOML) after it.
fn gateway_toml(sim_url: &str, upstream_http2: bool, api: BenchApi, appended: &str) -> String {
    // The worker speaks every API; the pool says so unless the gateway is to translate.
    let apis = match api {
        BenchApi::Chat | BenchApi::MessagesViaChat => "",
        BenchApi::Responses | BenchApi::Messages => "apis = [\"chat\", \"responses\", \"messages\"]\n",
    };
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\
         [[pools]]\nname = \"bench\"\nmodels = [\"{MODEL}\"]\nendpoints = [{{ url = \"{sim_url}\", http2 = {upstream_http2} }}]\n{apis}\
         [[tenants]]\nname = \"bench\"\napi_keys = [\"{KEY}\"]\n{appended}\n"
    )
}

fn api_path(api: BenchApi) -> &'static str {
    match api {
        BenchApi::Chat => "/v1/chat/completions",
        BenchApi::Responses => "/v1/responses",
        BenchApi::Messages | BenchApi::MessagesViaChat => "/v1/messages",
    }
}

/// The same short question in each API, asking for `tokens` output tokens.
fn request_body(api: BenchApi, tokens: u32, stream: bool) -> Bytes {
    const QUESTION: &str = "Say something short about rivers.";
    let body = match api {
        BenchApi::Responses => {
            json!({"model": MODEL, "input": QUESTION, "max_output_tokens": tokens, "stream": stream})
        }
        // A minimal Messages request reads as a chat request.
        BenchApi::Chat | BenchApi::Messages | BenchApi::MessagesViaChat => json!({
            "model": MODEL,
            "messages": [{"role": "user", "content": QUESTION}],
            "max_tokens": tokens,
            "stream": stream,
        }),
    };
    Bytes::from(body.to_string())
}

fn sim_config(stream_tokens: u32) -> SimConfig {
    SimConfig {
        models: vec![MODEL.to_owned()],
        zero_delay: true,
        output: OutputLength { min: stream_tokens, max: stream_tokens, fixed: Some(stream_tokens) },
        ..SimConfig::default()
    }
}

async fn start_sim(stream_tokens: u32) -> anyhow::Result<SimHandle> {
    Ok(SimWorker::start(sim_config(stream_tokens), TcpListener::bind("127.0.0.1:0").await?).await?)
}

async fn start_gateway(config: String) -> anyhow::Result<Running> {
    let config = Config::from_toml(&config, &[], &|_| None).context("the bench config is invalid")?;
    Ok(Sluice::build(config)?
        .start_on(TcpListener::bind("127.0.0.1:0").await?, TcpListener::bind("127.0.0.1:0").await?)?)
}

/// `sluice bench-role`: serves one role on 127.0.0.1 port 0, prints the address it listens on as
/// the first line of stdout, and stops when stdin closes, which it does when the bench finishes
/// or dies: a role never outlives its bench.
pub async fn serve_role(role: BenchRole) -> anyhow::Result<()> {
    match role {
        BenchRole::Sim { stream_tokens } => {
            let sim = start_sim(stream_tokens).await?;
            report_addr(sim.addr()).await?;
            until_stdin_closes().await?;
            sim.shutdown().await;
        }
        BenchRole::Gateway { config } => {
            let gateway = start_gateway(config).await?;
            report_addr(gateway.data_addr).await?;
            until_stdin_closes().await?;
            gateway.shutdown().await;
        }
    }
    Ok(())
}

async fn report_addr(addr: SocketAddr) -> anyhow::Result<()> {
    let mut stdout = tokio::io::stdout();
    stdout.write_all(format!("{addr}\n").as_bytes()).await?;
    stdout.flush().await.context("reporting the address to the bench")
}

async fn until_stdin_closes() -> anyhow::Result<()> {
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 64];
    while stdin.read(&mut buf).await.context("waiting for the bench to finish")? > 0 {}
    Ok(())
}

/// Starts the bench's roles where `--roles` says.
struct Spawner<'a> {
    roles: Roles,
    log: &'a LogArgs,
}

impl Spawner<'_> {
    async fn sim(&self, stream_tokens: u32) -> anyhow::Result<Started> {
        match self.roles {
            Roles::Processes => self.process(&["sim", "--stream-tokens", &stream_tokens.to_string()]).await,
            Roles::Runtimes | Roles::Shared => {
                let runtime = RoleRuntime::new("sim", self.roles == Roles::Shared)?;
                let sim = runtime.run(start_sim(stream_tokens)).await??;
                Ok(Started { addr: sim.addr(), host: Host::Sim(runtime, sim) })
            }
        }
    }

    async fn gateway(&self, config: String) -> anyhow::Result<Started> {
        match self.roles {
            Roles::Processes => self.process(&["gateway", "--config", &config]).await,
            Roles::Runtimes | Roles::Shared => {
                let runtime = RoleRuntime::new("gateway", self.roles == Roles::Shared)?;
                let gateway = runtime.run(start_gateway(config)).await??;
                Ok(Started { addr: gateway.data_addr, host: Host::Gateway(runtime, gateway) })
            }
        }
    }

    /// Runs `sluice bench-role ARGS` and reads the address it reports.
    async fn process(&self, args: &[&str]) -> anyhow::Result<Started> {
        let exe = std::env::current_exe().context("finding this binary to run a bench role")?;
        let mut command = Command::new(exe);
        command.arg("--log-level").arg(&self.log.log_level);
        if self.log.log_json {
            command.arg("--log-json");
        }
        let mut child = command
            .arg("bench-role")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("running this binary as a bench role")?;
        let stdout = child.stdout.take().context("the role process has no stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).await.context("reading the role's address")?;
        if line.is_empty() {
            let status = child.wait().await?;
            anyhow::bail!("the role process exited ({status}) before it listened; its error is above");
        }
        let addr =
            line.trim().parse().with_context(|| format!("the role process reported {line:?}, not an address"))?;
        Ok(Started { addr, host: Host::Process(child) })
    }
}

/// A running role: where it listens, and what stops it.
struct Started {
    addr: SocketAddr,
    host: Host,
}

enum Host {
    Process(Child),
    Sim(RoleRuntime, SimHandle),
    Gateway(RoleRuntime, Running),
}

impl Started {
    async fn stop(self) -> anyhow::Result<()> {
        match self.host {
            Host::Process(mut child) => {
                // Closing its stdin is the role's signal to shut down.
                drop(child.stdin.take());
                let status = match tokio::time::timeout(ROLE_STOP, child.wait()).await {
                    Ok(status) => status?,
                    Err(_) => anyhow::bail!("a bench role did not stop within {ROLE_STOP:?}"),
                };
                anyhow::ensure!(status.success(), "a bench role exited with {status}");
                Ok(())
            }
            Host::Sim(runtime, sim) => runtime.run(sim.shutdown()).await,
            Host::Gateway(runtime, gateway) => runtime.run(gateway.shutdown()).await,
        }
    }
}

/// Where an in-process role runs: a runtime of its own, or the client's.
struct RoleRuntime {
    handle: Handle,
    own: Option<Runtime>,
}

impl RoleRuntime {
    fn new(name: &str, shared: bool) -> anyhow::Result<RoleRuntime> {
        if shared {
            return Ok(RoleRuntime { handle: Handle::current(), own: None });
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name(format!("bench-{name}"))
            .build()
            .with_context(|| format!("starting the {name} runtime"))?;
        Ok(RoleRuntime { handle: runtime.handle().clone(), own: Some(runtime) })
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

impl Drop for RoleRuntime {
    fn drop(&mut self) {
        // Dropping a runtime waits for its threads, which async code must not do; by now its
        // role has shut down (or the bench is failing), so nothing is left to wait for.
        if let Some(runtime) = self.own.take() {
            runtime.shutdown_background();
        }
    }
}

fn us(h: &hdrhistogram::Histogram<u64>, q: f64) -> u64 {
    h.value_at_quantile(q)
}

#[expect(clippy::print_stdout, reason = "the bench command's output is its table")]
fn print_table(rows: &[Row], concurrency: usize, slices: u32, roles: Roles, api: BenchApi) {
    let api = match api {
        BenchApi::Chat => "chat completions",
        BenchApi::Responses => "Responses API",
        BenchApi::Messages => "Messages API",
        BenchApi::MessagesViaChat => "Messages API translated to chat completions",
    };
    let roles = match roles {
        Roles::Processes => "worker and gateways in processes of their own",
        Roles::Runtimes => "worker and gateways on runtimes of their own in this process",
        Roles::Shared => "worker, gateways and client on one runtime",
    };
    println!(
        "sluice bench: {api}; zero-delay simulated worker, {concurrency} connections in throughput \
         phases, targets alternating in {slices} slices per phase; {roles}"
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
