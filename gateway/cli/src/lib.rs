//! The `sluice` command line: `serve`, `demo`, `bench`, the store's own `migrate` and
//! `revoke-key`, the admin API's operations (`tenant`, `key`, `limits`, `slo`, `pool`,
//! `endpoint`, `plugin`, `binding`, `usage`, `audit`), and plugin authoring
//! (`plugin new|build|test`).

pub mod authoring;
pub mod bench;
pub mod demo;
pub mod loadgen;
pub mod logging;
pub mod manage;
pub mod migrate;
pub mod private_files;
pub mod revoke_key;
pub mod serve;
mod signal;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "sluice", version, about = "AI edge gateway for self-hosted GPU inference pools")]
pub struct Cli {
    #[command(flatten)]
    pub log: logging::LogArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway from a config file.
    Serve(ServeArgs),
    /// Run everything in one process: the gateway, simulated GPU workers and a little traffic.
    Demo(DemoArgs),
    /// Measure the gateway against a zero-delay simulated worker, and the worker directly.
    Bench(BenchArgs),
    /// Internal: one role of `sluice bench` (it runs this binary again for each).
    #[command(subcommand, hide = true)]
    BenchRole(BenchRole),
    /// Apply pending store migrations and exit.
    Migrate(MigrateArgs),
    /// Revoke an API key in the store directly (no admin API needed), whoever created it.
    RevokeKey(RevokeKeyArgs),
    #[command(flatten)]
    Manage(manage::ManageCommand),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// TOML config file; without one, defaults and SLUICE__* environment variables apply.
    #[arg(long, short, env = "SLUICE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Validate the config, print a summary and exit.
    #[arg(long)]
    pub check_config: bool,
    /// Where the embedded SQLite store lives when no database URL is configured.
    #[arg(long, env = "SLUICE_DATA_DIR", default_value = "./sluice-data")]
    pub data_dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// TOML config file (for `[database]`); without one, `DATABASE_URL` or the embedded store.
    #[arg(long, short, env = "SLUICE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Where the embedded SQLite store lives when no database URL is configured.
    #[arg(long, env = "SLUICE_DATA_DIR", default_value = "./sluice-data")]
    pub data_dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct RevokeKeyArgs {
    /// The tenant the key belongs to.
    pub tenant: String,
    /// The key's id, its display prefix or its name, as `sluice key list` shows them (a
    /// prefix's closing `…` may be left out); one live key must match.
    pub key: String,
    /// TOML config file (for `[database]`); without one, `DATABASE_URL` or the embedded store.
    #[arg(long, short, env = "SLUICE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Where the embedded SQLite store lives when no database URL is configured.
    #[arg(long, env = "SLUICE_DATA_DIR", default_value = "./sluice-data")]
    pub data_dir: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Traffic {
    On,
    Off,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Data-plane address (OpenAI API).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: std::net::SocketAddr,
    /// Admin-plane address (metrics, health).
    #[arg(long, default_value = "127.0.0.1:9090")]
    pub admin_listen: std::net::SocketAddr,
    /// Number of simulated GPU workers.
    #[arg(long, default_value_t = 4)]
    pub workers: usize,
    /// Where Sluice keeps its embedded state.
    #[arg(long, default_value = "./sluice-data")]
    pub data_dir: PathBuf,
    /// Synthetic client load against the gateway.
    #[arg(long, value_enum, default_value = "on")]
    pub traffic: Traffic,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Seconds per measured phase.
    #[arg(long, default_value_t = 5.0)]
    pub seconds: f64,
    /// Concurrent client connections for the throughput phases.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Output tokens per streamed response.
    #[arg(long, default_value_t = 16)]
    pub stream_tokens: u32,
    /// Speak HTTP/2 (prior knowledge) from the gateway to the worker instead of HTTP/1.1.
    #[arg(long)]
    pub upstream_http2: bool,
    /// Run only the scenarios whose name contains this text (e.g. `streaming`, `latency`).
    #[arg(long)]
    pub only: Option<String>,
    /// Write the results as JSON to this file as well.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// TOML appended to the bench gateway's config: `[[plugins]]` entries to measure a plugin
    /// chain, or `[plugin_host] builtin_router = false` to measure with no plugin at all.
    #[arg(long, value_name = "FILE")]
    pub config_append: Option<PathBuf>,
    /// A second gateway, with this TOML appended instead, measured in the same run: the
    /// `vs baseline` column is the first gateway's req/s over this one's (a plugin chain on vs
    /// off, say; `/dev/null` for the defaults).
    #[arg(long, value_name = "FILE")]
    pub baseline_append: Option<PathBuf>,
    /// Slices per phase: the targets take turns, one slice each, so all of them see the same
    /// machine (a shared VM changes speed from one second to the next).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub slices: u32,
    /// Where the worker and the gateways run: in processes of their own, as deployed; on tokio
    /// runtimes of their own in this process; or on the client's runtime (how `sluice bench`
    /// measured before 2026-11-29). See BENCHMARKS.md.
    #[arg(long, value_enum, default_value = "processes")]
    pub roles: Roles,
    /// The API the requests speak. `messages-via-chat` sends Messages requests to a pool whose
    /// workers are declared to speak chat completions only, so the gateway translates them; the
    /// direct target is the worker's own Messages endpoint.
    #[arg(long, value_enum, default_value = "chat")]
    pub api: BenchApi,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchApi {
    /// `POST /v1/chat/completions`.
    Chat,
    /// OpenAI's Responses API, `POST /v1/responses`.
    Responses,
    /// Anthropic's Messages API, `POST /v1/messages`, served by the worker itself.
    Messages,
    /// Anthropic's Messages API, translated by the gateway to chat completions.
    MessagesViaChat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Roles {
    /// This binary run again for each role (`sluice bench-role`), as deployed.
    Processes,
    /// A tokio runtime per role in the bench's process.
    Runtimes,
    /// Every role on the client's runtime.
    Shared,
}

/// One role of `sluice bench`, run in a process of its own by the bench itself.
#[derive(Debug, Subcommand)]
pub enum BenchRole {
    /// A zero-delay simulated worker serving the bench model.
    Sim {
        #[arg(long)]
        stream_tokens: u32,
    },
    /// A gateway with this config (TOML text, not a file name).
    Gateway {
        #[arg(long)]
        config: String,
    },
}
