//! Helpers shared by the host tests.
#![allow(dead_code, clippy::unwrap_used, reason = "helpers shared by test targets; tests fail loudly")]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use sluice_plugin_host::namespace::{Namespace, Owner};
use sluice_plugin_host::types::{
    Api, BodySummary, Candidate, CandidateStats, Health, PrefixOverlap, RequestInfo, RouteRequest,
};
use sluice_plugin_host::{
    BindingSpec, BodyResource, CallLimits, Capabilities, EngineSettings, HostSettings, Isolation, PluginHost,
    PluginSource, RequestView,
};

pub fn settings() -> HostSettings {
    HostSettings {
        engine: EngineSettings { max_instances: 64, max_memory_bytes: 32 << 20, tick: Duration::from_millis(1) },
        cache_dir: None,
        ..HostSettings::default()
    }
}

pub fn host() -> PluginHost {
    PluginHost::new(settings(), &prometheus::Registry::new()).unwrap()
}

/// The value of counter `key` in `plugin`'s own (not per-tenant) state.
pub fn counter(host: &PluginHost, plugin: &str, key: &str) -> u64 {
    let owner = Owner { namespace: Namespace::plugin(plugin), tenant: None };
    host.services().counters.get(&owner, key)
}

/// The test guest with every capability, in `mode`, tagged `tag`.
pub fn guest(name: &str, mode: &str, tag: &str) -> BindingSpec {
    BindingSpec {
        capabilities: Capabilities::all(),
        config_json: format!(r#"{{"mode":"{mode}","tag":"{tag}"}}"#),
        limits: CallLimits { timeout: Duration::from_millis(50), memory_bytes: 8 << 20 },
        ..BindingSpec::new(name, PluginSource::Bytes(Arc::from(sluice_plugin_host::testing::TEST_GUEST)))
    }
}

pub fn per_request(mut spec: BindingSpec) -> BindingSpec {
    spec.isolation = Isolation::PerRequest;
    spec
}

pub fn info(tenant: &str) -> RequestInfo {
    RequestInfo {
        request_id: "req-1".into(),
        tenant: tenant.into(),
        key_id: "k".into(),
        model: "m".into(),
        api: Api::ChatCompletions,
        summary: BodySummary {
            message_count: 2,
            token_estimate: 10,
            stream: true,
            max_tokens: Some(5),
            temperature: None,
            user: None,
        },
    }
}

pub fn view(tenant: &str) -> RequestView {
    let mut headers = HeaderMap::new();
    headers.append("x-echo", "one".parse().unwrap());
    headers.append("x-echo", "two".parse().unwrap());
    headers.insert("authorization", "Bearer secret".parse().unwrap());
    RequestView {
        info: info(tenant),
        headers: Arc::new(headers),
        body: BodyResource::new(Bytes::from_static(
            br#"{"model":"m","messages":[{"role":"user","content":"hello there"}],"stream":true}"#,
        )),
        limits: None,
        cache: None,
    }
}

pub fn candidate(id: u32, in_flight: u32, health: Health) -> Candidate {
    Candidate {
        id,
        stats: CandidateStats { in_flight_requests: in_flight, in_flight_prefill_tokens: 0, metrics: None, health },
        overlap: PrefixOverlap { blocks: 0, tokens: 0 },
    }
}

pub fn route_request() -> RouteRequest {
    RouteRequest {
        tenant: "acme".into(),
        model: "m".into(),
        api: Api::ChatCompletions,
        session: None,
        prompt_tokens: 10,
        block_size: 16,
        block_hashes: vec![],
        max_output_tokens: None,
    }
}
