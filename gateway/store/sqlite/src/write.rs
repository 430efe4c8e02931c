//! The shape of every mutation: one `BEGIN IMMEDIATE` transaction that ends by appending an
//! audit row and bumping the change version, so a replica that sees the new version also sees
//! the change and its audit entry.

use sluice_store_model::{Actor, StoreError};
use sqlx::{Sqlite, SqlitePool, Transaction};

use crate::codec::now_ms;
use crate::error::db;

pub(crate) type Tx = Transaction<'static, Sqlite>;

/// IMMEDIATE takes the write lock up front. A deferred transaction that reads first and then
/// writes can fail at once with SQLITE_BUSY when another process committed in between (the
/// busy timeout does not apply to that upgrade); taking the lock first makes writers queue
/// behind the busy timeout instead.
pub(crate) async fn begin(pool: &SqlitePool) -> Result<Tx, StoreError> {
    pool.begin_with("BEGIN IMMEDIATE").await.map_err(db)
}

/// What a mutation did, for the audit log.
pub(crate) struct Audit<'a> {
    pub actor: &'a Actor,
    pub action: &'static str,
    pub target: String,
    /// A JSON object, as the admin API and the dashboard expect.
    pub detail: serde_json::Value,
}

pub(crate) async fn commit(mut tx: Tx, audit: Audit<'_>) -> Result<(), StoreError> {
    let at = now_ms();
    let detail = audit.detail.to_string();
    sqlx::query!(
        "INSERT INTO audit_log (at_ms, actor, action, target, detail) VALUES (?, ?, ?, ?, ?)",
        at,
        audit.actor.0,
        audit.action,
        audit.target,
        detail,
    )
    .execute(&mut *tx)
    .await
    .map_err(db)?;
    sqlx::query!("UPDATE change_version SET version = version + 1 WHERE id = 1").execute(&mut *tx).await.map_err(db)?;
    tx.commit().await.map_err(db)
}
