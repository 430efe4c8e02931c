//! sqlx's errors as [`StoreError`]s. Operations that know what a constraint protects map it
//! themselves (a duplicate name, an unknown tenant); this is the fallback for everything else.

use sluice_store_model::StoreError;
use sqlx::error::ErrorKind;

// SQLite primary result codes (the low byte of an extended code) that mean "not now" rather
// than "never": another process holds the lock, or the disk or file is not usable at the moment.
const SQLITE_BUSY: i32 = 5;
const SQLITE_LOCKED: i32 = 6;
const SQLITE_IOERR: i32 = 10;
const SQLITE_FULL: i32 = 13;
const SQLITE_CANTOPEN: i32 = 14;
const SQLITE_PROTOCOL: i32 = 15;
// Any other constraint (a STRICT column refusing a value of the wrong type, e.g. a counter
// that overflowed into a REAL).
const SQLITE_CONSTRAINT: i32 = 19;

pub(crate) fn db(error: sqlx::Error) -> StoreError {
    match error {
        sqlx::Error::Database(e) => {
            let code = e.code().and_then(|c| c.parse::<i32>().ok()).unwrap_or(0);
            match e.kind() {
                ErrorKind::UniqueViolation => StoreError::Conflict(e.message().to_owned()),
                ErrorKind::ForeignKeyViolation => StoreError::not_found("referenced row", e.message()),
                ErrorKind::CheckViolation | ErrorKind::NotNullViolation => {
                    StoreError::invalid("input", e.message().to_owned())
                }
                _ if matches!(
                    code & 0xff,
                    SQLITE_BUSY | SQLITE_LOCKED | SQLITE_IOERR | SQLITE_FULL | SQLITE_CANTOPEN | SQLITE_PROTOCOL
                ) =>
                {
                    StoreError::Unavailable(e.to_string())
                }
                _ if code & 0xff == SQLITE_CONSTRAINT => StoreError::invalid("input", e.message().to_owned()),
                _ => StoreError::Database(e.to_string()),
            }
        }
        sqlx::Error::Io(e) => StoreError::Unavailable(e.to_string()),
        e @ (sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed) => {
            StoreError::Unavailable(e.to_string())
        }
        e => StoreError::Database(e.to_string()),
    }
}

/// SQLite said "busy" or "locked": another connection holds the lock it needed.
pub(crate) fn is_busy(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(e) => {
            let code = e.code().and_then(|c| c.parse::<i32>().ok()).unwrap_or(0);
            matches!(code & 0xff, SQLITE_BUSY | SQLITE_LOCKED)
        }
        _ => false,
    }
}

/// A unique violation as the caller words it (`tenant "acme" already exists`); anything else
/// as [`db`] maps it.
pub(crate) fn unique_as(error: sqlx::Error, conflict: impl FnOnce() -> String) -> StoreError {
    match &error {
        sqlx::Error::Database(e) if e.kind() == ErrorKind::UniqueViolation => StoreError::Conflict(conflict()),
        _ => db(error),
    }
}

pub(crate) fn migrate(error: sqlx::migrate::MigrateError) -> StoreError {
    match error {
        sqlx::migrate::MigrateError::Execute(e) => match db(e) {
            unavailable @ StoreError::Unavailable(_) => unavailable,
            other => StoreError::Migration(other.to_string()),
        },
        e => StoreError::Migration(e.to_string()),
    }
}

/// A stored value that this binary cannot read back: the file was written by something else.
pub(crate) fn corrupt(what: &str, value: impl std::fmt::Display) -> StoreError {
    StoreError::Database(format!("unreadable {what} in the database: {value}"))
}

pub(crate) fn json(what: &str, error: serde_json::Error) -> StoreError {
    corrupt(what, error)
}
