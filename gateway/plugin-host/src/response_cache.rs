//! The `response-cache` capability's host side: what the on-request plugins asked of the
//! gateway's response cache for one request. The cache itself (keys, entries, replay, backends)
//! belongs to the embedder; this is only the request's slot and the checks on what a plugin may
//! ask.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::bindings::sluice::policy::response_cache::{CacheRequest, Mode};
use crate::namespace::Namespace;

/// The longest an entry may live.
pub const MAX_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
/// Bounds on what shapes a key, so that a plugin cannot make hashing one request expensive.
const MAX_IGNORED_FIELDS: usize = 64;
const MAX_EXTRA_KEY_BYTES: usize = 4096;
/// The embedding model's name, as long as a model name may be.
const MAX_MODEL_BYTES: usize = 256;

/// Why a request must not use the cache, as the `reason` label of the bypass metric. Plugins
/// name their reasons freely; the host keeps the label to this fixed set so that no plugin can
/// grow the metric's cardinality.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BypassReason {
    NotDeterministic,
    Tools,
    Choices,
    OptedOut,
    Unavailable,
    Other,
}

impl BypassReason {
    pub const ALL: [BypassReason; 6] = [
        BypassReason::NotDeterministic,
        BypassReason::Tools,
        BypassReason::Choices,
        BypassReason::OptedOut,
        BypassReason::Unavailable,
        BypassReason::Other,
    ];

    pub fn parse(reason: &str) -> Self {
        match reason {
            "not-deterministic" => BypassReason::NotDeterministic,
            "tools" => BypassReason::Tools,
            "choices" => BypassReason::Choices,
            "opted-out" => BypassReason::OptedOut,
            "unavailable" => BypassReason::Unavailable,
            _ => BypassReason::Other,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            BypassReason::NotDeterministic => "not-deterministic",
            BypassReason::Tools => "tools",
            BypassReason::Choices => "choices",
            BypassReason::OptedOut => "opted-out",
            BypassReason::Unavailable => "unavailable",
            BypassReason::Other => "other",
        }
    }
}

/// A near-match lookup a plugin asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct SemanticAsk {
    pub embedding_model: String,
    pub threshold: f32,
}

/// A plugin's `use-cache` for a request, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheUse {
    pub plugin: Arc<str>,
    /// The binding's namespace. Entries are kept under it and the request's tenant: the plugin
    /// has no say in whose entries it reaches.
    pub namespace: Namespace,
    /// Never answer from the cache; only store the fresh answer.
    pub store_only: bool,
    /// Top-level body members left out of the key, sorted, without repeats.
    pub ignore_fields: Vec<String>,
    pub extra_key: String,
    pub ttl: Duration,
    pub semantic: Option<SemanticAsk>,
}

impl CacheUse {
    /// Checks a plugin's request; the error is returned to the plugin.
    pub fn new(plugin: Arc<str>, namespace: Namespace, request: CacheRequest) -> Result<Self, String> {
        if request.ttl_ms == 0 || Duration::from_millis(request.ttl_ms) > MAX_TTL {
            return Err(format!("ttl-ms must be between 1 and {}", MAX_TTL.as_millis()));
        }
        if request.ignore_fields.len() > MAX_IGNORED_FIELDS {
            return Err(format!("at most {MAX_IGNORED_FIELDS} ignore-fields"));
        }
        if request.extra_key.len() > MAX_EXTRA_KEY_BYTES {
            return Err(format!("extra-key is longer than {MAX_EXTRA_KEY_BYTES} bytes"));
        }
        let semantic = match request.semantic {
            None => None,
            Some(s) => {
                if !(s.threshold > 0.0 && s.threshold <= 1.0) {
                    return Err("semantic threshold must be above 0 and at most 1".to_owned());
                }
                if s.embedding_model.is_empty() || s.embedding_model.len() > MAX_MODEL_BYTES {
                    return Err(format!("embedding-model must be 1 to {MAX_MODEL_BYTES} bytes"));
                }
                Some(SemanticAsk { embedding_model: s.embedding_model, threshold: s.threshold })
            }
        };
        let mut ignore_fields = request.ignore_fields;
        ignore_fields.sort_unstable();
        ignore_fields.dedup();
        Ok(CacheUse {
            plugin,
            namespace,
            store_only: request.mode == Mode::StoreOnly,
            ignore_fields,
            extra_key: request.extra_key,
            ttl: Duration::from_millis(request.ttl_ms),
            semantic,
        })
    }
}

/// What the plugins asked of the cache for one request; the last call wins.
#[derive(Debug, Clone, PartialEq)]
pub enum CacheIntent {
    Use(CacheUse),
    Bypass { plugin: Arc<str>, reason: BypassReason },
}

/// One request's [`CacheIntent`], written by its on-request plugins and read by the embedder
/// once they ran.
#[derive(Debug, Default)]
pub struct CacheSlot(Mutex<Option<CacheIntent>>);

impl CacheSlot {
    pub fn new() -> Arc<Self> {
        Arc::new(CacheSlot::default())
    }

    pub fn set(&self, intent: CacheIntent) {
        if let Ok(mut slot) = self.0.lock() {
            *slot = Some(intent);
        }
    }

    pub fn take(&self) -> Option<CacheIntent> {
        self.0.lock().ok().and_then(|mut slot| slot.take())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::sluice::policy::response_cache::Semantic;

    fn request(ttl_ms: u64) -> CacheRequest {
        CacheRequest {
            mode: Mode::LookupAndStore,
            ignore_fields: vec!["user".into(), "metadata".into(), "user".into()],
            extra_key: String::new(),
            ttl_ms,
            semantic: None,
        }
    }

    #[test]
    fn a_plugins_request_is_checked_and_normalised() {
        let ns = Namespace::plugin("cache");
        let ok = CacheUse::new(Arc::from("cache"), ns.clone(), request(1_000)).unwrap();
        assert_eq!(ok.ignore_fields, ["metadata", "user"]);
        assert!(!ok.store_only);
        assert!(CacheUse::new(Arc::from("cache"), ns.clone(), request(0)).is_err());
        assert!(CacheUse::new(Arc::from("cache"), ns.clone(), request(u64::MAX)).is_err());
        let nan = CacheRequest {
            semantic: Some(Semantic { embedding_model: "e".into(), threshold: f32::NAN }),
            ..request(1_000)
        };
        assert!(CacheUse::new(Arc::from("cache"), ns, nan).is_err());
    }

    #[test]
    fn bypass_reasons_outside_the_vocabulary_are_other() {
        assert_eq!(BypassReason::parse("tools"), BypassReason::Tools);
        assert_eq!(BypassReason::parse("a-reason-of-my-own").as_str(), "other");
    }
}
