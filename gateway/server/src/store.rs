//! The store as the running server uses it: the config file's reconciliation, the snapshot the gateway
//! serves from (kept current by the watcher), the usage writer, each tenant's tokens this
//! month (read back from the usage the writer stored), the store's health, and what a config
//! reload does with the store ([`StoreReload`]).

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use sluice_config::Config;
use sluice_proxy::Gateway;
use sluice_store::bootstrap::Reconciled;
use sluice_store::model::{StoreSnapshot, Timestamp};
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
    /// The watcher's sink, which a reload also applies a snapshot to.
    sink: Option<Arc<GatewaySink>>,
    plugins: Option<(PluginSync, watch::Receiver<PluginState>)>,
    month_usage: Option<MonthUsage>,
}

/// Applies each snapshot to the data plane.
struct GatewaySink {
    gateway: Arc<Gateway>,
    /// Pools are built with its `[upstream]` settings; a reload replaces it.
    config: RwLock<Arc<Config>>,
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
        let config = Arc::clone(&self.config.read().unwrap_or_else(PoisonError::into_inner));
        for problem in self.gateway.apply_store_snapshot(snapshot, &config) {
            tracing::warn!(%problem, version = snapshot.version, "part of the stored configuration was not applied");
        }
    }
}

impl StoreRuntime {
    /// Reconciles the config file's tenants and pools into the store (logging each change).
    /// Before the gateway exists, so that the usage writer can be one of its sinks.
    pub async fn prepare(store: Arc<dyn Backend>, config: &Config) -> Result<Self, StoreError> {
        let reconciled = sluice_store::bootstrap::reconcile(&*store, config).await?;
        log_reconciled(&reconciled);
        let slos = Arc::new(Slos::default());
        Ok(StoreRuntime {
            usage: Arc::new(UsageWriter::new(Arc::clone(&slos), DEFAULT_MAX_ROWS)),
            store,
            health: Arc::new(StoreHealth::default()),
            poke: Arc::new(Notify::new()),
            slos,
            flush_interval: config.database.usage_flush_interval,
            watcher: None,
            sink: None,
            plugins: None,
            month_usage: None,
        })
    }

    /// Loads the first snapshot into `gateway`, stored plugin bindings included; from then on
    /// the gateway serves the store's tenants, pools and plugins.
    pub async fn attach(&mut self, gateway: &Arc<Gateway>, config: &Arc<Config>) -> Result<(), StoreError> {
        let (plugins_tx, mut plugins_rx) = watch::channel(PluginState::default());
        let sink = Arc::new(GatewaySink {
            gateway: Arc::clone(gateway),
            config: RwLock::new(Arc::clone(config)),
            slos: Arc::clone(&self.slos),
            plugins: plugins_tx,
        });
        self.sink = Some(Arc::clone(&sink));
        let watcher = Watcher {
            store: Arc::clone(&self.store),
            sink,
            health: Arc::clone(&self.health),
            poke: Arc::clone(&self.poke),
            heartbeat: HEARTBEAT,
        };
        match crate::builtins::publish(&*self.store, &gateway.plugins).await {
            Ok(changed) if !changed.is_empty() => tracing::info!(?changed, "built-in plugins published in the store"),
            Ok(_) => {}
            Err(error) => return Err(error),
        }
        let version = watcher.load_initial().await?;
        self.watcher = Some((watcher, version));
        let mut sync = PluginSync::new(Arc::clone(&gateway.plugins), Arc::clone(&self.store));
        let initial = plugins_rx.borrow_and_update().clone();
        sync.apply(&initial).await;
        self.plugins = Some((sync, plugins_rx));
        // Before serving, so that a restarted gateway holds tenants to the month's budgets at
        // once; a failure here leaves the figures unknown until the task's next refresh.
        let mut month_usage =
            MonthUsage { store: Arc::clone(&self.store), gateway: Arc::clone(gateway), failing: false };
        month_usage.refresh().await;
        self.month_usage = Some(month_usage);
        Ok(())
    }

    /// What a config reload needs of the store; `None` before [`StoreRuntime::attach`].
    pub fn reload_handle(&self) -> Option<StoreReload> {
        let sink = Arc::clone(self.sink.as_ref()?);
        Some(StoreReload { store: Arc::clone(&self.store), sink, poke: Arc::clone(&self.poke) })
    }

