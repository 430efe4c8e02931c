//! `sluice serve`: build from the config file, serve until SIGTERM or ctrl-c, reload the file
//! on SIGHUP.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use sluice_config::Config;
use sluice_server::{Running, Sluice};
use sluice_store::Backend;

use crate::{ServeArgs, private_files};

pub mod admin_token;

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let mut config = Config::load(args.config.as_deref()).context("invalid configuration")?;
    if args.check_config {
        summarize(&config, &args.data_dir);
        return Ok(());
    }
    admin_token::fill_in(&mut config, &args.data_dir).context("invalid configuration")?;
    if config.pools.is_empty() {
        tracing::warn!("no pools configured: every inference request will get 404");
    }
    if config.tenants.is_empty() {
        tracing::warn!("no tenants configured: every request will get 401");
    }
    // Before anything listens: SIGHUP's default action ends the process.
    let hangups = Hangups::install();
    let store = open_store(&config, &args.data_dir).await?;
    // A reload reads the file again; the generated token must fill in there too, or every
    // reload would see the token removed.
    let (file, data_dir) = (args.config, args.data_dir);
    let source = Arc::new(move || -> Result<Config, sluice_config::ConfigError> {
        let mut config = Config::load(file.as_deref())?;
        admin_token::fill_in(&mut config, &data_dir)?;
        Ok(config)
    });
    let running =
        Sluice::build_with_store(config, store, Vec::new(), None).await?.with_config_source(source).start().await?;
    serve_until_shutdown(&running, hangups).await;
    running.shutdown().await;
    Ok(())
}

/// Reloads the config on every SIGHUP until a shutdown signal. The reload logs what it applied,
/// or why the file was refused (the running configuration then stays in force).
async fn serve_until_shutdown(running: &Running, mut hangups: Hangups) {
    let shutdown = crate::signal::shutdown();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            () = hangups.recv() => {
                tracing::info!("SIGHUP received; reloading the configuration");
                let _ = running.reload().await;
            }
        }
    }
}

/// SIGHUP, where there is such a thing.
struct Hangups {
    #[cfg(unix)]
    signal: Option<tokio::signal::unix::Signal>,
}

impl Hangups {
    fn install() -> Self {
        #[cfg(unix)]
        {
            let signal = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
                .inspect_err(
                    |e| tracing::warn!(error = %e, "cannot listen for SIGHUP; reload with POST /admin/api/reload"),
                )
                .ok();
            Hangups { signal }
        }
        #[cfg(not(unix))]
        Hangups {}
    }

    async fn recv(&mut self) {
        #[cfg(unix)]
        if let Some(signal) = &mut self.signal
            && signal.recv().await.is_some()
        {
            return;
        }
        std::future::pending::<()>().await;
    }
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
fn summarize(config: &Config, data_dir: &Path) {
    println!("config OK");
    println!("  listen        {}{}", config.server.listen, if config.server.tls.is_some() { " (TLS)" } else { "" });
    println!("  admin_listen  {}", config.server.admin_listen);
    if config.admin.token.is_some() {
        println!("  admin token   configured");
    } else {
        println!("  admin token   none configured: generated into {}", data_dir.join(admin_token::FILE).display());
    }
    for pool in &config.pools {
        println!("  pool {:<12} models {:?}, {} endpoint(s)", pool.name, pool.models, pool.endpoints.len());
    }
    println!("  tenants       {}", config.tenants.len());
}
