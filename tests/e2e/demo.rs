//! `sluice demo`: one command, and a newcomer has a gateway, simulated workers, an API key and
//! (optionally) traffic to look at.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::time::{Duration, Instant};

use http::StatusCode;
use sluice_e2e::client::{get, post};
use sluice_e2e::metrics::sum;
use sluice_e2e::net::{free_addr, wait_ready};
use sluice_e2e::{Proc, STARTUP, TempDir, bins};

use crate::shapes::{assert_completion, chat_request};

struct Demo {
    proc: Proc,
    listen: SocketAddr,
    admin: SocketAddr,
    banner: String,
}

impl Demo {
    /// The value printed after `label` in the banner (`API key`, `Admin token`, …).
    fn banner_value(&self, label: &str) -> String {
        self.banner
            .lines()
            .find_map(|l| l.trim().strip_prefix(label).map(|rest| rest.trim().to_owned()))
            .unwrap_or_else(|| panic!("no {label:?} line in the banner:\n{}", self.banner))
    }

    async fn requests_total(&self) -> f64 {
        let reply = get(&format!("http://{}/metrics", self.admin), None).await;
        assert_eq!(reply.status, StatusCode::OK);
        sum(&reply.text(), "sluice_requests_total", &[]).unwrap_or(0.0)
    }
}

async fn start_demo(dir: &TempDir, traffic: &str) -> Demo {
    for attempt in 1..=2 {
        let (listen, admin) = (free_addr(), free_addr());
        let mut cmd = bins::sluice();
        cmd.arg("demo")
            .args(["--listen", &listen.to_string(), "--admin-listen", &admin.to_string()])
            .args(["--workers", "2", "--traffic", traffic])
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .env("SLUICE_ADMIN_TOKEN", "test-token-0123456789abcdef-0123456789");
        let mut proc = Proc::spawn(&format!("demo-{attempt}"), cmd, dir.path());
        match wait_ready(&mut proc, &format!("http://{admin}/healthz"), STARTUP).await {
            Ok(()) => {
                let banner = proc.wait_stdout("Ctrl-C stops it.", STARTUP).await;
                return Demo { proc, listen, admin, banner };
            }
            Err(_) if attempt == 1 && proc.bind_failed() => continue,
            Err(e) => panic!("sluice demo did not become ready: {e:?}\n{}", proc.diagnostics()),
        }
    }
    unreachable!("the loop returns or panics")
}

#[tokio::test]
async fn demo_prints_what_to_use_and_the_printed_key_works() {
    let dir = TempDir::new("demo");
    let mut demo = start_demo(&dir, "off").await;

    let api = demo.banner_value("OpenAI API");
    assert_eq!(api, format!("http://{}/v1", demo.listen), "{}", demo.banner);
    let key = demo.banner_value("API key");
    assert!(key.starts_with("sk-") && key.len() > 20, "API key {key:?}\n{}", demo.banner);
    assert_eq!(
        demo.banner_value("Admin token"),
        "test-token-0123456789abcdef-0123456789",
        "SLUICE_ADMIN_TOKEN is honoured"
    );
    assert!(demo.banner.contains(&format!("http://{}/metrics", demo.admin)), "{}", demo.banner);
    assert!(dir.path().join("data").is_dir(), "--data-dir is created");
    assert_private(&dir.path().join("data"));

    // vLLM-ecosystem clients check a backend with `GET /health` on the OpenAI port.
    let health = get(&format!("http://{}/health", demo.listen), None).await;
    assert_eq!(health.status, StatusCode::OK, "{}", demo.proc.diagnostics());
    assert!(health.text().is_empty(), "no details: {:?}", health.text());

    let reply = post(&format!("{api}/chat/completions"), Some(&key), &chat_request(false, 12)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}\n{}", reply.text(), demo.proc.diagnostics());
    assert_completion(&reply.json(), 12);

    // --traffic off: ours is the only request.
    assert_eq!(demo.requests_total().await, 1.0, "with --traffic off nothing else sends requests");

    demo.proc.signal("TERM");
    let status = demo.proc.wait_exit(Duration::from_secs(15)).await;
    let status = status.unwrap_or_else(|| panic!("demo still running after SIGTERM\n{}", demo.proc.diagnostics()));
    assert!(status.success(), "exit status {status}\n{}", demo.proc.diagnostics());
}

/// The demo's keys and admin token and the embedded store are readable by their owner only:
/// the directory is 0700, every file in it 0600 (SQLite's `-wal` and `-shm` included).
fn assert_private(data: &Path) {
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(data), 0o700, "{}", data.display());
    for required in ["demo-secrets.json", "sluice.db"] {
        assert!(data.join(required).is_file(), "{required} in {}", data.display());
    }
    for entry in std::fs::read_dir(data).unwrap() {
        let path = entry.unwrap().path();
        assert_eq!(mode(&path), 0o600, "{}", path.display());
    }
}

#[tokio::test]
async fn demo_with_traffic_on_sends_requests_by_itself() {
    let dir = TempDir::new("demo-traffic");
    let demo = start_demo(&dir, "on").await;
    // Four synthetic clients, each pausing 0.2–1 s between requests: the counter should move
    // within a few seconds. Require it to grow twice past the first reading.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = vec![demo.requests_total().await];
    while seen.len() < 3 {
        assert!(Instant::now() < deadline, "request counter stuck at {seen:?}\n{}", demo.proc.diagnostics());
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = demo.requests_total().await;
        let last = seen.last().copied().unwrap_or_default();
        assert!(now >= last, "a counter went down: {seen:?} then {now}");
        if now > last {
            seen.push(now);
        }
    }
    let reply = get(&format!("http://{}/metrics", demo.admin), None).await;
    let text = reply.text();
    let ok = sum(&text, "sluice_requests_total", &[("outcome", "ok")]).unwrap_or(0.0);
    assert!(ok >= 1.0, "synthetic requests succeed:\n{text}");
}
