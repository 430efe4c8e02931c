//! sqlx errors as [`StoreError`]s: constraint violations become domain errors, a lost or
//! unreachable server becomes `Unavailable` (retried by the usage writer and the watcher).

use sluice_store_model::StoreError;
use sqlx::error::ErrorKind;

/// The generic mapping; call sites that know what a violation means (a duplicate name, a
/// missing parent) check for it first and say so in their own words.
pub(crate) fn db(error: sqlx::Error) -> StoreError {
    match error {
        sqlx::Error::Database(e) => {
            let code = e.code().map(|c| c.into_owned()).unwrap_or_default();
            match e.kind() {
                ErrorKind::UniqueViolation | ErrorKind::ExclusionViolation => {
                    StoreError::Conflict(e.message().to_owned())
                }
                ErrorKind::ForeignKeyViolation => StoreError::not_found("referenced row", e.message()),
                ErrorKind::CheckViolation | ErrorKind::NotNullViolation => {
                    StoreError::invalid("input", e.message().to_owned())
                }
                // Data exceptions: a value the column cannot hold, such as a usage counter that
                // would overflow BIGINT. The SQLite store refuses the same inputs as Invalid.
                _ if code.starts_with("22") => StoreError::invalid("input", e.message().to_owned()),
                _ if is_unavailable_code(&code) => StoreError::Unavailable(e.message().to_owned()),
                _ => StoreError::Database(format!("{} ({code})", e.message())),
            }
        }
        sqlx::Error::Io(e) => StoreError::Unavailable(e.to_string()),
        sqlx::Error::Tls(e) => StoreError::Unavailable(format!("TLS: {e}")),
        sqlx::Error::PoolTimedOut => StoreError::Unavailable("timed out waiting for a connection".into()),
        sqlx::Error::PoolClosed => StoreError::Unavailable("the connection pool is closed".into()),
        sqlx::Error::WorkerCrashed => StoreError::Unavailable("the connection worker crashed".into()),
        sqlx::Error::Migrate(e) => StoreError::Migration(e.to_string()),
        other => StoreError::Database(other.to_string()),
    }
}

/// SQLSTATE classes that mean "the server is not there for us right now": connection
/// exceptions (08), insufficient resources (53, e.g. too many connections), operator
/// intervention (57: shutdown, terminated backend, cannot connect now).
fn is_unavailable_code(code: &str) -> bool {
    ["08", "53", "57"].iter().any(|class| code.starts_with(class))
}

/// Whether this error is a unique violation (for call sites that turn it into a Conflict of their own).
pub(crate) fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(e) if e.kind() == ErrorKind::UniqueViolation)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_failures_are_unavailable() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert!(db(sqlx::Error::Io(io)).is_transient());
        assert!(db(sqlx::Error::PoolTimedOut).is_transient());
        assert!(!db(sqlx::Error::RowNotFound).is_transient());
        assert!(is_unavailable_code("57P01"));
        assert!(is_unavailable_code("08006"));
        assert!(!is_unavailable_code("23505"));
    }
}
