//! Finding 6: a gateway out of file descriptors booked its own `EMFILE` as the workers' "tcp
//! open error": with the common limit of 1024, 313 of 700 concurrent streams failed and both
//! workers were ejected. Now the streams that do not fit are refused `503 gateway_overloaded`,
//! the rest are served whole, and no worker is ejected or marked unhealthy, with one failure
//! enough to eject and one failed probe enough to take a worker out; the good tenant, already
//! connected, is served throughout.
//!
//! The gateway starts under `prlimit` with a soft limit below the hard one (it raises the soft
//! limit and logs the figure); once it is warm its soft limit is brought down to a few dozen
//! descriptors above those it holds, so that one HTTP/2 connection's streams run it out.

use std::process::Command;

use bytes::Bytes;
use http::StatusCode;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use sluice_e2e::fleet::{Gateway, Launch, start_gateway_with, start_sim};
use sluice_e2e::metrics::sum;
use sluice_e2e::tenancy::Load;
use sluice_e2e::{API_KEY, MODEL, TempDir};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use super::{GOOD, Pool, assert_good_unharmed, gateway_toml, good_alongside};

const STEADY_MODEL: &str = "steady-model";
/// The limit the gateway starts under: soft, then hard.
const SOFT: u64 = 512;
const HARD: u64 = 1024;
/// Descriptors left free when the limit is lowered: far fewer than the streams opened.
const HEADROOM: u64 = 32;
const STREAMS: usize = 120;

type H2 = hyper::client::conn::http2::SendRequest<Full<Bytes>>;

/// Sets the gateway's soft `RLIMIT_NOFILE` (its hard limit stays), with util-linux `prlimit`.
fn set_soft_limit(gw: &Gateway, soft: u64) {
    let status = Command::new("prlimit")
        .args(["--pid", &gw.proc.pid().to_string(), &format!("--nofile={soft}:{HARD}")])
        .status()
        .expect("running prlimit (util-linux)");
    assert!(status.success(), "prlimit --pid: {status}");
}

fn descriptors_in_use(gw: &Gateway) -> u64 {
    let dir = format!("/proc/{}/fd", gw.proc.pid());
    std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("reading {dir}: {e}")).count() as u64
}

