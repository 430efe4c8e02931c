//! Finding 8: the admin token could be guessed at 7,500 tries a second with no `429`, no
//! lockout and no log line, and a one-character token was accepted. Now ten wrong tokens from
//! one address lock it out with `429` and `Retry-After` (the right token included) and a log
//! line naming the address and never the token, while `/healthz`, `/readyz` and `/metrics` stay
//! open to it, an operator at another address carries on, and the good tenant's API traffic is
//! untouched; and a short token stops the gateway at start.

use std::net::{IpAddr, Ipv4Addr};

use http::{StatusCode, header};
use sluice_e2e::client::{get, get_from};
use sluice_e2e::fleet::{config, start_gateway, start_sim};
use sluice_e2e::tenancy::{ADMIN_TOKEN, Load};
use sluice_e2e::{Proc, STARTUP, TempDir, bins};

use super::{Pool, assert_good_unharmed, gateway_toml, good_alongside, metric};

/// The guesser's address; the operator and the test's own requests come from 127.0.0.1.
const GUESSER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 4));
/// `[admin] max_failures`' default.
const MAX_FAILURES: usize = 10;
/// A wrong token as a guesser would send it; it must never reach the log.
const GUESS: &str = "guess-0123456789abcdef0123456789abcdef";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_admin_tokens_lock_their_address_out_and_the_rest_carries_on() {
    let dir = TempDir::new("hardening-admin-auth");
    let sim = start_sim(&dir, "sim", None, &[]).await;
    let gw = start_gateway(&dir, |l, a| gateway_toml(l, a, "", &[Pool::llama(&[sim.url()])], "")).await;
    let good = good_alongside(&gw, Load::new(2)).await;
    let tenants = format!("{}/admin/api/tenants", gw.admin_url());

    for attempt in 1..=MAX_FAILURES {
        let reply = get_from(GUESSER, &tenants, Some(GUESS)).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "guess {attempt}: {}", reply.text());
    }
    // Locked out: a wrong token, none, and the right one alike.
    for token in [Some(GUESS), None, Some(ADMIN_TOKEN)] {
        let reply = get_from(GUESSER, &tenants, token).await;
        assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS, "{}", reply.text());
        let retry_after: u64 = reply.headers[header::RETRY_AFTER].to_str().unwrap().parse().unwrap();
        assert!((240..=300).contains(&retry_after), "retry-after {retry_after} for a 5 min lockout");
        let error = &reply.json()["error"];
        assert_eq!(error["code"], "too_many_auth_failures", "{error}");
        assert_eq!(error["type"], "rate_limit_exceeded", "{error}");
    }
    // What needs no token stays open to the locked-out address.
    for path in ["/healthz", "/readyz", "/metrics"] {
        let reply = get_from(GUESSER, &format!("{}{path}", gw.admin_url()), None).await;
        assert_eq!(reply.status, StatusCode::OK, "{path} from the locked-out address: {}", reply.text());
    }
    // An operator at another address is unaffected.
    let reply = get(&tenants, Some(ADMIN_TOKEN)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());

    assert_eq!(metric(&gw, "sluice_admin_auth_refusals_total", &[("reason", "locked_out")]).await, 3.0);
    let wrong = metric(&gw, "sluice_admin_auth_refusals_total", &[("reason", "wrong_token")]).await;
    assert!(wrong >= MAX_FAILURES as f64, "{wrong} wrong tokens counted");
    let log = gw.proc.stderr();
    let guesses = log.lines().filter(|l| l.contains("wrong admin token") && l.contains("client=127.0.0.4")).count();
    assert!(guesses >= MAX_FAILURES, "each wrong token is logged with its address:\n{log}");
    assert!(log.contains("locked out"), "{log}");
    assert!(!log.contains(GUESS) && !log.contains(ADMIN_TOKEN), "a token reached the log:\n{log}");
    assert_good_unharmed(good).await;
}

#[tokio::test]
async fn a_short_admin_token_stops_the_gateway_at_start() {
    let dir = TempDir::new("hardening-short-token");
    let (listen, admin) = (sluice_e2e::net::free_addr(), sluice_e2e::net::free_addr());
    let toml = config(listen, admin, &["http://127.0.0.1:9".to_owned()], "", "[admin]\ntoken = \"s3cret\"\n");
    let path = dir.write("sluice.toml", &toml);
    let mut cmd = bins::sluice();
    cmd.arg("serve").arg("--config").arg(&path).arg("--data-dir").arg(dir.path().join("data"));
    let mut proc = Proc::spawn("sluice", cmd, dir.path());
    let status = proc.wait_exit(STARTUP).await;
    assert!(status.is_some_and(|s| !s.success()), "started with a 6-character admin token: {status:?}");
    let log = proc.stderr();
    assert!(log.contains("admin.token: must be at least 32 characters"), "{log}");
    assert!(!log.contains("s3cret") && !log.contains("panicked"), "{log}");
}
