//! The built-in `cache` plugin through the real host: what it asks of the response cache for
//! each kind of request, with the grants a built-in gets by default.

#![allow(clippy::unwrap_used, clippy::panic, reason = "tests fail loudly")]

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use sluice_plugin_host::{
    BindingSpec, BodyResource, BypassReason, CacheIntent, CacheSlot, PluginHost, PluginSource, RequestVerdict,
};

fn host(config: &str) -> PluginHost {
    let host = common::host();
    let spec = BindingSpec {
        capabilities: sluice_plugin_host::builtin::capabilities("cache"),
        config_json: config.to_owned(),
        ..BindingSpec::new("cache", PluginSource::Builtin("cache".to_owned()))
    };
    host.load_and_activate(spec).unwrap();
    host
}

async fn intent(
    host: &PluginHost,
    temperature: Option<f32>,
    headers: &[(&str, &str)],
    body: &str,
) -> Option<CacheIntent> {
    let mut view = common::view("acme");
    view.info.summary.temperature = temperature;
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        map.insert(http::HeaderName::from_bytes(name.as_bytes()).unwrap(), value.parse().unwrap());
    }
    view.headers = Arc::new(map);
    view.body = BodyResource::new(Bytes::from(body.to_owned()));
    view.cache = Some(CacheSlot::new());
    let verdict = host.chain().on_request(&mut view).await.unwrap();
    assert!(matches!(verdict, RequestVerdict::Continue(_)));
    view.cache.unwrap().take()
}

const CHAT: &str = r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":0}"#;

#[tokio::test]
async fn the_cache_plugin_asks_for_deterministic_requests_and_bypasses_the_rest() {
    let host = host("");
    let Some(CacheIntent::Use(wanted)) = intent(&host, Some(0.0), &[], CHAT).await else { panic!("expected use") };
    assert_eq!(wanted.ttl, Duration::from_secs(3600));
    assert_eq!(wanted.ignore_fields, ["user"]);
    assert!(!wanted.store_only);
    assert_eq!(&*wanted.plugin, "cache");

    let bypass = |reason| Some(CacheIntent::Bypass { plugin: Arc::from("cache"), reason });
    assert_eq!(intent(&host, Some(0.7), &[], CHAT).await, bypass(BypassReason::NotDeterministic));
    let tools = r#"{"model":"m","messages":[],"tools":[{"type":"function"}]}"#;
    assert_eq!(intent(&host, Some(0.0), &[], tools).await, bypass(BypassReason::Tools));
    assert_eq!(intent(&host, Some(0.0), &[("x-sluice-cache", "no-store")], CHAT).await, bypass(BypassReason::OptedOut));
    let Some(CacheIntent::Use(fresh)) = intent(&host, Some(0.0), &[("cache-control", "no-cache")], CHAT).await else {
        panic!("expected use")
    };
    assert!(fresh.store_only);
    let seeded = r#"{"model":"m","messages":[],"seed":3}"#;
    assert!(matches!(intent(&host, Some(0.9), &[], seeded).await, Some(CacheIntent::Use(_))));
}

#[tokio::test]
async fn the_binding_config_shapes_the_request() {
    let host = host(r#"{"ttl_seconds":5,"ignore_fields":[],"key_headers":["x-prompt-version"],"cache_sampled":true}"#);
    let Some(CacheIntent::Use(wanted)) = intent(&host, Some(0.7), &[("x-prompt-version", "7")], CHAT).await else {
        panic!("expected use")
    };
    assert_eq!(wanted.ttl, Duration::from_secs(5));
    assert!(wanted.ignore_fields.is_empty());
    assert_eq!(wanted.extra_key, "x-prompt-version=7\n");
}
