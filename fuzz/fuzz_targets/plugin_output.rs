//! The plugin boundary, host side: what a guest hands back (headers to set or remove, a model,
//! a body, a local response, a replaced chunk) is untrusted. The host's checks must accept only
//! what it can apply without failing: a header the checks pass is a valid header the gateway
//! does not own, a local response's status is a status. And the text the host extracts from a
//! client's body for plugins (`prompt-text`, top-level fields) never panics on any body.

#![no_main]

use http::{HeaderName, HeaderValue, StatusCode};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use sluice_plugin_host::output::OutputLimits;
use sluice_plugin_host::resources::{BodyResource, prompt_text};
use sluice_plugin_host::types::{Header, LocalResponse, RequestChanges, ResponseChanges};

#[derive(Arbitrary, Debug)]
struct GuestOutput {
    set: Vec<(String, String)>,
    remove: Vec<String>,
    model: Option<String>,
    body: Option<Vec<u8>>,
    status: u16,
    local_body: Vec<u8>,
    chunk: String,
    client_body: Vec<u8>,
    field: String,
}

/// Headers the gateway frames or routes by itself; the checks must keep plugins off them.
const GATEWAYS: &[&str] = &["connection", "content-length", "host", "transfer-encoding", "upgrade"];

fn applicable(headers: &[Header]) {
    for h in headers {
        let name = HeaderName::from_bytes(h.name.as_bytes()).expect("an accepted header name is valid");
        assert!(!GATEWAYS.contains(&name.as_str()), "a plugin may not set {name}");
        HeaderValue::from_str(&h.value).expect("an accepted header value is valid");
    }
}

fuzz_target!(|out: GuestOutput| {
    let limits = OutputLimits::default();
    let headers: Vec<Header> = out.set.into_iter().map(|(name, value)| Header { name, value }).collect();
    let changes = RequestChanges {
        set_headers: headers.clone(),
        remove_headers: out.remove.clone(),
        model: out.model,
        body: out.body,
    };
    if limits.request_changes(&changes).is_ok() {
        applicable(&changes.set_headers);
        for name in &changes.remove_headers {
            HeaderName::from_bytes(name.as_bytes()).expect("an accepted header name to remove is valid");
        }
        assert!(changes.model.as_ref().is_none_or(|m| !m.is_empty() && m.len() <= 256));
        assert!(changes.body.as_ref().is_none_or(|b| b.len() <= limits.max_body_bytes));
    }
    let response = ResponseChanges { set_headers: headers.clone(), remove_headers: out.remove };
    if limits.response_changes(&response).is_ok() {
        applicable(&response.set_headers);
    }
    let local = LocalResponse { status: out.status, headers, body: out.local_body };
    if limits.local_response(&local).is_ok() {
        StatusCode::from_u16(local.status).expect("an accepted local response status is a status");
        applicable(&local.headers);
    }
    if OutputLimits::denial_status(out.status).is_ok() {
        assert!(StatusCode::from_u16(out.status).is_ok_and(|s| s.is_client_error() || s.is_server_error()));
    }
    let _ = limits.chunk(&out.chunk);

    let text = prompt_text(&out.client_body);
    let body = BodyResource::new(out.client_body.into());
    assert_eq!(body.prompt_text(), text);
    if let Some(json) = body.field(&out.field) {
        serde_json::from_str::<serde_json::Value>(&json).expect("a field is handed out as JSON text");
    }
});
