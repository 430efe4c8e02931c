//! The harness for Sluice's end-to-end tests: build and locate the real binaries, run them as
//! child processes that die with the test, pick ports, wait for readiness, and speak just enough
//! HTTP/1.1 (hyper) and SSE to check what a client sees.
//!
//! Helpers panic with a message that says what went wrong and, for child processes, the tail of
//! their log: a failed end-to-end test should be diagnosable from its output alone.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "test helpers fail the test with a message")]

pub mod bins;
pub mod chromium;
pub mod client;
pub mod fleet;
pub mod metrics;
pub mod net;
pub mod process;
pub mod python;
pub mod temp;
pub mod tenancy;
pub mod vllm;

pub use bins::{Binaries, binaries};
pub use client::{Reply, SseStream};
pub use fleet::{API_KEY, Gateway, Sim, TENANT, start_gateway, start_sim};
pub use process::Proc;
pub use temp::TempDir;

use std::time::Duration;

/// How long anything may take to come up. Generous for a loaded 2-core CI machine; a healthy
/// run needs well under a second.
pub const STARTUP: Duration = Duration::from_secs(20);

/// The model every test serves.
pub const MODEL: &str = "llama-3-8b";
