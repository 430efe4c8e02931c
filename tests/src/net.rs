//! Ports and readiness.

use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::client;
use crate::process::Proc;

/// A port that was free a moment ago: bound on 127.0.0.1:0 and released. A child process may
/// still lose it to someone else before binding; the starters in [`crate::fleet`] retry once.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("binding 127.0.0.1:0: {e}"))
}

pub fn free_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

pub fn port_is_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// Why a process did not become ready.
#[derive(Debug)]
pub enum NotReady {
    Exited(std::process::ExitStatus),
    TimedOut(String),
}

/// Polls `url` until it answers 200, the process exits, or `timeout` passes.
pub async fn wait_ready(proc: &mut Proc, url: &str, timeout: Duration) -> Result<(), NotReady> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = proc.exited() {
            return Err(NotReady::Exited(status));
        }
        let last = match client::try_get(url).await {
            Ok(reply) if reply.status == http::StatusCode::OK => return Ok(()),
            Ok(reply) => format!("status {}", reply.status),
            Err(e) => e,
        };
        if Instant::now() >= deadline {
            return Err(NotReady::TimedOut(last));
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Reads, discarding what arrives, until the peer closes `stream` (or resets it); `false` if it
/// is still open after `timeout`.
pub async fn closed_by_peer(stream: &mut TcpStream, timeout: Duration) -> bool {
    let mut buf = [0u8; 4096];
    let read_to_end = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(timeout, read_to_end).await.is_ok()
}
