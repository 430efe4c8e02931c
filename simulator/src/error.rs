//! Errors at the library boundary.

/// Why a worker could not start.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("invalid simulator config: `{field}` {reason}")]
    InvalidConfig { field: &'static str, reason: String },
    #[error("listener address: {0}")]
    Listener(#[from] std::io::Error),
    #[error("metrics registry: {0}")]
    Metrics(#[from] prometheus::Error),
}
