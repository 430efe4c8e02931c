//! `tenant-tagger`: adds a header naming the tenant's tag (a tier, a cost centre, a priority) to
//! the request sent to the worker, so the engine or whatever sits behind it can schedule, log or
//! bill by it.
//!
//! The tag comes from the binding's config: the tenant's entry in `tags`, else `default`;
//! a tenant with neither is sent untagged.
//!
//! Binding config:
//!
//! ```json
//! {"header": "x-tenant-tier", "tags": {"acme": "gold", "initech": "silver"}, "default": "bronze"}
//! ```

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::Deserialize;
#[cfg(target_arch = "wasm32")]
use sluice_sdk::export_plugin;
use sluice_sdk::types::{Body, Denial, Header, Headers, RequestChanges, RequestDecision, RequestInfo};
use sluice_sdk::{Plugin, config};

/// The binding's config.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The header the worker receives.
    #[serde(default = "default_header")]
    pub header: String,
    /// Tenant name → tag.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// The tag of tenants not in `tags`.
    pub default: Option<String>,
}

fn default_header() -> String {
    "x-tenant-tag".to_owned()
}

impl Config {
    pub fn from_json(json: &str) -> Result<Config, String> {
        let invalid = |reason: String| format!("tenant-tagger: invalid binding config: {reason}");
        let config: Config = serde_json::from_str(json).map_err(|e| invalid(e.to_string()))?;
        // The gateway drops headers it cannot send; refuse them here so the mistake is seen.
        let header_ok = !config.header.is_empty()
            && config.header.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !header_ok {
            return Err(invalid(format!("header {:?} must be lower-case letters, digits and '-'", config.header)));
        }
        let value_ok = |v: &String| v.bytes().all(|b| b.is_ascii_graphic() || b == b' ');
        if let Some(bad) = config.tags.values().chain(&config.default).find(|v| !value_ok(v)) {
            return Err(invalid(format!("tag {bad:?} must be printable ASCII")));
        }
        Ok(config)
    }

    /// The tenant's tag, if it has one.
    pub fn tag(&self, tenant: &str) -> Option<&str> {
        self.tags.get(tenant).or(self.default.as_ref()).map(String::as_str)
    }

    /// The decision, separate from the bindings so it can be tested natively.
    pub fn decide(&self, tenant: &str) -> RequestDecision {
        let Some(tag) = self.tag(tenant) else { return RequestDecision::Continue };
        RequestDecision::ContinueWith(RequestChanges {
            set_headers: vec![Header { name: self.header.clone(), value: tag.to_owned() }],
            remove_headers: Vec::new(),
            model: None,
            body: None,
        })
    }
}

/// Parsed once per instance: an instance serves one binding, whose config does not change.
fn binding_config() -> &'static Result<Config, String> {
    static CONFIG: OnceLock<Result<Config, String>> = OnceLock::new();
    CONFIG.get_or_init(|| Config::from_json(&config::binding()))
}

pub struct TenantTagger;

impl Plugin for TenantTagger {
    fn on_request(request: RequestInfo, _headers: &Headers, _body: &Body) -> RequestDecision {
        match binding_config() {
            Ok(config) => config.decide(&request.tenant),
            Err(reason) => RequestDecision::Deny(Denial { status: 500, message: reason.clone() }),
        }
    }
}

#[cfg(target_arch = "wasm32")]
export_plugin!(TenantTagger => [on_request]);

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic, reason = "tests fail loudly")]
mod tests {
    use super::*;

    fn header(decision: RequestDecision) -> Option<(String, String)> {
        match decision {
            RequestDecision::ContinueWith(changes) => changes.set_headers.into_iter().next().map(|h| (h.name, h.value)),
            _ => None,
        }
    }

    #[test]
    fn known_tenants_get_their_tag_others_the_default() {
        let config =
            Config::from_json(r#"{"header": "x-tier", "tags": {"acme": "gold"}, "default": "bronze"}"#).unwrap();
        assert_eq!(header(config.decide("acme")), Some(("x-tier".into(), "gold".into())));
        assert_eq!(header(config.decide("someone")), Some(("x-tier".into(), "bronze".into())));
    }

    #[test]
    fn without_a_default_unknown_tenants_go_untagged() {
        let config = Config::from_json(r#"{"tags": {"acme": "gold"}}"#).unwrap();
        assert_eq!(config.header, "x-tenant-tag");
        assert_eq!(config.decide("other"), RequestDecision::Continue);
    }

    #[test]
    fn headers_and_tags_the_gateway_could_not_send_are_refused() {
        let e = Config::from_json(r#"{"header": "X Tier"}"#).unwrap_err();
        assert!(e.contains("lower-case"), "{e}");
        let e = Config::from_json(r#"{"tags": {"a": "line\nbreak"}}"#).unwrap_err();
        assert!(e.contains("printable"), "{e}");
        let e = Config::from_json(r#"{"tag": {}}"#).unwrap_err();
        assert!(e.contains("unknown field"), "{e}");
    }
}