/// A streamed chat request on the HTTP/2 connection: its status, `retry-after` and whole body.
async fn stream(mut sender: H2, api: String) -> (StatusCode, Option<String>, Value, String) {
    let body = json!({"model": MODEL, "stream": true, "max_tokens": 40,
                      "messages": [{"role": "user", "content": "hello"}]});
    let request = http::Request::post(format!("{api}/v1/chat/completions"))
        .header("authorization", format!("Bearer {API_KEY}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    sender.ready().await.unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status();
    let retry_after = response.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
    let text = String::from_utf8(response.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    (status, retry_after, json, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_out_of_descriptors_refuses_streams_and_ejects_no_worker() {
    let dir = TempDir::new("hardening-descriptors");
    let one = start_sim(&dir, "sim-1", None, &["--slow-token-ms", "20"]).await;
    let two = start_sim(&dir, "sim-2", None, &["--slow-token-ms", "20"]).await;
    let steady = start_sim(&dir, "steady", None, &["--model", STEADY_MODEL]).await;
    let pools = [
        Pool {
            // Probed every 200 ms, out after one failed probe and back only after a thousand
            // good ones; ejected for a minute after one failure: any blame shows.
            upstream: "[pools.upstream.health]\ninterval = \"200ms\"\nunhealthy_threshold = 1\n\
                       healthy_threshold = 1000\n[pools.upstream.ejection]\nconsecutive_failures = 1\nbase = \"60s\"",
            ..Pool::llama(&[one.url(), two.url()])
        },
        // The good tenant's pool, probed once at start: its one kept-alive worker connection
        // is all it needs, so it never has to open a descriptor during the shortage.
        Pool {
            name: "steady",
            models: &[STEADY_MODEL],
            endpoints: vec![format!("\"{}\"", steady.url())],
            upstream: "[pools.upstream.health]\ninterval = \"1h\"",
        },
    ];
    let launch = Launch {
        wrapper: vec!["prlimit".to_owned(), format!("--nofile={SOFT}:{HARD}"), "--".to_owned()],
        ..Launch::default()
    };
    let gw = start_gateway_with(&dir, &launch, |l, a| gateway_toml(l, a, "", &pools, "")).await;
    let log = gw.proc.stderr();
    assert!(log.contains(&format!("nofile={HARD}")), "the soft limit is raised to the hard one and logged:\n{log}");

    let mut steady_chat = sluice_e2e::tenancy::chat();
    steady_chat["model"] = json!(STEADY_MODEL);
    let good = good_alongside(&gw, Load { workers: 1, requests: vec![steady_chat], kept_alive: true }).await;
    let tcp = TcpStream::connect(gw.listen).await.unwrap();
    let (h2, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp)).await.unwrap();
    tokio::spawn(conn);
    let (status, _, _, text) = stream(h2.clone(), gw.api()).await;
    assert_eq!(status, StatusCode::OK, "{text}");

    set_soft_limit(&gw, descriptors_in_use(&gw) + HEADROOM);
    let mut streams = JoinSet::new();
    for _ in 0..STREAMS {
        streams.spawn(stream(h2.clone(), gw.api()));
    }
    let (mut served, mut refused) = (0, 0);
    while let Some(joined) = streams.join_next().await {
        let (status, retry_after, json, text) = joined.unwrap();
        match status {
            StatusCode::OK => {
                assert!(text.trim_end().ends_with("data: [DONE]") && !text.contains("\"error\""), "{text}");
                served += 1;
            }
            StatusCode::SERVICE_UNAVAILABLE => {
                assert_eq!(json["error"]["code"], "gateway_overloaded", "{text}");
                assert_eq!(json["error"]["type"], "server_error", "{text}");
                assert_eq!(retry_after.as_deref(), Some("1"));
                refused += 1;
            }
            other => panic!("a stream was answered {other}: {text}"),
        }
    }
    set_soft_limit(&gw, HARD);
    assert!(refused > 0, "the descriptors never ran out ({served} served)");
    assert!(served > 0, "no stream fitted");

    // No worker was blamed for the gateway's shortage.
    let text = gw.metrics().await;
    for endpoint in [one.addr.to_string(), two.addr.to_string()] {
        let labels = [("pool", "llama"), ("endpoint", endpoint.as_str())];
        let value = |name| sum(&text, name, &labels).unwrap_or(0.0);
        assert_eq!(value("sluice_endpoint_ejections_total"), 0.0, "{endpoint} was ejected:\n{text}");
        assert_eq!(value("sluice_endpoint_healthy"), 1.0, "{endpoint} was taken out:\n{text}");
        assert_eq!(value("sluice_upstream_errors_total"), 0.0, "{endpoint} was blamed:\n{text}");
    }
    let log = gw.proc.stderr();
    assert!(log.contains("cannot open a connection to a worker"), "the log says why:\n{log}");
    // The shortage outlasts several probe rounds (the served streams take 0.8 s): probes were
    // due while no descriptor was free, and none of them counted.
    assert!(log.contains("health probe not sent"), "no probe met the shortage:\n{log}");

    // Service is whole again at once: every stream is served now.
    for _ in 0..5 {
        let (status, _, _, text) = stream(h2.clone(), gw.api()).await;
        assert_eq!(status, StatusCode::OK, "{text}");
    }
    assert_good_unharmed(good).await;
    assert_eq!(
        sum(&gw.metrics().await, "sluice_requests_total", &[("tenant", GOOD), ("outcome", "ok")]).map(|v| v > 0.0),
        Some(true)
    );
}
