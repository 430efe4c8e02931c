//! `sluice plugin new|build|test`: writing a plugin without a running gateway.
//!
//! - [`scaffold`]: `new` writes a ready-to-build plugin crate from a template.
//! - [`compile`]: `build` runs cargo for `wasm32-wasip2` and reports the component.
//! - [`trial`]: `test` loads a component in the real plugin host, as the gateway would, and runs
//!   its hooks against sample requests ([`samples`]), printing decisions and timings
//!   ([`report`]).

mod compile;
mod report;
mod samples;
mod scaffold;
mod trial;

use std::path::PathBuf;

use clap::{Args, Subcommand};

/// The authoring subcommands of `sluice plugin`; they work offline and ignore the admin flags.
#[derive(Debug, Subcommand)]
pub enum AuthoringCommand {
    /// Write a new plugin crate (Cargo.toml, src/lib.rs, plugin.toml, requests.json, README.md).
    New(NewArgs),
    /// Build a plugin crate for wasm32-wasip2 and print the component's path and size.
    Build(BuildArgs),
    /// Run a component's hooks against sample requests in the real plugin host, locally.
    Test(TestArgs),
}

#[derive(Debug, Args)]
pub struct NewArgs {
    /// The plugin's name: 1-64 characters of a-z, 0-9, '-' and '_', starting with a letter.
    pub name: String,
    /// Where to create the crate (default: ./<name>). Must not exist or be empty.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Depend on the SDK at this path (a checkout's `plugins/sdk`). Without it, a Sluice
    /// checkout above the new crate is used if there is one, else `sluice-sdk` from crates.io
    /// (not published yet).
    #[arg(long)]
    pub sdk_path: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The plugin crate (or workspace) to build.
    #[arg(long, default_value = ".")]
    pub path: PathBuf,
    /// Further arguments for `cargo build` (after `--`), e.g. `-- --offline`.
    #[arg(last = true)]
    pub cargo_args: Vec<String>,
}

#[derive(Debug, Args)]
pub struct TestArgs {
    /// The component (.wasm) to load.
    pub file: PathBuf,
    /// Sample requests: a JSON object, or an array of them (see docs/plugins.md#sample-requests).
    #[arg(long)]
    pub request: PathBuf,
    /// The binding's config, a JSON file (default: the manifest's `[plugins.config]`, else `{}`).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The plugin's manifest (`plugin.toml`, a `[[plugins]]` entry): its capabilities, limits,
    /// isolation and config are used as the gateway would. Without it, every capability the
    /// component imports is granted.
    #[arg(long)]
    pub manifest: Option<PathBuf>,
    /// Extra calls per hook and sample for the timing table (0: decisions only).
    #[arg(long, default_value_t = 1000)]
    pub iterations: u32,
}

pub async fn run(command: AuthoringCommand, json: bool) -> anyhow::Result<()> {
    match command {
        AuthoringCommand::New(args) => scaffold::run(&args),
        AuthoringCommand::Build(args) => compile::run(&args, json),
        AuthoringCommand::Test(args) => trial::run(&args, json).await,
    }
}
