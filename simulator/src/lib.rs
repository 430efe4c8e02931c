//! Simulated GPU inference workers that speak the OpenAI API like vLLM (with `/metrics` in
//! vLLM's, SGLang's or TensorRT-LLM's names), so the gateway can be
//! run and tested without a GPU.
//!
//! - [`engine`]: the iteration-level engine model (scheduler, paged KV prefix cache, latency
//!   model), free of I/O and clocks.
//! - `driver`: runs the engine against the tokio clock and feeds request streams.
//! - `server`: the OpenAI-compatible HTTP front (HTTP/1.1 and h2c), SSE, `/metrics`.
//! - [`bench`]: the virtual-time driver and `bench-routing`, the routing policy benchmark.
//! - [`SimWorker`] / [`SimHandle`]: start, observe, fault and stop a worker in-process.

pub mod bench;
pub mod cli;
mod config;
mod driver;
pub mod engine;
mod error;
mod faults;
mod flavor;
mod hash;
mod kv_log;
mod lag;
mod metrics;
pub mod sampling;
mod server;
mod stats;
pub mod tokenizer;
mod worker;

pub use config::SimConfig;
pub use engine::EngineConfig;
pub use engine::latency::LatencyConfig;
pub use error::SimError;
pub use faults::Faults;
pub use flavor::{Flavor, UnknownFlavor};
pub use kv_log::KvEventsConfig;
pub use lag::StepLag;
pub use sampling::OutputLength;
pub use stats::SimStats;
pub use worker::{SimHandle, SimWorker};
