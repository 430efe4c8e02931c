//! Components built against the frozen `sluice:policy@0.1.0` run beside current ones: their
//! capabilities reach the same state, and their hooks get what 0.1.0 defines.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests fail loudly")]

mod common;

use std::sync::Arc;

use common::*;
use sluice_plugin_host::types::{Api, Health};
use sluice_plugin_host::{
    BindingSpec, Capabilities, Capability, Contract, PluginSource, PluginVersion, RequestVerdict,
};

/// The 0.1.0 fixture guest (`plugins/test-v0-1-guest`) granted `log`, `counters` and `config`.
fn old_guest(name: &str) -> BindingSpec {
    BindingSpec {
        capabilities: [Capability::Log, Capability::Counters, Capability::Config].into_iter().collect(),
        config_json: r#"{"from":"config"}"#.into(),
        ..BindingSpec::new(name, PluginSource::Bytes(Arc::from(sluice_plugin_host::testing::TEST_V0_1_GUEST)))
    }
}

/// What the fixture denies with when the request has header `ask`.
async fn asked(host: &sluice_plugin_host::PluginHost, ask: &str, api: Api) -> String {
    let mut v = view("acme");
    v.info.api = api;
    let mut headers = (*v.headers).clone();
    headers.insert(http::HeaderName::from_bytes(ask.as_bytes()).unwrap(), "1".parse().unwrap());
    v.headers = Arc::new(headers);
    match host.chain().on_request(&mut v).await.unwrap() {
        RequestVerdict::Deny { denial, .. } => {
            assert_eq!(denial.status, 418);
            denial.message
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn each_component_is_loaded_as_the_contract_it_was_built_against() {
    let host = host();
    let contract = |bytes: &[u8]| {
        let cache = Default::default();
        PluginVersion::load(host.engine(), &cache, "p", bytes, Capabilities::all(), &[]).unwrap().contract
    };
    assert_eq!(contract(sluice_plugin_host::testing::TEST_V0_1_GUEST), Contract::V0_1);
    assert_eq!(contract(sluice_plugin_host::testing::TEST_GUEST), Contract::CURRENT);
}

#[tokio::test]
async fn a_0_1_component_sees_the_agents_apis_as_chat_completions() {
    let host = host();
    host.load_and_activate(old_guest("old")).unwrap();
    assert_eq!(asked(&host, "x-v01-api", Api::Messages).await, "api=chat-completions");
    assert_eq!(asked(&host, "x-v01-api", Api::Responses).await, "api=chat-completions");
    assert_eq!(asked(&host, "x-v01-api", Api::Completions).await, "api=completions");
    assert_eq!(asked(&host, "x-v01-api", Api::Embeddings).await, "api=embeddings");
}

#[tokio::test]
async fn a_current_component_sees_the_agents_apis_as_themselves() {
    let host = host();
    host.load_and_activate(guest("new", "headers", "a")).unwrap();
    for (api, name) in
        [(Api::Messages, "messages"), (Api::Responses, "responses"), (Api::ChatCompletions, "chat-completions")]
    {
        let mut v = view("acme");
        v.info.api = api;
        let RequestVerdict::Continue(edits) = host.chain().on_request(&mut v).await.unwrap() else {
            panic!("the guest continues in mode headers")
        };
        let seen = edits.set_headers.iter().find(|(n, _)| n == "x-api").map(|(_, v)| v.to_str().unwrap().to_owned());
        assert_eq!(seen.as_deref(), Some(name));
    }
}

#[tokio::test]
async fn a_0_1_component_reaches_the_current_capabilities() {
    let host = host();
    host.load_and_activate(old_guest("old")).unwrap();
    // Its binding's config, through 0.1.0's `config`.
    assert_eq!(asked(&host, "x-v01-config", Api::ChatCompletions).await, r#"config={"from":"config"}"#);
    // Its counters, through 0.1.0's `counters`, are the host's, in the plugin's namespace:
    // three calls so far, each reserving one.
    assert_eq!(asked(&host, "x-v01-count", Api::ChatCompletions).await, "count=2");
    assert_eq!(counter(&host, "old", "seen"), 2);
    let mut v = view("acme");
    assert!(matches!(host.chain().on_request(&mut v).await.unwrap(), RequestVerdict::Continue(_)));
    assert_eq!(counter(&host, "old", "seen"), 3);
}

#[tokio::test]
async fn a_0_1_router_chooses_among_candidates_without_the_new_fields() {
    let host = host();
    host.load_and_activate(old_guest("old")).unwrap();
    let candidates =
        [candidate(3, 0, Health::Healthy), candidate(9, 4, Health::Healthy), candidate(5, 1, Health::Healthy)];
    let mut request = route_request();
    request.api = Api::Messages;
    request.session = Some("s-1".into());
    assert_eq!(host.chain().route("acme", &request, &candidates).await.unwrap(), Some(9));
    assert_eq!(host.chain().route("acme", &request, &[]).await.unwrap(), None);
}

#[tokio::test]
async fn a_0_1_component_is_refused_a_capability_its_binding_lacks_by_its_own_name() {
    let host = host();
    let mut spec = old_guest("old");
    spec.capabilities = [Capability::Log, Capability::Config].into_iter().collect();
    let e = host.load_and_activate(spec).unwrap_err().to_string();
    assert!(e.contains("sluice:policy/counters@0.1.0"), "{e}");
}
