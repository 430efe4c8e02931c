//! `sluice serve`.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use sluice_config::Config;
use sluice_server::Sluice;
use sluice_store::Backend;

use crate::{ServeArgs, private_files};

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let config = Config::load(args.config.as_deref()).context("invalid configuration")?;
    if args.check_config {
        summarize(&config);
        return Ok(());
    }
    if config.pools.is_empty() {
        tracing::warn!("no pools configured: every inference request will get 404");
    }
    if config.tenants.is_empty() {
        tracing::warn!("no tenants configured: every request will get 401");
    }
    let store = open_store(&config, &args.data_dir).await?;
    let running = Sluice::build_with_store(config, store, Vec::new(), None).await?.start().await?;
    crate::signal::shutdown().await;
    running.shutdown().await;
    Ok(())
}

/// Opens the configured store (PostgreSQL, or the SQLite file in `data_dir`), migrating it
/// unless `[database] migrate = false`. The data directory and the SQLite file are private to
/// the user running the gateway (see [`private_files`]).
pub async fn open_store(config: &Config, data_dir: &Path) -> anyhow::Result<Arc<dyn Backend>> {
    if config.database.url.is_none() {
        private_files::create_dir(data_dir)
            .with_context(|| format!("creating the data directory {}", data_dir.display()))?;
        let file = data_dir.join(sluice_store::DEFAULT_DB_FILE);
        private_files::prepare_sqlite_file(&file).with_context(|| format!("making {} private", file.display()))?;
    }
    let (store, location) = sluice_store::open(&config.database, data_dir).await.context("opening the store")?;
    tracing::info!(%location, "store open");
    Ok(store)
}

#[expect(clippy::print_stdout, reason = "--check-config prints its summary for the operator")]
fn summarize(config: &Config) {
    println!("config OK");
    println!("  listen        {}{}", config.server.listen, if config.server.tls.is_some() { " (TLS)" } else { "" });
    println!("  admin_listen  {}", config.server.admin_listen);
    for pool in &config.pools {
        println!("  pool {:<12} models {:?}, {} endpoint(s)", pool.name, pool.models, pool.endpoints.len());
    }
    println!("  tenants       {}", config.tenants.len());
}
