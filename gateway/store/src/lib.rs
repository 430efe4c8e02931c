//! Sluice's store, as the gateway uses it: open the configured database (PostgreSQL, or the
//! embedded SQLite file), import the config file's bootstrap tenants and pools, keep an
//! in-memory snapshot current ([`watcher`]), and write usage in batches ([`usage`]).
//!
//! The request path never waits on any of this: it reads the snapshot the watcher swaps in.

pub mod bootstrap;
mod open;
pub mod slo;
pub mod usage;
pub mod watcher;

pub use open::{DEFAULT_DB_FILE, StoreLocation, open};
pub use sluice_store_model as model;
pub use sluice_store_model::{Backend, StoreError};
