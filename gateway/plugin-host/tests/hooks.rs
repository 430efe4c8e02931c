//! Each hook and capability through the purpose-built guest, and the built-in router.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests fail loudly")]

mod common;

use std::sync::Arc;

use common::*;
use http::HeaderMap;
use sluice_plugin_host::types::{Health, Outcome, ResponseDone, Usage};
use sluice_plugin_host::{BindingSpec, ChunkVerdict, Hook, PluginSource, RequestVerdict};

fn header(edits: &sluice_plugin_host::RequestEdits, name: &str) -> String {
    edits
        .set_headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.to_str().unwrap().to_owned())
        .unwrap_or_else(|| panic!("no header {name} in {edits:?}"))
}

fn continue_edits(verdict: RequestVerdict) -> sluice_plugin_host::RequestEdits {
    match verdict {
        RequestVerdict::Continue(edits) => edits,
        other => panic!("expected continue, got {other:?}"),
    }
}

#[tokio::test]
async fn on_request_continue_deny_respond_rewrite() {
    let host = host();
    host.load_and_activate(guest("g", "continue", "a")).unwrap();
    let edits = continue_edits(host.chain().on_request(&mut view("t")).await.unwrap());
    assert!(edits.is_empty());

    host.load_and_activate(guest("g", "deny", "a")).unwrap();
    match host.chain().on_request(&mut view("acme")).await.unwrap() {
        RequestVerdict::Deny { plugin, denial } => {
            assert_eq!(&*plugin, "g");
            assert_eq!(denial.status, 403);
            assert!(denial.message.contains("acme"));
        }
        other => panic!("{other:?}"),
    }

    host.load_and_activate(guest("g", "respond", "a")).unwrap();
    match host.chain().on_request(&mut view("t")).await.unwrap() {
        RequestVerdict::Respond { response, .. } => {
            assert_eq!(response.status, 200);
            assert_eq!(response.body, br#"{"answered_by":"test-guest"}"#);
        }
        other => panic!("{other:?}"),
    }

    let mut spec = guest("g", "rewrite", "v7");
    spec.config_json = r#"{"mode":"rewrite","tag":"v7","model":"other"}"#.into();
    host.load_and_activate(spec).unwrap();
    let mut v = view("t");
    let edits = continue_edits(host.chain().on_request(&mut v).await.unwrap());
    assert_eq!(header(&edits, "x-plugin-tag"), "v7");
    assert_eq!(edits.model.as_deref(), Some("other"));
    assert_eq!(v.info.model, "other", "later plugins see the new model");
    assert_eq!(v.headers.get("x-plugin-tag").unwrap(), "v7");
}

#[tokio::test]
async fn headers_and_body_are_read_lazily_through_resources() {
    let host = host();
    host.load_and_activate(guest("g", "headers", "a")).unwrap();
    let edits = continue_edits(host.chain().on_request(&mut view("t")).await.unwrap());
    assert_eq!(header(&edits, "x-echoed"), "one");
    assert_eq!(header(&edits, "x-echo-all"), "one,two");
    assert_eq!(header(&edits, "x-header-count"), "1", "the host withholds authorization");
    assert_eq!(header(&edits, "x-body-head"), r#"{"model""#);
    assert_eq!(header(&edits, "x-prompt"), "hello there");
    assert_eq!(header(&edits, "x-summary"), "2:true");
    let len: usize = header(&edits, "x-body-len").parse().unwrap();
    assert!(len > 40);
}

#[tokio::test]
async fn every_capability_works_when_granted() {
    let host = host();
    let mut tenants = std::collections::HashMap::new();
    tenants.insert("t".to_owned(), r#"{"name":"t"}"#.to_owned());
    host.services().set_tenants(tenants);
    host.load_and_activate(guest("g", "capabilities", "a")).unwrap();
    let edits = continue_edits(host.chain().on_request(&mut view("t")).await.unwrap());
    assert_eq!(header(&edits, "x-clock-nonzero"), "true");
    assert_eq!(header(&edits, "x-granted"), "true");
    assert_eq!(header(&edits, "x-counter"), "2", "reserved 3, settled at 2");
    assert_eq!(header(&edits, "x-cache-hit"), "false");
    assert_eq!(header(&edits, "x-tenant-known"), "true");
    let edits = continue_edits(host.chain().on_request(&mut view("t")).await.unwrap());
    assert_eq!(header(&edits, "x-cache-hit"), "true");
    assert_eq!(header(&edits, "x-counter"), "4");
}

#[tokio::test]
async fn route_response_headers_and_done() {
    let host = host();
    host.load_and_activate(guest("g", "continue", "blue")).unwrap();
    let chain = host.chain();
    let candidates = [candidate(3, 0, Health::Healthy), candidate(9, 5, Health::Healthy)];
    assert_eq!(chain.route("acme", &route_request(), &candidates).await.unwrap(), Some(9), "the guest picks the last");

    let mut headers = Arc::new(HeaderMap::new());
    chain.on_response_headers(&info("t"), 201, &mut headers, None).await.unwrap();
    assert_eq!(headers.get("x-plugin-tag").unwrap(), "blue");
    assert_eq!(headers.get("x-seen-status").unwrap(), "201");

    let done = ResponseDone {
        status: 200,
        outcome: Outcome::Ok,
        usage: Some(Usage { prompt_tokens: 1, cached_tokens: 0, completion_tokens: 2 }),
        ttft_ns: Some(1_000),
        tpot_ns: None,
        e2e_ns: 5_000,
        endpoint: Some("w1".into()),
    };
    chain.on_response_done(&info("t"), &done, None).await;
    chain.on_response_done(&info("t"), &done, None).await;
    assert_eq!(counter(&host, "g", "done:blue"), 2);
    assert_eq!(counter(&host, "g", "done-status:200"), 2);
}

#[tokio::test]
async fn builtin_router_without_prefix_signals_picks_least_in_flight_and_abstains_without_candidates() {
    let host = host();
    host.load_and_activate(BindingSpec::builtin_router()).unwrap();
    let chain = host.chain();
    assert!(chain.has(Hook::Route));
    assert!(!chain.has(Hook::OnRequest), "the router exports route only");
    let c = [candidate(0, 4, Health::Healthy), candidate(1, 2, Health::Healthy), candidate(2, 0, Health::Unhealthy)];
    assert_eq!(chain.route("acme", &route_request(), &c).await.unwrap(), Some(1));
    let c = [candidate(5, 1, Health::Healthy), candidate(6, 1, Health::Healthy)];
    assert_eq!(chain.route("acme", &route_request(), &c).await.unwrap(), Some(5), "ties go to the first in host order");
    assert_eq!(chain.route("acme", &route_request(), &[]).await.unwrap(), None);
    assert_eq!(chain.route("acme", &route_request(), &[candidate(0, 0, Health::Unhealthy)]).await.unwrap(), None);
}

#[tokio::test]
async fn a_chain_runs_in_order_and_stops_at_the_first_denial() {
    let host = host();
    let mut first = guest("a-rewrite", "rewrite", "first");
    first.order = 1;
    let mut second = guest("b-deny", "deny", "second");
    second.order = 2;
    let mut third = guest("c-respond", "respond", "third");
    third.order = 3;
    for s in [third, first, second] {
        host.load_and_activate(s).unwrap();
    }
    let chain = host.chain();
    let names: Vec<&str> = chain.bindings().iter().map(|b| &*b.name).collect();
    assert_eq!(names, ["a-rewrite", "b-deny", "c-respond"]);
    match host.chain().on_request(&mut view("t")).await.unwrap() {
        RequestVerdict::Deny { plugin, .. } => assert_eq!(&*plugin, "b-deny"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn reuse_keeps_instance_state_and_per_request_does_not() {
    async fn calls(host: &sluice_plugin_host::PluginHost) -> Vec<String> {
        let mut calls = Vec::new();
        for _ in 0..3 {
            calls.push(header(&continue_edits(host.chain().on_request(&mut view("t")).await.unwrap()), "x-calls"));
        }
        calls
    }
    let host = host();
    host.load_and_activate(per_request(guest("g", "state", "a"))).unwrap();
    assert_eq!(calls(&host).await, ["1", "1", "1"]);
    let mut spec = guest("g", "state", "a");
    spec.isolation = sluice_plugin_host::Isolation::Reuse { max_calls: 2, max_age: std::time::Duration::from_secs(60) };
    host.load_and_activate(spec).unwrap();
    assert_eq!(calls(&host).await, ["1", "2", "1"], "recycled after two calls");
}

#[tokio::test]
async fn source_from_a_file_and_a_missing_file() {
    let dir = std::env::temp_dir().join(format!("sluice-plugin-file-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("router.wasm");
    std::fs::write(&path, sluice_plugin_host::builtin::ROUTER).unwrap();
    let host = host();
    let spec = BindingSpec::new("r", PluginSource::File(path.clone()));
    assert!(host.load(spec).unwrap().exports(Hook::Route));
    let err = host.load(BindingSpec::new("r", PluginSource::File(dir.join("nope.wasm")))).unwrap_err();
    assert_eq!(err.kind(), "io");
    assert!(err.to_string().contains("nope.wasm"));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The test guest bound with `{"chunk": mode, "word": word}`.
fn chunk_guest(name: &str, mode: &str, word: &str) -> BindingSpec {
    let mut spec = guest(name, "continue", "c");
    spec.config_json = format!(r#"{{"chunk":"{mode}","word":"{word}"}}"#);
    spec
}

#[tokio::test]
async fn on_response_chunk_forwards_replaces_and_drops_in_chain_order() {
    let host = host();
    let mut first = chunk_guest("a-redact-secret", "redact", "secret");
    first.order = 1;
    let mut second = chunk_guest("b-drop-odd", "drop-odd", "");
    second.order = 2;
    host.load_and_activate(first).unwrap();
    host.load_and_activate(second).unwrap();
    let chain = host.chain();
    assert!(chain.has(Hook::OnResponseChunk));
    assert!(!chain.waits(Hook::OnResponseChunk));

    let info = info("t");
    let event = r#"{"choices":[{"delta":{"content":"the secret is out"}}]}"#;
    let expected = ChunkVerdict::Replace(r#"{"choices":[{"delta":{"content":"the *** is out"}}]}"#.to_owned());
    assert_eq!(chain.on_response_chunk(&info, true, 0, event).unwrap(), expected);
    assert_eq!(chain.on_response_chunk(&info, true, 2, r#"{"plain":1}"#).unwrap(), ChunkVerdict::Forward);
    assert_eq!(chain.on_response_chunk(&info, true, 1, event).unwrap(), ChunkVerdict::Drop, "odd events dropped");
    // A whole body cannot be dropped: the second plugin's drop counts as forward, and the
    // first one's replacement stands.
    assert_eq!(chain.on_response_chunk(&info, false, 1, event).unwrap(), expected);
    for plugin in ["a-redact-secret", "b-drop-odd"] {
        assert_eq!(counter(&host, plugin, "chunk:true:0"), 1, "{plugin} saw the first event, in its own counters");
        assert_eq!(counter(&host, plugin, "chunk:false:1"), 1);
    }
}
