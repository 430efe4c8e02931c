//! Knowing the change version without polling: one `LISTEN sluice_changes` connection per
//! store, kept by a task the store owns, publishing the newest version it has heard of.
//!
//! NOTIFY is fire-and-forget: whatever is committed while the listener is disconnected is never
//! delivered. So after every (re)connect, once LISTEN is in effect, the task reads the version
//! from the table; and `wait_for_change` reads it again when it gives up at `max_wait`, so a
//! listener that is down costs latency, never a missed change.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use sluice_store_model::StoreError;
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, sleep_until};

use crate::audit::CHANNEL;
use crate::error::db;

const FIRST_RETRY: Duration = Duration::from_millis(100);
const LAST_RETRY: Duration = Duration::from_secs(5);

pub(crate) struct Watcher {
    pool: PgPool,
    /// Started by the first `wait_for_change`, which runs inside the caller's runtime.
    running: Mutex<Option<Running>>,
}

struct Running {
    latest: watch::Receiver<i64>,
    task: JoinHandle<()>,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Watcher {
    pub(crate) fn new(pool: PgPool) -> Self {
        Watcher { pool, running: Mutex::new(None) }
    }

    pub(crate) fn stop(&self) {
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(running) = running.take() {
            running.task.abort();
        }
    }

    fn subscribe(&self) -> watch::Receiver<i64> {
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        // A finished task (its runtime shut down under it) is replaced by one in the current runtime.
        if let Some(r) = running.as_ref().filter(|r| !r.task.is_finished()) {
            return r.latest.clone();
        }
        // 0 is below every real version (they start at 1): "nothing heard yet".
        let (tx, latest) = watch::channel(0);
        let task = tokio::spawn(listen_forever(self.pool.clone(), tx));
        *running = Some(Running { latest: latest.clone(), task });
        latest
    }

    pub(crate) async fn wait_for_change(&self, seen: i64, max_wait: Duration) -> Result<i64, StoreError> {
        // A max_wait too large to add (Duration::MAX as "forever") waits a year instead.
        let now = Instant::now();
        let deadline = now.checked_add(max_wait).unwrap_or(now + Duration::from_secs(365 * 24 * 3600));
        let mut latest = self.subscribe();
        loop {
            // Versions only rise, so a lower one is the listener lagging behind the caller.
            let heard = *latest.borrow_and_update();
            if heard > seen {
                return Ok(heard);
            }
            tokio::select! {
                changed = latest.changed() => {
                    if changed.is_err() {
                        sleep_until(deadline).await;
                        break;
                    }
                }
                () = sleep_until(deadline) => break,
            }
        }
        let mut conn = self.pool.acquire().await.map_err(db)?;
        crate::snapshot::change_version(&mut conn).await
    }
}

async fn listen_forever(pool: PgPool, latest: watch::Sender<i64>) {
    let mut retry = Duration::ZERO;
    loop {
        match listen(&pool).await {
            Ok(mut listener) => {
                resync(&pool, &latest).await;
                loop {
                    match listener.try_recv().await {
                        Ok(Some(notification)) => match notification.payload().parse::<i64>() {
                            Ok(version) => publish(&latest, version, |heard, new| new > heard),
                            Err(_) => {
                                tracing::warn!(
                                    payload = notification.payload(),
                                    "ignoring a malformed change notification"
                                )
                            }
                        },
                        // Lost and already re-established (sqlx reconnects eagerly): whatever was
                        // notified in between is gone, so read the version instead.
                        Ok(None) => {
                            tracing::info!("change listener reconnected");
                            resync(&pool, &latest).await;
                        }
                        // The store was closed: nothing left to listen for.
                        Err(sqlx::Error::PoolClosed) => return,
                        Err(error) => {
                            tracing::warn!(%error, "change listener lost its connection; reconnecting");
                            break;
                        }
                    }
                }
                // It was up: try again at once, and back off only if that fails too.
                retry = Duration::ZERO;
            }
            Err(sqlx::Error::PoolClosed) => return,
            Err(error) => {
                retry = (retry * 2).clamp(FIRST_RETRY, LAST_RETRY);
                tracing::warn!(%error, retry_in = ?retry, "change listener cannot connect");
            }
        }
        sleep(retry).await;
    }
}

async fn listen(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

/// Publishes the version in the table (if it cannot be read, `wait_for_change` still reads it
/// at its deadline).
async fn resync(pool: &PgPool, latest: &watch::Sender<i64>) {
    let read = async {
        let mut conn = pool.acquire().await.map_err(db)?;
        crate::snapshot::change_version(&mut conn).await
    };
    match read.await {
        Ok(version) => publish(latest, version, |heard, new| new != heard),
        Err(error) => tracing::warn!(%error, "cannot read the change version after (re)connecting the listener"),
    }
}

/// Notifications only ever raise the version (they arrive in commit order anyway); a read of
/// the table is the truth and replaces it.
fn publish(latest: &watch::Sender<i64>, version: i64, replaces: impl Fn(i64, i64) -> bool) {
    latest.send_if_modified(|heard| {
        let changed = replaces(*heard, version);
        if changed {
            *heard = version;
        }
        changed
    });
}
