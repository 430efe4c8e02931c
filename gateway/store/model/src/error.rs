use thiserror::Error;

/// What a store operation can fail with. The admin API maps these to HTTP in one place:
/// `NotFound` → 404, `Conflict` → 409, `Invalid` → 422, `Unavailable` → 503, the rest → 500.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum StoreError {
    #[error("{what} {name:?} not found")]
    NotFound { what: &'static str, name: String },
    /// A uniqueness or state conflict, e.g. a tenant that already exists.
    #[error("{0}")]
    Conflict(String),
    /// Input that cannot be stored; `field` names the offending field as the API spells it.
    #[error("{field}: {message}")]
    Invalid { field: &'static str, message: String },
    /// The database cannot be reached right now; worth retrying.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// Migrations failed or the schema is newer than this binary.
    #[error("migration failed: {0}")]
    Migration(String),
    /// Anything else the database reported.
    #[error("database error: {0}")]
    Database(String),
}

impl StoreError {
    pub fn not_found(what: &'static str, name: impl Into<String>) -> Self {
        StoreError::NotFound { what, name: name.into() }
    }

    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        StoreError::Invalid { field, message: message.into() }
    }

    /// Whether retrying later may succeed (the usage writer and the watcher back off on these).
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}
