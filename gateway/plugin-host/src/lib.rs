//! Sluice's WebAssembly plugin host.
//!
//! Policies run as WebAssembly components against the `sluice:policy@0.2.0` contract
//! (`plugins/wit/policy.wit`, documented hook by hook in `docs/plugins.md`), or against the
//! frozen 0.1.0 ([`v0_1`]):
//!
//! - [`engine`]: one wasmtime `Engine` (component model, pooling allocator with copy-on-write
//!   memory images, epoch interruption driven by a ticker thread).
//! - [`artifacts`]: precompiled components in a content-addressed cache.
//! - [`loader`]: a component checked against the contract and its binding's grants, linked once
//!   (`InstancePre`), its hook exports looked up once.
//! - [`binding`]: a loaded version with limits, isolation (`per-request` or `reuse`) and a
//!   failure policy; every call under a deadline and memory/table limits, failures typed.
//! - [`chain`]: the bindings in order, and what a request's hooks decide.
//! - [`host`]: [`PluginHost`], which loads off the hot path and swaps chains atomically.
//! - [`builtin`]: the built-in plugins, built from `plugins/` and embedded.

pub mod artifacts;
pub mod binding;
pub mod bindings;
pub mod breaker;
pub mod builtin;
pub mod cache;
pub mod capability;
pub mod chain;
pub mod counters;
pub mod engine;
pub mod error;
mod host;
mod host_impl;
pub mod inspect;
pub mod io;
pub mod limits;
pub mod loader;
pub mod metrics;
pub mod namespace;
pub mod output;
pub mod resources;
pub mod response_cache;
pub mod services;
mod state;
#[cfg(feature = "test-util")]
pub mod testing;
pub mod v0_1;

pub use binding::{Binding, CallLimits, FailurePolicy, Isolation, Origin, Scope, default_concurrent_calls};
pub use bindings::types;
pub use breaker::{BreakerSettings, BreakerState};
pub use capability::{Capabilities, Capability};
pub use chain::{Chain, ChainFailure, ChunkVerdict, RequestEdits, RequestVerdict, RequestView};
pub use engine::{EngineSettings, PluginEngine};
pub use error::PluginError;
pub use host::{
    BindingSpec, Builtins, DEFAULT_ISOLATION, HostError, HostSettings, PluginHost, PluginSource, RATELIMIT_ORDER,
};
pub use io::{AllowList, IoFuture, PluginIo};
pub use limits::{Fallback, LeaseSettings, Limits, RequestLimits, SharedMode, SharedSettings};
pub use loader::{CONTRACT, Contract, Hook, PluginVersion};
pub use output::OutputLimits;
pub use resources::BodyResource;
pub use response_cache::{BypassReason, CacheIntent, CacheSlot, CacheUse, SemanticAsk};
