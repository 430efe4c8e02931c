//! Keeps the gateway's in-memory snapshot current.
//!
//! The gateway serves every request from the last snapshot it applied; this task reloads it
//! when the store's change version moves (Postgres NOTIFY from any replica, SQLite polling, or
//! a poke from this replica's own admin API), and reports the store's health for `/readyz`.
//! When the database goes away the last snapshot stays in service and the task retries with
//! backoff; nothing on the request path notices except that changes stop arriving.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use sluice_store_model::{Backend, StoreError, StoreSnapshot};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// What the gateway does with a new snapshot (rebuild its key table, pools, plugin bindings…).
pub trait SnapshotSink: Send + Sync {
    fn apply(&self, snapshot: &StoreSnapshot);
}

/// The store as `/readyz` reports it.
#[derive(Debug, Default)]
pub struct StoreHealth {
    degraded: AtomicBool,
    version: AtomicI64,
    last_error: Mutex<Option<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthReport {
    /// The database could not be reached on the last attempt; serving from the last snapshot.
    pub degraded: bool,
    /// The change version of the snapshot in service.
    pub snapshot_version: i64,
    pub last_error: Option<String>,
}

impl StoreHealth {
    pub fn is_degraded(&self) -> bool {
        self.degraded.load(Ordering::Relaxed)
    }

    pub fn report(&self) -> HealthReport {
        HealthReport {
            degraded: self.is_degraded(),
            snapshot_version: self.version.load(Ordering::Relaxed),
            last_error: self.last_error.lock().map(|e| e.clone()).unwrap_or(None),
        }
    }

    fn ok(&self, version: i64) {
        self.version.store(version, Ordering::Relaxed);
        if self.degraded.swap(false, Ordering::Relaxed) {
            tracing::info!(version, "store reachable again; snapshot current");
        }
    }

    fn failed(&self, error: &StoreError) {
        if !self.degraded.swap(true, Ordering::Relaxed) {
            tracing::warn!(%error, "store unreachable; serving from the last snapshot");
        }
        if let Ok(mut last) = self.last_error.lock() {
            *last = Some(error.to_string());
        }
    }
}

pub struct Watcher {
    pub store: Arc<dyn Backend>,
    pub sink: Arc<dyn SnapshotSink>,
    pub health: Arc<StoreHealth>,
    /// Poked by this replica's admin API after a change, to reload without waiting.
    pub poke: Arc<Notify>,
    /// How long one wait for a change may last; also how often an idle store is pinged.
    pub heartbeat: Duration,
}

const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

impl Watcher {
    /// Loads and applies the first snapshot. Start-up needs it: a gateway that never saw its
    /// tenants cannot serve.
    pub async fn load_initial(&self) -> Result<i64, StoreError> {
        let snapshot = self.store.snapshot().await?;
        self.sink.apply(&snapshot);
        self.health.ok(snapshot.version);
        Ok(snapshot.version)
    }

    pub async fn run(self, mut seen: i64, cancel: CancellationToken) {
        let mut backoff = BACKOFF_MIN;
        loop {
            let outcome = tokio::select! {
                () = cancel.cancelled() => return,
                () = self.poke.notified() => self.reload(seen).await,
                changed = self.store.wait_for_change(seen, self.heartbeat) => match changed {
                    Ok(version) if version == seen => Ok(seen),
                    Ok(_) => self.reload(seen).await,
                    Err(e) => Err(e),
                },
            };
            match outcome {
                Ok(version) => {
                    seen = version;
                    self.health.ok(version);
                    backoff = BACKOFF_MIN;
                }
                Err(error) => {
                    self.health.failed(&error);
                    tokio::select! {
                        () = cancel.cancelled() => return,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }

    async fn reload(&self, seen: i64) -> Result<i64, StoreError> {
        let started = std::time::Instant::now();
        let snapshot = self.store.snapshot().await?;
        if snapshot.version != seen {
            self.sink.apply(&snapshot);
            tracing::debug!(version = snapshot.version, elapsed = ?started.elapsed(), "snapshot reloaded");
        }
        Ok(snapshot.version)
    }
}
