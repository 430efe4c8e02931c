//! `sluice serve`.

use anyhow::Context;
use sluice_config::Config;
use sluice_server::Sluice;

use crate::ServeArgs;

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
    let running = Sluice::build(config)?.start().await?;
    crate::signal::shutdown().await;
    running.shutdown().await;
    Ok(())
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
