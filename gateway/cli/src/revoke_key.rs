//! `sluice revoke-key`: revoke an API key straight in the store, with the database settings
//! `sluice serve` uses (the config file's `[database]`, `DATABASE_URL`, or the embedded store
//! in the data directory), so it works while the admin API is down or its token is lost. Every
//! gateway sharing the store refuses the key within about a second (PostgreSQL notifies them;
//! an embedded store is polled five times a second).

use anyhow::Context;
use sluice_config::Config;
use sluice_store::model::Actor;
use sluice_store::model::revoke::revoke_key;

use crate::RevokeKeyArgs;

#[expect(clippy::print_stdout, reason = "the command reports what it did")]
pub async fn run(args: RevokeKeyArgs) -> anyhow::Result<()> {
    let mut config = Config::load(args.config.as_deref()).context("invalid configuration")?;
    // Revoking must not wait for, or race, a schema change: the serving gateways migrate.
    config.database.migrate = false;
    if config.database.url.is_none() {
        // Opening would create an empty store there: a mistyped directory must not look like
        // a store without the key.
        let file = args.data_dir.join(sluice_store::DEFAULT_DB_FILE);
        anyhow::ensure!(file.exists(), "no store at {} (is --data-dir right?)", file.display());
    }
    let store = crate::serve::open_store(&config, &args.data_dir).await?;
    let revoked = revoke_key(&*store, &Actor::cli(), &args.tenant, &args.key).await?;
    let key = &revoked.key;
    let name = key.name.as_deref().map(|n| format!(" ({n})")).unwrap_or_default();
    if revoked.already {
        println!("key {} {}{name} of tenant {:?} was already revoked", key.id, key.prefix, key.tenant);
    } else {
        println!("key {} {}{name} of tenant {:?} revoked", key.id, key.prefix, key.tenant);
    }
    Ok(())
}
