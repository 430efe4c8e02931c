//! The store as the running server uses it: the bootstrap import, the snapshot the gateway
//! serves from (kept current by the watcher), the usage writer, and the store's health.

use std::sync::Arc;
use std::time::Duration;

use sluice_config::Config;
use sluice_proxy::Gateway;
use sluice_store::model::StoreSnapshot;
use sluice_store::slo::{SloTable, Slos};
use sluice_store::usage::{DEFAULT_MAX_ROWS, UsageWriter};
use sluice_store::watcher::{SnapshotSink, StoreHealth, Watcher};
use sluice_store::{Backend, StoreError};

use crate::plugin_sync::{PluginState, PluginSync};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long an idle watcher waits before pinging the store (and so how quickly `/readyz`
/// notices a database that went away while nothing changed).
const HEARTBEAT: Duration = Duration::from_secs(2);

/// Everything the server keeps about its store between build and shutdown.
pub struct StoreRuntime {
    pub store: Arc<dyn Backend>,
    pub health: Arc<StoreHealth>,
    /// The admin API pokes it after each change so this replica reloads at once.
    pub poke: Arc<Notify>,
    pub slos: Arc<Slos>,
    pub usage: Arc<UsageWriter>,
    flush_interval: Duration,
    watcher: Option<(Watcher, i64)>,
    plugins: Option<(PluginSync, watch::Receiver<PluginState>)>,
}

/// Applies each snapshot to the data plane.
struct GatewaySink {
    gateway: Arc<Gateway>,
    config: Arc<Config>,
    slos: Arc<Slos>,
    /// Plugins and bindings go to the [`PluginSync`] task: loading them compiles, which must
    /// not hold up the rest of the snapshot.
    plugins: watch::Sender<PluginState>,
}

impl SnapshotSink for GatewaySink {
    fn apply(&self, snapshot: &StoreSnapshot) {
        self.slos.replace(SloTable::from_snapshot(snapshot));
        let plugins = PluginState::of(snapshot);
        self.plugins.send_if_modified(|current| {
            let changed = *current != plugins;
            if changed {
                *current = plugins;
            }
            changed
        });
        for problem in self.gateway.apply_store_snapshot(snapshot, &self.config) {
            tracing::warn!(%problem, version = snapshot.version, "part of the stored configuration was not applied");
        }
    }
}

impl StoreRuntime {
    /// Imports the config's bootstrap tenants and pools. Before the gateway exists, so that
    /// the usage writer can be one of its sinks.
    pub async fn prepare(store: Arc<dyn Backend>, config: &Config) -> Result<Self, StoreError> {
        let imported = sluice_store::bootstrap::import(&*store, config).await?;
        if imported != sluice_store::bootstrap::Imported::default() {
            tracing::info!(?imported, "bootstrap tenants and pools imported from the config file");
        }
        let slos = Arc::new(Slos::default());
        Ok(StoreRuntime {
            usage: Arc::new(UsageWriter::new(Arc::clone(&slos), DEFAULT_MAX_ROWS)),
            store,
            health: Arc::new(StoreHealth::default()),
            poke: Arc::new(Notify::new()),
            slos,
            flush_interval: config.database.usage_flush_interval,
            watcher: None,
            plugins: None,
        })
    }

    /// Loads the first snapshot into `gateway`, stored plugin bindings included; from then on
    /// the gateway serves the store's tenants, pools and plugins.
    pub async fn attach(&mut self, gateway: &Arc<Gateway>, config: &Arc<Config>) -> Result<(), StoreError> {
        let (plugins_tx, mut plugins_rx) = watch::channel(PluginState::default());
        let sink = GatewaySink {
            gateway: Arc::clone(gateway),
            config: Arc::clone(config),
            slos: Arc::clone(&self.slos),
            plugins: plugins_tx,
        };
        let watcher = Watcher {
            store: Arc::clone(&self.store),
            sink: Arc::new(sink),
            health: Arc::clone(&self.health),
            poke: Arc::clone(&self.poke),
            heartbeat: HEARTBEAT,
        };
        let version = watcher.load_initial().await?;
        self.watcher = Some((watcher, version));
        let mut sync = PluginSync::new(Arc::clone(&gateway.plugins), Arc::clone(&self.store));
        let initial = plugins_rx.borrow_and_update().clone();
        sync.apply(&initial).await;
        self.plugins = Some((sync, plugins_rx));
        Ok(())
    }

    /// Starts the watcher (until `cancel`) and the usage writer (until `usage_cancel`, which
    /// the server fires only after the data plane has drained, so the last requests count).
    pub fn spawn(
        &mut self,
        tasks: &TaskTracker,
        cancel: &CancellationToken,
        usage_cancel: &CancellationToken,
        grace: Duration,
    ) {
        if let Some((watcher, version)) = self.watcher.take() {
            tasks.spawn(watcher.run(version, cancel.clone()));
        }
        if let Some((sync, states)) = self.plugins.take() {
            tasks.spawn(sync.run(states, cancel.clone()));
        }
        tasks.spawn(Arc::clone(&self.usage).run(
            Arc::clone(&self.store),
            self.flush_interval,
            grace.max(Duration::from_secs(5)),
            usage_cancel.clone(),
        ));
    }
}
