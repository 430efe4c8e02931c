//! `sluice-sim`: one simulated vLLM-like worker. Parses flags, wires the library, waits for a
//! signal.

use anyhow::Context;
use clap::Parser;
use sluice_sim::SimWorker;
use sluice_sim::cli::ServeArgs;
use tracing_subscriber::EnvFilter;

#[derive(Debug, Parser)]
#[command(
    name = "sluice-sim",
    version,
    about = "A simulated GPU inference worker (OpenAI API; vLLM, SGLang or TensorRT-LLM metrics)"
)]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Compare routing policies on a simulated pool in virtual time (no sockets).
    BenchRouting(sluice_sim::bench::BenchArgs),
    /// Serve many concurrent streams from one real-time worker and report whether it keeps up.
    BenchStreams(sluice_sim::bench::streams::StreamsArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .init();
    let cli = Cli::parse();
    match cli.command {
        Some(Command::BenchRouting(args)) => {
            let out = sluice_sim::bench::bench_routing(&args)?;
            #[expect(clippy::print_stdout, reason = "the benchmark's table is the command's output")]
            {
                print!("{}", out.table);
                println!("total wall time {:.1}s", out.wall_time.as_secs_f64());
            }
            return Ok(());
        }
        Some(Command::BenchStreams(args)) => {
            let report = sluice_sim::bench::streams::bench_streams(&args).await?;
            #[expect(clippy::print_stdout, reason = "the benchmark's table is the command's output")]
            {
                print!("{}", report.table());
            }
            return Ok(());
        }
        None => {}
    }
    let listen = cli.serve.listen;
    let config = cli.serve.into_config()?;
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("binding {listen}"))?;
    let handle = SimWorker::start(config, listener).await?;
    wait_for_signal().await?;
    tracing::info!("shutting down");
    handle.shutdown().await;
    Ok(())
}

async fn wait_for_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r?,
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c().await?;
    Ok(())
}
