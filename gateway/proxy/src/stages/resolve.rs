//! The requested model → the pool that serves it.

use std::sync::Arc;

use crate::error::GatewayError;
use crate::upstream::{Pool, Upstreams};

pub fn run<'a>(upstreams: &'a Upstreams, model: &str) -> Result<&'a Arc<Pool>, GatewayError> {
    upstreams.pool_for(model).ok_or_else(|| GatewayError::ModelNotFound(model.chars().take(256).collect()))
}
