//! A plugin for the host's tests of the capabilities backed by I/O (`http`, `embeddings`),
//! which the host serves asynchronously. Kept apart from the test guest so that one stays on the
//! synchronous call path. Its on-request hook does what the binding's config says:
//!
//! - `{"mode": "http", "url": "...", "method": "GET", "timeout_ms": 1000}`: sends the request
//!   and responds locally with `{"status": .., "body": ".."}` or `{"error": ".."}`.
//! - `{"mode": "embed", "model": "..."}`: embeds the request's prompt text and responds locally
//!   with `{"dims": .., "first": ..}` or `{"error": ".."}`.
//!
//! It answers itself (a local response) so that a client of the gateway sees what happened.

use sluice_sdk::http::OutboundRequest;
use sluice_sdk::types::{Body, Header, Headers, LocalResponse, RequestDecision, RequestInfo};
use sluice_sdk::{Plugin, config, embeddings, export_plugin, http};

struct NetGuest;

fn header(name: &str, value: impl Into<String>) -> Header {
    Header { name: name.to_owned(), value: value.into() }
}

fn respond(body: serde_json::Value) -> RequestDecision {
    RequestDecision::Respond(LocalResponse {
        status: 200,
        headers: vec![header("content-type", "application/json")],
        body: body.to_string().into_bytes(),
    })
}

impl Plugin for NetGuest {
    fn on_request(_request: RequestInfo, _headers: &Headers, body: &Body) -> RequestDecision {
        let config: serde_json::Value = serde_json::from_str(&config::binding()).unwrap_or_default();
        let setting = |key: &str| config.get(key).and_then(|v| v.as_str()).unwrap_or_default().to_owned();
        match setting("mode").as_str() {
            "http" => {
                let method = setting("method");
                let request = OutboundRequest {
                    method: if method.is_empty() { "GET".to_owned() } else { method },
                    url: setting("url"),
                    headers: vec![header("x-from", "net-guest")],
                    body: Vec::new(),
                    timeout_ms: config.get("timeout_ms").and_then(|v| v.as_u64()).unwrap_or(1_000) as u32,
                };
                match http::send(&request) {
                    Ok(response) => respond(serde_json::json!({
                        "status": response.status,
                        "body": String::from_utf8_lossy(&response.body),
                    })),
                    Err(error) => respond(serde_json::json!({ "error": error })),
                }
            }
            "embed" => match embeddings::embed(&setting("model"), &body.prompt_text()) {
                Ok(vector) => respond(serde_json::json!({ "dims": vector.len(), "first": vector.first() })),
                Err(error) => respond(serde_json::json!({ "error": error })),
            },
            _ => RequestDecision::Continue,
        }
    }
}

export_plugin!(NetGuest => [on_request]);
