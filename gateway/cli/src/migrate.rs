//! `sluice migrate`: apply pending store migrations and exit (for deployments that run
//! migrations as a separate step and start replicas with `[database] migrate = false`).

use anyhow::Context;
use sluice_config::Config;

use crate::MigrateArgs;

#[expect(clippy::print_stdout, reason = "the command reports what it did")]
pub async fn run(args: MigrateArgs) -> anyhow::Result<()> {
    let mut config = Config::load(args.config.as_deref()).context("invalid configuration")?;
    config.database.migrate = true;
    let store = crate::serve::open_store(&config, &args.data_dir).await?;
    let version = store.change_version().await.context("reading the migrated store")?;
    println!("store migrated ({:?}); change version {version}", store.kind());
    Ok(())
}
