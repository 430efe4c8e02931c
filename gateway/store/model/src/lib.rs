//! Sluice's stored state as plain types, shared by the stores, the admin API, the gateway's
//! snapshot and the dashboard (this crate compiles to `wasm32-unknown-unknown`: no sqlx here).
//!
//! Two stores implement [`Backend`]: `sluice-store-postgres` (production) and
//! `sluice-store-sqlite` (the embedded default). They live in separate crates because sqlx's
//! checked query macros talk to one database per crate.

mod backend;
#[cfg(feature = "conformance")]
pub mod conformance;
mod error;
pub mod keys;
mod ownership;
pub mod revoke;
mod timestamp;
mod types;
pub mod validate;

pub use backend::{
    Actor, Backend, BackendKind, NewBinding, NewEndpoint, NewKey, NewPluginVersion, NewPool, NewTenant, PoolPatch,
    TenantPatch,
};
pub use error::StoreError;
pub use ownership::{Adopt, ConfigOwned, OwnedKey, Owner};
pub use types::*;