    /// Starts the watcher and the month's usage refresh (until `cancel`) and the usage writer
    /// (until `usage_cancel`, which the server fires only after the data plane has drained, so
    /// the last requests count).
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
        if let Some(month_usage) = self.month_usage.take() {
            tasks.spawn(month_usage.run(self.flush_interval, cancel.clone()));
        }
        tasks.spawn(Arc::clone(&self.usage).run(
            Arc::clone(&self.store),
            self.flush_interval,
            grace.max(Duration::from_secs(5)),
            usage_cancel.clone(),
        ));
    }
}

/// A reload's work on the store: the file's tenants, keys and pools reconciled exactly as at
/// start ([`sluice_store::bootstrap::reconcile`]: what the file declares is written, what it
/// owned and no longer declares is removed, what the admin API made is left alone), then the
/// new `[upstream]` settings and the store's snapshot applied before the reload answers, so a
/// key removed from the file is refused by this replica once the reload has answered.
pub struct StoreReload {
    store: Arc<dyn Backend>,
    sink: Arc<GatewaySink>,
    poke: Arc<Notify>,
}

impl StoreReload {
    pub async fn apply(&self, config: &Arc<Config>) -> Result<Reconciled, StoreError> {
        let reconciled = sluice_store::bootstrap::reconcile(&*self.store, config).await?;
        log_reconciled(&reconciled);
        *self.sink.config.write().unwrap_or_else(PoisonError::into_inner) = Arc::clone(config);
        match self.store.snapshot().await {
            Ok(snapshot) => self.sink.apply(&snapshot),
            Err(error) => {
                tracing::warn!(
                    %error,
                    "reload: the store's snapshot could not be read; the watcher applies it when it can"
                );
            }
        }
        // The watcher brings the replica's own version up to date (and other replicas learn of
        // the changes through the store's change notification).
        self.poke.notify_one();
        Ok(reconciled)
    }
}

/// One line per change, so an operator can see what the file did to the store.
fn log_reconciled(reconciled: &Reconciled) {
    for change in &reconciled.changes {
        tracing::info!("config file: {change}");
    }
    for notice in &reconciled.notices {
        tracing::warn!("config file: {notice}");
    }
}

/// Keeps the data plane's figure of each tenant's tokens this calendar month (UTC) in step
/// with the store, where every replica's usage writer adds its counts: the monthly budgets
/// then hold across restarts and replicas, a flush interval or two behind.
struct MonthUsage {
    store: Arc<dyn Backend>,
    gateway: Arc<Gateway>,
    /// The last refresh failed; warn once per outage, not once per interval.
    failing: bool,
}

impl MonthUsage {
    /// Refreshes at the usage writer's cadence (fresher figures could not be: they come from
    /// its flushes) until `cancel`, which also interrupts a refresh that is waiting on the
    /// database.
    async fn run(mut self, interval: Duration, cancel: CancellationToken) {
        // `attach` has just refreshed: the first tick is one interval away.
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                _ = ticker.tick() => {}
            }
            tokio::select! {
                () = cancel.cancelled() => return,
                () = self.refresh() => {}
            }
        }
    }

    /// On failure the data plane keeps the previous figures: slightly stale budgets beat
    /// forgetting them while the database is away.
    async fn refresh(&mut self) {
        let now = Timestamp::now();
        let from = now.month_start().unix_seconds();
        // One minute past now: the current minute's row (keyed by its start) is in, and so is
        // one written by a replica whose clock runs a little ahead.
        let to = now.unix_seconds().saturating_add(60);
        match self.store.tokens_by_tenant(from, to).await {
            Ok(rows) => {
                let usage: HashMap<String, u64> = rows.into_iter().map(|row| (row.tenant, row.tokens)).collect();
                self.gateway.set_month_usage(usage);
                if std::mem::take(&mut self.failing) {
                    tracing::info!("this month's usage per tenant read from the store again");
                }
            }
            Err(error) => {
                if !std::mem::replace(&mut self.failing, true) {
                    tracing::warn!(%error, "cannot read this month's usage per tenant; keeping the last figures");
                }
            }
        }
    }
}
