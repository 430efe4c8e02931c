//! A TCP relay in front of a worker that notes how each connection starts, to tell h2c from
//! HTTP/1.1 without trusting either end.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Relays `127.0.0.1:PORT` → `target`. Stops when dropped.
#[derive(Debug)]
pub struct TcpTap {
    pub addr: SocketAddr,
    /// Per accepted connection: did it open with the HTTP/2 connection preface?
    seen: Arc<Mutex<Vec<bool>>>,
    accept: JoinHandle<()>,
}

impl TcpTap {
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind tap");
        let addr = listener.local_addr().expect("tap address");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&seen);
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let record = Arc::clone(&record);
                tokio::spawn(relay(client, target, record));
            }
        });
        TcpTap { addr, seen, accept }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// One entry per connection so far: `true` for HTTP/2 prior knowledge.
    pub fn connections(&self) -> Vec<bool> {
        self.seen.lock().expect("tap record").clone()
    }
}

impl Drop for TcpTap {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn relay(mut client: TcpStream, target: SocketAddr, record: Arc<Mutex<Vec<bool>>>) {
    let Ok(mut upstream) = TcpStream::connect(target).await else { return };
    let mut head = vec![0u8; H2_PREFACE.len()];
    let mut filled = 0;
    while filled < head.len() {
        match client.read(&mut head[filled..]).await {
            Ok(0) | Err(_) => break,
            Ok(n) => filled += n,
        }
    }
    head.truncate(filled);
    record.lock().expect("tap record").push(head == H2_PREFACE);
    if upstream.write_all(&head).await.is_err() {
        return;
    }
    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
}
