//! `sluice bench`: the gateway's cost, measured against a zero-delay simulated worker.
//!
//! In one process and one run: a zero-delay `sluice-sim` worker, a gateway in front of it, and
//! a closed-loop client. Each scenario is measured twice, straight to the worker and through
//! the gateway, so the difference is what the gateway adds. Latency phases use one connection
//! (no queueing); throughput phases use `--concurrency` connections.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use serde_json::json;
use sluice_config::Config;
use sluice_server::Sluice;
use sluice_sim::{OutputLength, SimConfig, SimWorker};
use tokio::net::TcpListener;

use crate::BenchArgs;
use crate::loadgen::{LoadResult, Target, closed_loop};

const KEY: &str = "sk-bench-0123456789";
const MODEL: &str = "bench-model";

struct Row {
    scenario: &'static str,
    direct: LoadResult,
    gateway: LoadResult,
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let sim = SimWorker::start(
        SimConfig {
            models: vec![MODEL.to_owned()],
            zero_delay: true,
            output: OutputLength { min: args.stream_tokens, max: args.stream_tokens, fixed: Some(args.stream_tokens) },
            ..SimConfig::default()
        },
        TcpListener::bind("127.0.0.1:0").await?,
    )
    .await
    .context("starting the simulated worker")?;

    let appended = match &args.config_append {
        Some(path) => std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
        None => String::new(),
    };
    let config = Config::from_toml(
        &format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\
             [[pools]]\nname = \"bench\"\nmodels = [\"{MODEL}\"]\nendpoints = [{{ url = \"{}\", http2 = {} }}]\n\
             [[tenants]]\nname = \"bench\"\napi_keys = [\"{KEY}\"]\n{appended}\n",
            sim.base_url(),
            args.upstream_http2,
        ),
        &[],
        &|_| None,
    )
    .context("the bench config (with --config-append) is invalid")?;
    let gateway = Sluice::build(config)?
        .start_on(TcpListener::bind("127.0.0.1:0").await?, TcpListener::bind("127.0.0.1:0").await?)?;

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
    let via = |body: Bytes| Target {
        addr: gateway.data_addr,
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
        let (d, g) = (direct(body.clone()), via(body));
        closed_loop(&d, concurrency, warmup).await;
        closed_loop(&g, concurrency, warmup).await;
        let direct = closed_loop(&d, concurrency, phase).await;
        let gateway = closed_loop(&g, concurrency, phase).await;
        rows.push(Row { scenario, direct, gateway });
    }

    print_table(&rows, args.concurrency);
    if let Some(path) = &args.json {
        write_json(path, &rows)?;
    }
    gateway.shutdown().await;
    sim.shutdown().await;
    Ok(())
}

fn us(h: &hdrhistogram::Histogram<u64>, q: f64) -> u64 {
    h.value_at_quantile(q)
}

#[expect(clippy::print_stdout, reason = "the bench command's output is its table")]
fn print_table(rows: &[Row], concurrency: usize) {
    println!("sluice bench: zero-delay simulated worker, {concurrency} connections in throughput phases");
    println!(
        "{:<34} {:>8} {:>10} {:>9} {:>9} {:>10} {:>10} {:>7}",
        "scenario", "path", "req/s", "p50 µs", "p99 µs", "+p50 µs", "+p99 µs", "ratio"
    );
    for row in rows {
        for (path, r) in [("direct", &row.direct), ("gateway", &row.gateway)] {
            let is_gw = path == "gateway";
            let added = |q| us(&row.gateway.latency_us, q) as i64 - us(&row.direct.latency_us, q) as i64;
            println!(
                "{:<34} {:>8} {:>10.0} {:>9} {:>9} {:>10} {:>10} {:>7}",
                if is_gw { "" } else { row.scenario },
                path,
                r.requests_per_second(),
                us(&r.latency_us, 0.5),
                us(&r.latency_us, 0.99),
                if is_gw { added(0.5).to_string() } else { String::new() },
                if is_gw { added(0.99).to_string() } else { String::new() },
                if is_gw {
                    format!("{:.2}", r.requests_per_second() / row.direct.requests_per_second().max(1e-9))
                } else {
                    String::new()
                },
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
        .map(|row| json!({"scenario": row.scenario, "direct": side(&row.direct), "gateway": side(&row.gateway)}))
        .collect();
    std::fs::write(path, serde_json::to_vec_pretty(&out)?).with_context(|| format!("writing {}", path.display()))
}
