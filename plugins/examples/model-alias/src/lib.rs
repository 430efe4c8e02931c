//! `model-alias`: clients ask for a stable alias (`fast`, `smart`), the operator decides which
//! model serves it, and can change that without touching a client.
//!
//! The alias is the value of a request header (`x-model-alias` unless configured otherwise) or,
//! without that header, the model the client asked for. A known alias rewrites the model; an
//! unknown alias named in the header is refused with 400; a model that is no alias passes as is.
//!
//! Binding config:
//!
//! ```json
//! {"aliases": {"fast": "llama-3.1-8b-instruct", "smart": "llama-3.1-70b-instruct"}, "header": "x-model-alias"}
//! ```

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::Deserialize;
#[cfg(target_arch = "wasm32")]
use sluice_sdk::export_plugin;
use sluice_sdk::types::{Body, Denial, Headers, RequestChanges, RequestDecision, RequestInfo};
use sluice_sdk::{Plugin, config};

/// The binding's config.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Alias → the model that serves it.
    pub aliases: BTreeMap<String, String>,
    /// The request header that names an alias.
    #[serde(default = "default_header")]
    pub header: String,
}

fn default_header() -> String {
    "x-model-alias".to_owned()
}

impl Config {
    pub fn from_json(json: &str) -> Result<Config, String> {
        serde_json::from_str(json).map_err(|e| format!("model-alias: invalid binding config: {e}"))
    }
}

/// The decision, separate from the bindings so it can be tested natively. `header` is the
/// value of the alias header, if the request has one.
pub fn decide(config: &Config, header: Option<&str>, requested_model: &str) -> RequestDecision {
    let alias = header.map(str::trim).unwrap_or(requested_model);
    match config.aliases.get(alias) {
        Some(model) if model == requested_model => RequestDecision::Continue,
        Some(model) => RequestDecision::ContinueWith(RequestChanges {
            set_headers: Vec::new(),
            remove_headers: Vec::new(),
            model: Some(model.clone()),
            body: None,
        }),
        // The client explicitly asked for an alias that does not exist: say so rather than
        // silently serving the model in the body.
        None if header.is_some() => {
            let known: Vec<&str> = config.aliases.keys().map(String::as_str).collect();
            RequestDecision::Deny(Denial {
                status: 400,
                message: format!(
                    "unknown model alias {alias:?} in {}; known aliases: {}",
                    config.header,
                    known.join(", ")
                ),
            })
        }
        None => RequestDecision::Continue,
    }
}

/// The config is the same for every call an instance serves (an instance belongs to one
/// binding), so it is parsed once per instance.
fn binding_config() -> &'static Result<Config, String> {
    static CONFIG: OnceLock<Result<Config, String>> = OnceLock::new();
    CONFIG.get_or_init(|| Config::from_json(&config::binding()))
}

pub struct ModelAlias;

impl Plugin for ModelAlias {
    fn on_request(request: RequestInfo, headers: &Headers, _body: &Body) -> RequestDecision {
        match binding_config() {
            Ok(config) => decide(config, headers.get(&config.header).as_deref(), &request.model),
            Err(reason) => RequestDecision::Deny(Denial { status: 500, message: reason.clone() }),
        }
    }
}

#[cfg(target_arch = "wasm32")]
export_plugin!(ModelAlias => [on_request]);

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic, reason = "tests fail loudly")]
mod tests {
    use super::*;

    fn config() -> Config {
        Config::from_json(r#"{"aliases": {"fast": "small-8b", "smart": "large-70b"}}"#).unwrap()
    }

    fn model(decision: RequestDecision) -> Option<String> {
        match decision {
            RequestDecision::ContinueWith(changes) => changes.model,
            _ => None,
        }
    }

    #[test]
    fn the_header_names_the_alias() {
        assert_eq!(model(decide(&config(), Some("fast"), "whatever")).as_deref(), Some("small-8b"));
        assert_eq!(model(decide(&config(), Some(" smart "), "small-8b")).as_deref(), Some("large-70b"));
    }

    #[test]
    fn without_the_header_the_model_field_may_be_an_alias() {
        assert_eq!(model(decide(&config(), None, "smart")).as_deref(), Some("large-70b"));
        assert_eq!(decide(&config(), None, "large-70b"), RequestDecision::Continue);
    }

    #[test]
    fn an_alias_that_already_is_the_model_changes_nothing() {
        assert_eq!(decide(&config(), Some("fast"), "small-8b"), RequestDecision::Continue);
    }

    #[test]
    fn an_unknown_alias_in_the_header_is_refused() {
        let RequestDecision::Deny(denial) = decide(&config(), Some("turbo"), "m") else { panic!("expected deny") };
        assert_eq!(denial.status, 400);
        assert!(denial.message.contains("\"turbo\"") && denial.message.contains("fast, smart"), "{}", denial.message);
    }

    #[test]
    fn config_defaults_and_errors() {
        assert_eq!(config().header, "x-model-alias");
        let custom = Config::from_json(r#"{"aliases": {}, "header": "x-tier"}"#).unwrap();
        assert_eq!(custom.header, "x-tier");
        let e = Config::from_json(r#"{"alias": {}}"#).unwrap_err();
        assert!(e.contains("unknown field `alias`"), "{e}");
    }
}
