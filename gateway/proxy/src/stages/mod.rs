//! One module per pipeline stage. `crate::pipeline` is the only place that knows their order.

pub mod admit;
pub mod affinity;
pub mod authenticate;
pub mod cache;
pub mod classify;
pub mod forward;
pub mod parse;
pub mod policy;
pub mod prepare;
pub mod read_body;
pub mod resolve;
pub mod respond;
pub mod serves_api;
