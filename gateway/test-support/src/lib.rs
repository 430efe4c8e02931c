//! Helpers for Sluice's in-process integration tests.
//!
//! Every test builds the whole service the way `main.rs` does, against simulated GPU workers,
//! over real sockets on `127.0.0.1:0`:
//!
//! - [`TestGateway`]: N [`sluice_sim::SimWorker`]s and a [`sluice_server::Sluice`] in front of
//!   them, configured from TOML text through [`sluice_config::Config::from_toml`].
//! - [`TestClient`]: a hyper client speaking HTTP/1.1, HTTP/2 prior knowledge or HTTPS (with
//!   ALPN) to the gateway; [`SseStream`] reads a streamed answer event by event with arrival
//!   times.
//! - [`TestCa`]: an rcgen CA and a server certificate for `127.0.0.1`/`localhost`.
//! - [`wait_until`] / [`wait_until_async`]: bounded polling instead of fixed sleeps.
//! - [`metrics`]: reading values out of the Prometheus text exposition.
//! - [`TcpTap`]: a TCP relay that records whether each connection opened with the HTTP/2 preface.
//! - [`Link`]: a TCP relay that can be cut and restored (a database going away).
//! - [`LogCapture`]: the process's log lines in memory.
//! - [`fresh_postgres`] / [`fresh_sqlite`]: a new, migrated store per test.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers fail the calling test loudly on any setup error"
)]

mod client;
mod gateway;
mod link;
mod logs;
pub mod metrics;
mod sse;
mod stores;
mod tap;
mod tls;
mod wait;

pub use client::{Reply, TestBody, TestClient, chunked_body, full_body, read_whole, request};
pub use gateway::{ADMIN_TOKEN, GatewayOptions, MODEL, POOL, TENANT, TENANT_KEY, TestGateway, TestStore, chat_body};
pub use link::Link;
pub use logs::LogCapture;
pub use sse::{SseStream, TimedEvent, concat_content};
pub use stores::{FreshPostgres, fresh_postgres, fresh_sqlite};
pub use tap::TcpTap;
pub use tls::TestCa;
pub use wait::{wait_until, wait_until_async};
