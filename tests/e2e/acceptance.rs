//! The issue's acceptance contract, on its fixed ports and with its config file verbatim:
//! two `sluice-sim` workers on 18001/18002, `sluice serve` on 18080 with the admin plane on
//! 19090, a streaming and a non-streaming chat completion, `/v1/models`, a 401 and `/metrics`.

use std::net::SocketAddr;

use http::StatusCode;
use serde_json::json;
use sluice_e2e::client::{get, post};
use sluice_e2e::fleet::start_sim;
use sluice_e2e::metrics::sum;
use sluice_e2e::net::{port_is_free, wait_ready};
use sluice_e2e::{MODEL, Proc, STARTUP, SseStream, TempDir, bins};

use crate::shapes::{assert_completion, assert_stream, chat_request};

/// Exactly as the issue writes it.
pub const ACCEPTANCE_TOML: &str = r#"[server]
listen = "127.0.0.1:18080"
admin_listen = "127.0.0.1:19090"

[[pools]]
name = "llama"
models = ["llama-3-8b"]
endpoints = ["http://127.0.0.1:18001", "http://127.0.0.1:18002"]

[[tenants]]
name = "acme"
api_keys = ["sk-acme-0123456789"]
"#;

const KEY: &str = "sk-acme-0123456789";
const API: &str = "http://127.0.0.1:18080";
const ADMIN: &str = "http://127.0.0.1:19090";

#[tokio::test]
async fn acceptance_contract_on_the_issues_fixed_ports() {
    let busy: Vec<u16> = [18080, 19090, 18001, 18002].into_iter().filter(|p| !port_is_free(*p)).collect();
    assert!(
        busy.is_empty(),
        "the acceptance test needs the issue's fixed ports 127.0.0.1:18080, 19090, 18001 and 18002, \
         but {busy:?} are in use (a `sluice serve` or `sluice-sim` left running?); free them and rerun"
    );
    let dir = TempDir::new("acceptance");
    let _sim1 = start_sim(&dir, "sim-18001", Some(SocketAddr::from(([127, 0, 0, 1], 18001))), &[]).await;
    let _sim2 = start_sim(&dir, "sim-18002", Some(SocketAddr::from(([127, 0, 0, 1], 18002))), &[]).await;
    let config = dir.write("sluice.toml", ACCEPTANCE_TOML);
    let mut cmd = bins::sluice();
    cmd.arg("serve").arg("--config").arg(&config).arg("--data-dir").arg(dir.path().join("data"));
    let mut sluice = Proc::spawn("sluice", cmd, dir.path());
    if let Err(e) = wait_ready(&mut sluice, &format!("{ADMIN}/healthz"), STARTUP).await {
        panic!("sluice serve did not become ready: {e:?}\n{}", sluice.diagnostics());
    }
    let fail = |what: &str, sluice: &Proc| format!("{what}\n{}", sluice.diagnostics());

    // Non-streaming.
    let reply = post(&format!("{API}/v1/chat/completions"), Some(KEY), &chat_request(false, 16)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", fail(&reply.text(), &sluice));
    assert!(reply.content_type().starts_with("application/json"), "{:?}", reply.headers);
    assert!(reply.headers.contains_key("x-request-id"), "every response carries x-request-id: {:?}", reply.headers);
    let completion = reply.json();
    assert_completion(&completion, 16);

    // Streaming, without asking for usage: the gateway asks the worker for it (to count
    // tokens) and must not pass the extra chunk on. The simulated workers' output is a pure
    // function of seed and prompt, so the streamed text equals the non-streamed one.
    let mut stream = SseStream::open(&format!("{API}/v1/chat/completions"), Some(KEY), &chat_request(true, 16)).await;
    assert_eq!(stream.status, StatusCode::OK, "{}", fail("streaming request refused", &sluice));
    assert!(stream.content_type().starts_with("text/event-stream"), "{:?}", stream.headers);
    let summary = assert_stream(&stream.rest().await);
    assert_eq!(summary.content_chunks, 16, "max_tokens 16 → 16 content chunks");
    assert!(summary.usage.is_none(), "usage was not asked for, yet a usage chunk arrived");
    assert_eq!(summary.text, completion["choices"][0]["message"]["content"].as_str().unwrap_or_default());

    // Streaming with usage asked for: it arrives, and agrees with the content.
    let mut body = chat_request(true, 5);
    body["stream_options"] = json!({"include_usage": true});
    let mut stream = SseStream::open(&format!("{API}/v1/chat/completions"), Some(KEY), &body).await;
    assert_eq!(stream.status, StatusCode::OK);
    let summary = assert_stream(&stream.rest().await);
    let usage = summary.usage.expect("include_usage → a usage chunk");
    assert_eq!(usage["completion_tokens"], 5, "{usage}");

    // /v1/models
    let reply = get(&format!("{API}/v1/models"), Some(KEY)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let models = reply.json();
    assert_eq!(models["object"], "list", "{models}");
    let ids: Vec<&str> = models["data"].as_array().into_iter().flatten().filter_map(|m| m["id"].as_str()).collect();
    assert_eq!(ids, [MODEL], "{models}");

    // 401: no key, and a wrong key. OpenAI-shaped errors.
    for (bearer, code) in [(None, "missing_api_key"), (Some("sk-acme-wrong-key-000"), "invalid_api_key")] {
        let reply = post(&format!("{API}/v1/chat/completions"), bearer, &chat_request(false, 4)).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.text());
        let error = reply.json();
        assert_eq!(error["error"]["code"], code, "{error}");
        assert!(error["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{error}");
        assert!(!reply.text().contains("sk-acme-wrong"), "an error must not echo the key: {}", reply.text());
    }
    let reply = get(&format!("{API}/v1/models"), None).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "/v1/models needs a key too: {}", reply.text());

    // /metrics on the admin port (and not on the data port).
    let reply = get(&format!("{ADMIN}/metrics"), None).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.content_type().starts_with("text/plain"), "{:?}", reply.headers);
    let text = reply.text();
    let ok = [("tenant", "acme"), ("model", MODEL), ("outcome", "ok")];
    assert_eq!(sum(&text, "sluice_requests_total", &ok), Some(3.0), "three completions succeeded:\n{text}");
    assert!(
        sum(&text, "sluice_requests_total", &[("outcome", "client_error")]).is_some_and(|n| n >= 2.0),
        "the 401s are counted as client errors:\n{text}"
    );
    assert_eq!(
        sum(&text, "sluice_tokens_total", &[("tenant", "acme"), ("type", "completion")]),
        Some(16.0 + 16.0 + 5.0),
        "completion tokens are counted, streamed ones included even when usage was stripped:\n{text}"
    );
    assert_eq!(
        sum(&text, "gen_ai_server_time_to_first_token_seconds_count", &[("tenant", "acme")]),
        Some(2.0),
        "both streams have a TTFT:\n{text}"
    );
    assert_eq!(sum(&text, "sluice_endpoint_healthy", &[("pool", "llama")]), Some(2.0), "{text}");
    assert_eq!(sum(&text, "sluice_requests_in_flight", &[]), Some(0.0), "{text}");
    let reply = get(&format!("{API}/metrics"), None).await;
    assert_ne!(reply.status, StatusCode::OK, "metrics must not be served on the public data port");

    assert!(sluice.exited().is_none(), "{}", fail("sluice exited during the test", &sluice));
}
