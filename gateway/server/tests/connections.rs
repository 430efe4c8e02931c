//! Connection limits on the data listener (issue 22, finding 1): silent and idle connections are
//! closed, the open-connection caps (global and per client address) refuse clearly and are
//! counted, and the admin listener keeps answering while the data port is saturated.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests fail loudly")]

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::json;
use sluice_test_support::{GatewayOptions, TestClient, TestGateway, chat_body, wait_until_async};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Generous: every wait below is for a condition, and this only bounds a failure.
const WAIT: Duration = Duration::from_secs(10);

fn options(server: &str) -> GatewayOptions {
    GatewayOptions { server_toml: server.to_owned(), ..GatewayOptions::default() }
}

/// A connection to `to` from the loopback address `from` (Linux routes all of 127/8 locally).
async fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    socket.connect(to).await.unwrap()
}

/// Reads (discarding what the server sends) until the server closes the connection; `false`
/// if it is still open after [`WAIT`].
async fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 4096];
    let read_to_end = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(WAIT, read_to_end).await.is_ok()
}

async fn open_connections(gw: &TestGateway, listener: &str) -> f64 {
    gw.metric("sluice_connections_open", &[("listener", listener)]).await
}

/// A well-behaved client on one kept-alive HTTP/1.1 connection of its own (a pooling client may
/// open another one whenever it likes, which a saturated listener would rightly refuse).
struct WellBehaved {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
}

impl WellBehaved {
    async fn connect(gw: &TestGateway) -> Self {
        let stream = TcpStream::connect(gw.data_addr()).await.unwrap();
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
        tokio::spawn(conn);
        WellBehaved { sender }
    }

    /// `n` chat requests one after another, every one answered 200.
    async fn chat(&mut self, gw: &TestGateway, n: usize) {
        for i in 0..n {
            let body = chat_body("hello there", json!({"max_tokens": 4})).to_string();
            let request = http::Request::post("/v1/chat/completions")
                .header("host", "sluice")
                .header("authorization", format!("Bearer {}", gw.key))
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(body)))
                .unwrap();
            self.sender.ready().await.unwrap();
            let response = self.sender.send_request(request).await.unwrap();
            let status = response.status();
            let text = response.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(status, 200, "well-behaved request {i}: {text:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_idle_connections_are_closed() {
    let gw = TestGateway::start(1, options("header_read_timeout = \"200ms\"\nidle_timeout = \"300ms\"")).await;
    let addr = gw.data_addr();

    // Sends nothing at all: HTTP/1.1 or HTTP/2 is never even decided.
    let mut silent = TcpStream::connect(addr).await.unwrap();
    // Starts a head and never finishes it.
    let mut slow_head = TcpStream::connect(addr).await.unwrap();
    slow_head.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n").await.unwrap();
    // Speaks HTTP/2 (preface and an empty SETTINGS frame), then opens no stream.
    let mut silent_h2 = TcpStream::connect(addr).await.unwrap();
    silent_h2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00").await.unwrap();
    // Makes one request, then keeps the connection without using it.
    let mut kept_alive = TcpStream::connect(addr).await.unwrap();
    kept_alive.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();

    let mut client = WellBehaved::connect(&gw).await;
    let (silent_closed, slow_closed, h2_closed, idle_closed, ()) = tokio::join!(
        closed_by_server(&mut silent),
        closed_by_server(&mut slow_head),
        closed_by_server(&mut silent_h2),
        closed_by_server(&mut kept_alive),
        client.chat(&gw, 10),
    );
    assert!(silent_closed, "a connection that sent nothing was left open");
    assert!(slow_closed, "a connection with an unfinished head was left open");
    assert!(h2_closed, "an HTTP/2 connection without streams was left open");
    assert!(idle_closed, "a kept-alive connection without requests was left open");
    drop(client);
    assert!(
        wait_until_async(WAIT, || async { open_connections(&gw, "data").await == 0.0 }).await,
        "open connections did not return to zero"
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_caps_refuse_clearly_and_the_admin_plane_answers() {
    // Long timeouts: the connections held below must stay open while the caps are probed.
    let server = "max_connections = 8\nmax_connections_per_ip = 4\n\
                  header_read_timeout = \"60s\"\nidle_timeout = \"60s\"";
    let gw = TestGateway::start(1, options(server)).await;
    let addr = gw.data_addr();

    // The well-behaved client's kept-alive connection is the first from 127.0.0.1.
    let mut client = WellBehaved::connect(&gw).await;
    client.chat(&gw, 1).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(connect_from("127.0.0.1", addr).await);
    }
    assert!(wait_until_async(WAIT, || async { open_connections(&gw, "data").await == 4.0 }).await);

    // A fifth from the same address is closed at once.
    let mut over_ip = connect_from("127.0.0.1", addr).await;
    assert!(closed_by_server(&mut over_ip).await, "the per-address cap did not close the connection");
    let refused = |reason: &'static str| {
        let gw = &gw;
        async move { gw.metric("sluice_connections_refused_total", &[("listener", "data"), ("reason", reason)]).await }
    };
    assert_eq!(refused("max_connections_per_ip").await, 1.0);

    // Another address fills the global cap.
    for _ in 0..4 {
        held.push(connect_from("127.0.0.2", addr).await);
    }
    assert!(wait_until_async(WAIT, || async { open_connections(&gw, "data").await == 8.0 }).await);
    let mut over_global = connect_from("127.0.0.3", addr).await;
    assert!(closed_by_server(&mut over_global).await, "the global cap did not close the connection");
    assert_eq!(refused("max_connections").await, 1.0);

    // Saturated: the admin plane answers on its own budget, and the well-behaved client's
    // connection keeps being served.
    let admin = TestClient::http1();
    for path in ["/healthz", "/metrics"] {
        assert_eq!(admin.get(&gw.admin_url(path), None).await.status, 200, "{path} while saturated");
    }
    client.chat(&gw, 5).await;

    // Closed connections give their places back.
    held.truncate(2);
    assert!(wait_until_async(WAIT, || async { open_connections(&gw, "data").await == 3.0 }).await);
    WellBehaved::connect(&gw).await.chat(&gw, 3).await;
    gw.shutdown().await;
}
