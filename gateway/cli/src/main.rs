//! `sluice`: parse the command line, install logging and the TLS provider, hand over to the
//! library, wait for a signal. Nothing else lives here.

use std::process::ExitCode;

use clap::Parser;
use sluice_cli::{Cli, Command, bench, demo, manage, migrate, revoke_key, serve};

/// A gateway allocates and frees small buffers on every request from every worker thread;
/// mimalloc's thread-local free lists do that without the contention glibc's arenas show under
/// load (malloc and free were ~11% of CPU in a `sluice bench` profile; see BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[expect(clippy::print_stderr, reason = "a CLI reports fatal errors on stderr")]
fn main() -> ExitCode {
    let cli = Cli::parse();
    sluice_cli::logging::init(&cli.log);
    // Every rustls config in Sluice names the ring provider explicitly; installing it as the
    // process default covers any dependency that asks for the default.
    let _ = rustls::crypto::ring::default_provider().install_default();

    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve::run(args).await,
            Command::Demo(args) => demo::run(args).await,
            Command::Bench(args) => bench::run(args, &cli.log).await,
            Command::BenchRole(role) => bench::serve_role(role).await,
            Command::Migrate(args) => migrate::run(args).await,
            Command::RevokeKey(args) => revoke_key::run(args).await,
            Command::Manage(command) => manage::run(command).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
