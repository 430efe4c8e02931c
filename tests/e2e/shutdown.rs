//! SIGTERM: the gateway stops taking traffic, lets a stream in flight finish, and exits 0
//! within `server.shutdown_grace`.

use std::time::{Duration, Instant};

use http::StatusCode;
use sluice_e2e::client::try_get;
use sluice_e2e::fleet::{API_KEY, config, start_gateway, start_sim};
use sluice_e2e::{SseStream, TempDir};

use crate::shapes::{assert_stream, chat_request};

const GRACE: Duration = Duration::from_secs(15);

#[tokio::test]
async fn sigterm_lets_the_stream_in_flight_finish_then_exits_zero() {
    let dir = TempDir::new("sigterm");
    // 100 ms per token: a 30-token stream lasts about three seconds, long enough to signal the
    // gateway in the middle of it and watch the drain, short enough for a quick test.
    let sim = start_sim(&dir, "sim", None, &["--slow-token-ms", "100"]).await;
    let mut gw = start_gateway(&dir, |listen, admin| {
        config(listen, admin, &[sim.url()], &format!("shutdown_grace = \"{}s\"", GRACE.as_secs()), "")
    })
    .await;

    let tokens = 30;
    let url = format!("{}/v1/chat/completions", gw.api());
    let mut stream = SseStream::open(&url, Some(API_KEY), &chat_request(true, tokens)).await;
    assert_eq!(stream.status, StatusCode::OK, "{}", gw.proc.diagnostics());
    let first = stream.next_data().await.expect("the stream has started");

    let signalled = Instant::now();
    gw.proc.signal("TERM");

    // The admin plane stays up through the drain and reports not-ready, so a load balancer
    // stops sending new requests while the stream finishes.
    let readyz = format!("{}/readyz", gw.admin_url());
    loop {
        match try_get(&readyz).await {
            Ok(reply) if reply.status == StatusCode::SERVICE_UNAVAILABLE => {
                assert!(reply.text().contains("shutting_down"), "{}", reply.text());
                break;
            }
            Ok(reply) => assert_eq!(reply.status, StatusCode::OK, "{}", reply.text()),
            Err(e) => panic!("admin plane gone during the drain: {e}\n{}", gw.proc.diagnostics()),
        }
        assert!(gw.proc.exited().is_none(), "sluice exited with a stream in flight\n{}", gw.proc.diagnostics());
        assert!(signalled.elapsed() < Duration::from_secs(5), "/readyz never turned 503\n{}", gw.proc.diagnostics());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let mut events = vec![first];
    events.extend(stream.rest().await);
    let summary = assert_stream(&events);
    assert_eq!(summary.content_chunks, tokens as usize, "the stream was cut short by the shutdown");

    let status = gw.proc.wait_exit(GRACE).await;
    let elapsed = signalled.elapsed();
    let status = status.unwrap_or_else(|| panic!("still running {GRACE:?} after SIGTERM\n{}", gw.proc.diagnostics()));
    assert!(status.success(), "exit status {status}\n{}", gw.proc.diagnostics());
    assert!(elapsed < GRACE, "took {elapsed:?}, longer than the grace period {GRACE:?}");
    let log = gw.proc.stderr();
    assert!(log.contains("shutdown signal received"), "{log}");
    assert!(!log.contains("still running at the end of the grace period"), "{log}");
}

#[tokio::test]
async fn an_idle_gateway_exits_promptly_on_sigterm_and_sigint() {
    let dir = TempDir::new("sigterm-idle");
    let sim = start_sim(&dir, "sim", None, &[]).await;
    for signal in ["TERM", "INT"] {
        let mut gw = start_gateway(&dir, |listen, admin| config(listen, admin, &[sim.url()], "", "")).await;
        let signalled = Instant::now();
        gw.proc.signal(signal);
        let status = gw.proc.wait_exit(GRACE).await;
        let status = status.unwrap_or_else(|| panic!("SIG{signal}: still running\n{}", gw.proc.diagnostics()));
        assert!(status.success(), "SIG{signal}: exit status {status}\n{}", gw.proc.diagnostics());
        // Nothing to drain: well under the default 30 s grace.
        assert!(signalled.elapsed() < Duration::from_secs(5), "SIG{signal}: took {:?}", signalled.elapsed());
    }
}
