//! Logging: human-readable by default, JSON for log pipelines. `RUST_LOG` overrides the level.

use clap::Args;
use tracing_subscriber::EnvFilter;

#[derive(Debug, Args)]
pub struct LogArgs {
    /// Log level or filter directive (e.g. `info`, `sluice_proxy=debug`).
    #[arg(long, global = true, env = "SLUICE_LOG", default_value = "info")]
    pub log_level: String,
    /// Emit logs as JSON lines (`SLUICE_LOG_JSON` accepts 1/0, true/false, yes/no, on/off).
    #[arg(long, global = true, env = "SLUICE_LOG_JSON", action = clap::ArgAction::SetTrue, value_parser = clap::builder::BoolishValueParser::new())]
    pub log_json: bool,
}

pub fn init(args: &LogArgs) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&args.log_level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    // A second init (tests calling into the library) is harmless.
    let _ = if args.log_json { builder.json().try_init() } else { builder.try_init() };
}
