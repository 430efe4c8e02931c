//! End-to-end tests: the compiled `sluice` and `sluice-sim` binaries as child processes, talked
//! to over real sockets, as an operator or a client would. See `sluice_e2e` for the harness.
//!
//! Run with `cargo test -p sluice-e2e`; the harness builds both binaries first.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests")]

mod acceptance;
mod agents_sdk;
mod browser;
mod check_config;
mod demo;
mod hardening;
mod ratelimit;
mod reload;
mod replicas;
mod sandbox;
mod shapes;
mod shutdown;
