//! Finding 1: silent connections were never closed and nothing capped them, until the API and
//! the admin port went down. Now connections past the per-address and global caps are closed at
//! once and counted, the admitted silent ones are closed after `header_read_timeout`, the admin
//! listener answers while the data port is full, and a client already connected is served
//! throughout.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use http::StatusCode;
use sluice_e2e::client::{connect, get, get_from};
use sluice_e2e::fleet::{Gateway, start_gateway, start_sim};
use sluice_e2e::net::closed_by_peer;
use sluice_e2e::tenancy::{Load, key, wait_until};
use sluice_e2e::{MODEL, TempDir};

use super::{GOOD, PATIENCE, Pool, assert_good_unharmed, gateway_toml, good_alongside, metric};

const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(4);
/// Two client addresses of the attacker's (Linux routes all of 127/8 to loopback).
const ATTACKER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
const ATTACKER_TOO: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));

async fn open(gw: &Gateway) -> f64 {
    metric(gw, "sluice_connections_open", &[("listener", "data")]).await
}

async fn refused(gw: &Gateway, reason: &str) -> f64 {
    metric(gw, "sluice_connections_refused_total", &[("listener", "data"), ("reason", reason)]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_are_capped_and_closed_after_the_header_timeout() {
    let dir = TempDir::new("hardening-connections");
    let sim = start_sim(&dir, "sim", None, &[]).await;
    let server = format!(
        "max_connections = 10\nmax_connections_per_ip = 6\nheader_read_timeout = \"{}s\"",
        HEADER_READ_TIMEOUT.as_secs()
    );
    let mut gw = start_gateway(&dir, |l, a| gateway_toml(l, a, &server, &[Pool::llama(&[sim.url()])], "")).await;
    let log = gw.proc.stderr();
    assert!(log.contains("connection limits") && log.contains("max_connections=10"), "{log}");

    // The good tenant's two kept-alive connections, from 127.0.0.1: connected before the attack.
    let good = good_alongside(&gw, Load { kept_alive: true, ..Load::new(2) }).await;
    wait_until_open(&gw, 2.0).await;

    let attack = Instant::now();
    let listen = gw.listen.to_string();
    let mut silent = Vec::new();
    // Eight connections that send nothing from one address: six fit its cap, two are refused.
    for _ in 0..8 {
        silent.push(connect(Some(ATTACKER), &listen).await.unwrap());
    }
    wait_until("6 held and 2 refused by the per-address cap", PATIENCE, || async {
        open(&gw).await == 8.0 && refused(&gw, "max_connections_per_ip").await == 2.0
    })
    .await;
    // Four from another address: two fill the global cap, two are refused.
    for _ in 0..4 {
        silent.push(connect(Some(ATTACKER_TOO), &listen).await.unwrap());
    }
    wait_until("the global cap full and 2 refused by it", PATIENCE, || async {
        open(&gw).await == 10.0 && refused(&gw, "max_connections").await == 2.0
    })
    .await;

    // Saturated: the admin listener answers on its own budget, and a newcomer is closed at once.
    for path in ["/healthz", "/readyz"] {
        let reply = get(&format!("{}{path}", gw.admin_url()), None).await;
        assert_eq!(reply.status, StatusCode::OK, "{path} while the data port is full: {}", reply.text());
    }
    let mut newcomer = connect(Some(ATTACKER_TOO), &listen).await.unwrap();
    assert!(closed_by_peer(&mut newcomer, PATIENCE).await, "a connection past the cap was kept");
    assert_eq!(refused(&gw, "max_connections").await, 3.0);

    // Every silent connection is closed by the gateway: the admitted ones once they have sent
    // no request head for the header timeout.
    for (i, connection) in silent.iter_mut().enumerate() {
        assert!(closed_by_peer(connection, PATIENCE).await, "silent connection {i} was left open");
    }
    assert!(attack.elapsed() >= HEADER_READ_TIMEOUT, "admitted silent connections closed early");
    wait_until_open(&gw, 2.0).await;

    // Their places are free again: the attacker's address is served like anyone's.
    let models = get_from(ATTACKER, &format!("{}/v1/models", gw.api()), Some(&key(GOOD))).await;
    assert_eq!(models.status, StatusCode::OK, "{}", models.text());
    assert_eq!(models.json()["data"][0]["id"], MODEL);
    assert_good_unharmed(good).await;
    assert!(gw.proc.exited().is_none(), "the gateway died\n{}", gw.proc.diagnostics());
}

async fn wait_until_open(gw: &Gateway, n: f64) {
    wait_until(&format!("{n} data connections open"), PATIENCE, || async { open(gw).await == n }).await;
}
