//! A plugin for the host's tests. It exports every hook and uses every capability; what it does
//! is chosen by its binding's config, `{"mode": "...", "tag": "..."}`:
//!
//! - on-request: `continue` (default), `deny`, `respond`, `rewrite` (header `x-plugin-tag`,
//!   model from `"model"`), `headers` (echoes header `x-echo`, the body's length and prompt,
//!   and the request's API in `x-api`),
//!   `capabilities` (clock, counters, cache, metrics, config, log), `state` (counts the calls
//!   this instance served), `loop` (never returns), `grow` (allocates past any sane limit),
//!   `trap`, and the hostile ones: `huge-body` (a rewritten body of `"size"` bytes, default
//!   4 MiB), `huge-header` (a 1 MiB header for the worker), `huge-response` (a local response
//!   with a 1 MiB header), `stack` (recursion until the stack overflows), `hammer` (host calls
//!   in a loop: counters on fresh keys, cache puts, log lines, until the deadline), `state-write`
//!   (puts `"value"` in the cache under `"key"` and reserves all of counter `"key"` with a limit
//!   of 1, in state scope `"scope"`: `binding` or `tenant`) and `state-read` (reads them back
//!   into `x-read` and `x-counter`).
//! - `"trap": "headers"` or `"done"` traps in on-response-headers or on-response-done.
//! - route: the last candidate, or abstain in mode `abstain`.
//! - on-response-headers: sets `x-plugin-tag` to the tag.
//! - on-response-chunk, chosen by `"chunk"`: forward (default), `redact` (replaces every
//!   `"word"` with `***`), `drop-odd` (drops the events with an odd index), `trap` (traps from
//!   the second event on, or on a whole body), `loop`. Every call counts
//!   `chunk:<stream>:<index>` in the host counters.
//! - on-response-done: counts `done:<tag>` in the host counters.

use std::sync::atomic::{AtomicU64, Ordering};

use sluice_sdk::types::{
    Api, Body, Candidate, ChunkDecision, Header, Headers, LocalResponse, RequestChanges, RequestDecision, RequestInfo,
    ResponseChanges, ResponseChunk, ResponseDone, RouteDecision, RouteRequest, StateScope,
};
use sluice_sdk::{Plugin, cache, clock, config, counters, export_plugin, log, metrics};

struct TestGuest;

/// The `"scope"` setting as a state scope (`binding` unless `tenant`).
fn state_scope() -> StateScope {
    if setting("scope").as_deref() == Some("tenant") { StateScope::Tenant } else { StateScope::Binding }
}

/// Recurses until the stack overflows; the frame's array keeps it from being optimised away.
#[inline(never)]
#[expect(unconditional_recursion, reason = "overflowing the stack is what mode `stack` tests")]
fn recurse(depth: u64) -> u64 {
    let frame = [depth; 64];
    std::hint::black_box(&frame);
    recurse(depth + 1) + frame[(depth % 64) as usize]
}

static CALLS: AtomicU64 = AtomicU64::new(0);

/// The string value of `key` in the binding's flat JSON config.
fn setting(key: &str) -> Option<String> {
    let config = config::binding();
    let needle = format!("\"{key}\":\"");
    let start = config.find(&needle)? + needle.len();
    let end = config[start..].find('"')? + start;
    Some(config[start..end].to_owned())
}

fn header(name: &str, value: impl Into<String>) -> Header {
    Header { name: name.to_owned(), value: value.into() }
}

/// The WIT case name of an `api` value.
fn api_name(api: Api) -> &'static str {
    match api {
        Api::ChatCompletions => "chat-completions",
        Api::Completions => "completions",
        Api::Embeddings => "embeddings",
        Api::Responses => "responses",
        Api::Messages => "messages",
    }
}

fn with_headers(set_headers: Vec<Header>) -> RequestDecision {
    RequestDecision::ContinueWith(RequestChanges { set_headers, remove_headers: Vec::new(), model: None, body: None })
}

