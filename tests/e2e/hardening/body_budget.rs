//! Finding 7: tenants could push a replica toward out-of-memory with large bodies (parsing
//! held about five times each body, with no budget across requests). Now request bodies in
//! flight are reserved against `max_inflight_body_bytes` before they are read: with most of a
//! small budget held by clients that declared large bodies, a flood of large bodies is refused
//! `503 gateway_overloaded` at once while the good tenant's small requests are served, the
//! gateway's memory stays within a few budgets, and the room comes back when the holders leave.
//! The holders are three tenants, one large body each, so that no tenant's own share of the
//! budget is what refuses the flood.

use std::io::ErrorKind;
use std::time::Instant;

use http::StatusCode;
use sluice_e2e::fleet::{start_gateway, start_sim};
use sluice_e2e::tenancy::{Load, key, post_bytes, rss_kib, tenants_toml, wait_until};
use sluice_e2e::{API_KEY, MODEL, TempDir};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use super::{PATIENCE, Pool, assert_good_unharmed, gateway_toml, good_alongside, long_request};

const MAX_BODY: usize = 1 << 20;
/// Room for three and a half large bodies: three holders leave room for small ones only.
const BUDGET: usize = 3 * MAX_BODY + MAX_BODY / 2;
const HOLDERS: [&str; 3] = ["holder-1", "holder-2", "holder-3"];
const FLOOD: usize = 48;
/// How much the gateway's resident memory may grow from before the holders to after the flood:
/// room for allocator slack and the read buffers of the 48 refused bodies being drained at once
/// (up to 37 MiB measured), far below what parsing them would take (about five times the 48 MiB).
const RSS_GROWTH_LIMIT_KIB: u64 = 64 * 1024;

/// A client of `tenant` that declares a body of the largest size and sends only its first
/// bytes: the gateway reserves the whole declared length while it waits for the rest.
async fn hold_a_large_body(listen: std::net::SocketAddr, tenant: &str) -> TcpStream {
    let mut socket = TcpStream::connect(listen).await.unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: sluice\r\nauthorization: Bearer {}\r\n\
         content-type: application/json\r\ncontent-length: {MAX_BODY}\r\n\r\n{{\"model\":",
        key(tenant)
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    socket
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_large_bodies_is_refused_while_small_requests_are_served() {
    let dir = TempDir::new("hardening-body-budget");
    let sim = start_sim(&dir, "sim", None, &["--zero-delay", "--max-model-len", "1000000"]).await;
    let server = format!("max_body_bytes = {MAX_BODY}\nmax_inflight_body_bytes = {BUDGET}");
    let holder_tenants = tenants_toml(&HOLDERS);
    let gw =
        start_gateway(&dir, |l, a| gateway_toml(l, a, &server, &[Pool::llama(&[sim.url()])], &holder_tenants)).await;
    let good = good_alongside(&gw, Load::new(2)).await;
    let url = format!("{}/v1/chat/completions", gw.api());
    // A valid chat request just under the largest body.
    let large = serde_json::to_vec(&long_request(MODEL, 250_000, false, 1)).unwrap();
    assert!(large.len() > MAX_BODY * 9 / 10 && large.len() <= MAX_BODY, "{}", large.len());
    let post_large = || post_bytes(&url, Some(API_KEY), "application/json", large.clone());

    let rss_before = rss_kib(gw.proc.pid());
    let mut holders = Vec::new();
    for tenant in HOLDERS {
        holders.push(hold_a_large_body(gw.listen, tenant).await);
    }
    // Once they hold their bodies, a large one does not fit. A probe can come first and hold
    // its body a moment; a holder that met it was refused, and is replaced.
    let deadline = Instant::now() + PATIENCE;
    loop {
        for (tenant, holder) in HOLDERS.iter().zip(holders.iter_mut()) {
            if !matches!(holder.try_read(&mut [0u8; 1]), Err(e) if e.kind() == ErrorKind::WouldBlock) {
                *holder = hold_a_large_body(gw.listen, tenant).await;
            }
        }
        if post_large().await.status == StatusCode::SERVICE_UNAVAILABLE {
            break;
        }
        assert!(Instant::now() < deadline, "the holders' bodies never filled the budget");
    }

    let mut flood = JoinSet::new();
    for _ in 0..FLOOD {
        let (url, body) = (url.clone(), large.clone());
        flood.spawn(async move { post_bytes(&url, Some(API_KEY), "application/json", body).await });
    }
    while let Some(reply) = flood.join_next().await {
        let reply = reply.unwrap();
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{}", reply.text());
        assert_eq!(reply.headers["retry-after"], "1");
        let error = &reply.json()["error"];
        assert_eq!(
            (error["code"].as_str(), error["type"].as_str()),
            (Some("gateway_overloaded"), Some("server_error"))
        );
        assert!(error["message"].as_str().unwrap().contains("memory budget"), "{error}");
    }
    let rss_after = rss_kib(gw.proc.pid());
    assert!(
        rss_after < rss_before + RSS_GROWTH_LIMIT_KIB,
        "RSS grew from {rss_before} KiB to {rss_after} KiB under a flood of {FLOOD} refused bodies"
    );
    assert_good_unharmed(good).await;

    // The holders leave: their reservations end with their requests.
    drop(holders);
    wait_until("a large body fits again", PATIENCE, || async { post_large().await.status == StatusCode::OK }).await;
}
