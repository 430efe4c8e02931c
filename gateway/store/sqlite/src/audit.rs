//! Reading the audit log (rows are appended by [`crate::write::commit`]).

use sluice_store_model::{AuditEntry, AuditQuery, StoreError};
use sqlx::SqlitePool;

use crate::codec::ts;
use crate::error::{db, json};

/// Newest first; `before` pages backwards by id.
pub(crate) async fn log(pool: &SqlitePool, q: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
    let before = q.before.unwrap_or(i64::MAX);
    let limit = i64::from(q.limit);
    let rows = sqlx::query!(
        "SELECT id, at_ms, actor, action, target, detail FROM audit_log WHERE id < ? ORDER BY id DESC LIMIT ?",
        before,
        limit
    )
    .fetch_all(pool)
    .await
    .map_err(db)?;
    rows.into_iter()
        .map(|r| {
            Ok(AuditEntry {
                id: r.id,
                at: ts(r.at_ms),
                actor: r.actor,
                action: r.action,
                target: r.target,
                detail: serde_json::from_str(&r.detail).map_err(|e| json("audit detail", e))?,
            })
        })
        .collect()
}