impl Plugin for TestGuest {
    fn on_request(request: RequestInfo, headers: &Headers, body: &Body) -> RequestDecision {
        let calls = CALLS.fetch_add(1, Ordering::Relaxed) + 1;
        match setting("mode").as_deref() {
            Some("deny") => RequestDecision::Deny(sluice_sdk::types::Denial {
                status: 403,
                message: format!("denied by test guest for tenant {}", request.tenant),
            }),
            Some("respond") => RequestDecision::Respond(LocalResponse {
                status: 200,
                headers: vec![header("content-type", "application/json")],
                body: br#"{"answered_by":"test-guest"}"#.to_vec(),
            }),
            Some("rewrite") => RequestDecision::ContinueWith(RequestChanges {
                set_headers: vec![header("x-plugin-tag", setting("tag").unwrap_or_default())],
                remove_headers: vec!["x-remove-me".to_owned()],
                model: setting("model"),
                body: None,
            }),
            Some("headers") => with_headers(vec![
                header("x-echoed", headers.get("x-echo").unwrap_or_default()),
                header("x-echo-all", headers.get_all("x-echo").join(",")),
                header("x-header-count", headers.names().len().to_string()),
                header("x-body-len", body.len().to_string()),
                header("x-body-head", String::from_utf8_lossy(&body.read(0, 8)).into_owned()),
                header("x-prompt", body.prompt_text()),
                header("x-summary", format!("{}:{}", request.summary.message_count, request.summary.stream)),
                header("x-api", api_name(request.api).to_owned()),
            ]),
            Some("capabilities") => {
                log::info("capabilities called");
                let now = clock::monotonic_now();
                let r = counters::reserve(&format!("cap:{}", request.tenant), 3, 10, 60_000);
                counters::settle(r.id, 2);
                let hit = cache::get("cap-key").is_some();
                cache::put("cap-key", b"v", 60_000);
                metrics::counter_add("calls", "capabilities", 1);
                metrics::histogram_observe("size", "capabilities", 2.5);
                with_headers(vec![
                    header("x-clock-nonzero", (now > 0).to_string()),
                    header("x-granted", r.granted.to_string()),
                    header("x-counter", counters::get(&format!("cap:{}", request.tenant)).to_string()),
                    header("x-cache-hit", hit.to_string()),
                    header("x-tenant-known", config::tenant(&request.tenant).is_some().to_string()),
                ])
            }
            Some("state") => with_headers(vec![header("x-calls", calls.to_string())]),
            Some("loop") => loop {
                std::hint::spin_loop();
            },
            Some("grow") => {
                let big = vec![7u8; 256 << 20];
                with_headers(vec![header("x-big", big.iter().map(|&b| u64::from(b)).sum::<u64>().to_string())])
            }
            Some("trap") => core::arch::wasm32::unreachable(),
            Some("huge-body") => {
                let size = setting("size").and_then(|s| s.parse().ok()).unwrap_or(4 << 20);
                let mut body = br#"{"model":"llama-3-8b","messages":[{"role":"user","content":""#.to_vec();
                body.resize(size, b'a');
                body.extend_from_slice(br#""}]}"#);
                RequestDecision::ContinueWith(RequestChanges {
                    set_headers: Vec::new(),
                    remove_headers: Vec::new(),
                    model: None,
                    body: Some(body),
                })
            }
            Some("huge-header") => with_headers(vec![header("x-huge", "h".repeat(1 << 20))]),
            Some("huge-response") => RequestDecision::Respond(LocalResponse {
                status: 200,
                headers: vec![header("x-huge", "h".repeat(1 << 20))],
                body: b"{}".to_vec(),
            }),
            Some("stack") => with_headers(vec![header("x-depth", recurse(0).to_string())]),
            Some("hammer") => {
                let mut i = 0u64;
                loop {
                    i += 1;
                    counters::reserve(&format!("hammer:{i}"), 1, 1, 60_000);
                    cache::put(&format!("hammer:{i}"), &[0; 4096], 60_000);
                    log::info("hammering");
                }
            }
            Some("state-write") => {
                let (scope, key) = (state_scope(), setting("key").unwrap_or_default());
                cache::put_scoped(scope, &key, setting("value").unwrap_or_default().as_bytes(), 60_000);
                let r = counters::reserve_scoped(scope, &key, 1, 1, 60_000);
                with_headers(vec![header("x-granted", r.granted.to_string())])
            }
            Some("state-read") => {
                let (scope, key) = (state_scope(), setting("key").unwrap_or_default());
                let read = cache::get_scoped(scope, &key).map(|v| String::from_utf8_lossy(&v).into_owned());
                with_headers(vec![
                    header("x-read", read.unwrap_or_else(|| "none".to_owned())),
                    header("x-counter", counters::get_scoped(scope, &key).to_string()),
                    header("x-other-tenant", config::tenant("acme").is_some().to_string()),
                ])
            }
            _ => RequestDecision::Continue,
        }
    }

    fn route(_request: RouteRequest, candidates: Vec<Candidate>) -> RouteDecision {
        match setting("mode").as_deref() {
            Some("abstain") => RouteDecision::Abstain,
            Some("trap") => core::arch::wasm32::unreachable(),
            _ => candidates.last().map_or(RouteDecision::Abstain, |c| RouteDecision::Route(c.id)),
        }
    }

    fn on_response_headers(_request: RequestInfo, status: u16, _headers: &Headers) -> ResponseChanges {
        if setting("trap").as_deref() == Some("headers") {
            core::arch::wasm32::unreachable();
        }
        ResponseChanges {
            set_headers: vec![
                header("x-plugin-tag", setting("tag").unwrap_or_default()),
                header("x-seen-status", status.to_string()),
            ],
            remove_headers: Vec::new(),
        }
    }

    fn on_response_chunk(_request: RequestInfo, chunk: ResponseChunk) -> ChunkDecision {
        counters::reserve(&format!("chunk:{}:{}", chunk.stream, chunk.index), 1, u64::MAX, 3_600_000);
        match setting("chunk").as_deref() {
            Some("redact") => match setting("word") {
                Some(word) if chunk.data.contains(&word) => ChunkDecision::Replace(chunk.data.replace(&word, "***")),
                _ => ChunkDecision::Forward,
            },
            Some("drop-odd") if chunk.index % 2 == 1 => ChunkDecision::Drop,
            Some("trap") if chunk.index >= 1 || !chunk.stream => core::arch::wasm32::unreachable(),
            Some("loop") => loop {
                std::hint::spin_loop();
            },
            _ => ChunkDecision::Forward,
        }
    }

    fn on_response_done(_request: RequestInfo, done: ResponseDone) {
        if setting("trap").as_deref() == Some("done") {
            core::arch::wasm32::unreachable();
        }
        let tag = setting("tag").unwrap_or_default();
        counters::reserve(&format!("done:{tag}"), 1, u64::MAX, 3_600_000);
        counters::reserve(&format!("done-status:{}", done.status), 1, u64::MAX, 3_600_000);
    }
}

export_plugin!(TestGuest => [on_request, route, on_response_headers, on_response_chunk, on_response_done]);
