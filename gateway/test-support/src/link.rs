//! A TCP relay that can be cut and restored, to take a database away from a running gateway
//! without touching the database server other tests share.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct Link {
    pub addr: SocketAddr,
    open: Arc<AtomicBool>,
    /// Bumped by every cut; each relayed connection ends when it changes.
    cuts: watch::Sender<u64>,
}

impl Link {
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind link");
        let addr = listener.local_addr().expect("link address");
        let open = Arc::new(AtomicBool::new(true));
        let (cuts, _) = watch::channel(0u64);
        let accept_open = Arc::clone(&open);
        let accept_cuts = cuts.clone();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !accept_open.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let mut cut = accept_cuts.subscribe();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(target).await else { return };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Link { addr, open, cuts }
    }

    /// Drops every relayed connection and refuses new ones.
    pub fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        self.cuts.send_modify(|n| *n += 1);
    }

    pub fn restore(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}
