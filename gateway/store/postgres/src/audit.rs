//! The bookkeeping every mutation does in its own transaction: an audit row, the change
//! version bumped, and a NOTIFY that other replicas receive when (and only if) it commits.

use sluice_store_model::{Actor, AuditEntry, AuditQuery, StoreError};
use sqlx::PgConnection;

use crate::codec::{now_ms, ts};
use crate::error::db;

/// The channel replicas LISTEN on; the payload is the new change version.
pub(crate) const CHANNEL: &str = "sluice_changes";

/// Appends the audit row, bumps the version and queues the notification, in one round trip.
/// The row lock on `change_version` orders concurrent mutations, so versions rise in commit order.
pub(crate) async fn record(
    conn: &mut PgConnection,
    actor: &Actor,
    action: &str,
    target: &str,
    detail: serde_json::Value,
) -> Result<i64, StoreError> {
    sqlx::query_scalar!(
        r#"
        WITH audit AS (
            INSERT INTO audit_log (at_ms, actor, action, target, detail) VALUES ($1, $2, $3, $4, $5)
        ), bumped AS (
            UPDATE change_version SET version = version + 1 WHERE id RETURNING version
        )
        SELECT bumped.version FROM bumped CROSS JOIN LATERAL pg_notify($6, bumped.version::text) AS n
        "#,
        now_ms(),
        actor.0,
        action,
        target,
        detail,
        CHANNEL,
    )
    .fetch_one(conn)
    .await
    .map_err(db)
}

pub(crate) async fn log(conn: &mut PgConnection, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
    let rows = sqlx::query!(
        r#"
        SELECT id, at_ms, actor, action, target, detail
        FROM audit_log
        WHERE $1::bigint IS NULL OR id < $1
        ORDER BY id DESC
        LIMIT $2
        "#,
        query.before,
        i64::from(query.limit),
    )
    .fetch_all(conn)
    .await
    .map_err(db)?;
    Ok(rows
        .into_iter()
        .map(|r| AuditEntry {
            id: r.id,
            at: ts(r.at_ms),
            actor: r.actor,
            action: r.action,
            target: r.target,
            detail: r.detail,
        })
        .collect())
}
