/// What the index refuses, and why. Input errors (a vector of the wrong size, a threshold that
/// is not a cosine) come from the caller; `Index` is the nearest-neighbour library failing, which
/// a cache should treat as a miss.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SemanticError {
    #[error("the vector has {got} dimensions where this namespace holds {expected}")]
    DimensionMismatch { expected: usize, got: usize },
    #[error("the vector is empty")]
    EmptyVector,
    #[error("the vector has a component that is not a finite number")]
    NonFinite,
    #[error("the vector has length zero, so it has no direction to compare")]
    ZeroVector,
    #[error("the threshold {0} is not a cosine similarity between -1 and 1")]
    InvalidThreshold(f32),
    #[error("invalid index configuration: {0}")]
    Config(&'static str),
    #[error("the nearest-neighbour index failed: {0}")]
    Index(String),
}

impl SemanticError {
    /// A low-cardinality label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            SemanticError::DimensionMismatch { .. } => "dimension_mismatch",
            SemanticError::EmptyVector => "empty_vector",
            SemanticError::NonFinite => "non_finite",
            SemanticError::ZeroVector => "zero_vector",
            SemanticError::InvalidThreshold(_) => "invalid_threshold",
            SemanticError::Config(_) => "config",
            SemanticError::Index(_) => "index",
        }
    }
}
