//! The dashboard's live view, computed in the gateway: every finished request is folded into
//! one-second aggregates (rates overall, per tenant, per model and per API; TTFT/TPOT
//! percentiles over a sliding window; SLO attainment per tenant), joined once a second with the
//! workers' state, engine metrics and plugin counters, and published as a [`LiveFrame`] to
//! subscribers and as server-sent events on `/admin/api/live`.
//!
//! Without the default `hub` feature only [`frame`]'s types remain (no tokio, no I/O), which is
//! how the dashboard, built for `wasm32-unknown-unknown`, reads the same frames.

pub mod frame;

#[cfg(feature = "hub")]
mod accumulate;
#[cfg(feature = "hub")]
mod hub;
#[cfg(feature = "hub")]
mod sources;
#[cfg(feature = "hub")]
pub mod sse;
#[cfg(feature = "hub")]
mod window;

pub use frame::*;
#[cfg(feature = "hub")]
pub use hub::LiveHub;
#[cfg(feature = "hub")]
pub use sources::{
    LiveSources, PanelSource, PluginSource, PluginTotals, QueueDepths, RegistryPlugins, SloLookup, WorkerSource,
    WorkerState,
};
#[cfg(feature = "hub")]
pub use sse::{sse_body, sse_response, sse_stream};
