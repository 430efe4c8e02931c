//! The built-in `cache` plugin: which requests the gateway may answer from its response cache,
//! and what forms their key. The host's `response-cache` capability does the rest — the key's
//! hash in the request's tenant's namespace, lookups, replay as a whole body or a stream, and
//! storing answers that completed — so a plugin author who wants another policy (cache per
//! end user, per prompt version, only for some models) writes only this part.
//!
//! By default a request is cached when it is deterministic (`temperature` 0 or a `seed`), offers
//! no tools and asks for one choice; embeddings always are. `x-sluice-cache: no-store` or
//! `Cache-Control: no-store` opt a request out, `no-cache` makes it skip the lookup but store
//! its fresh answer. See `docs/caching.md`.

pub mod policy;

#[cfg(target_arch = "wasm32")]
mod component {
    use sluice_sdk::response_cache::{self, CacheRequest, Mode, Semantic};
    use sluice_sdk::types::{Api, Body, Headers, RequestDecision, RequestInfo};
    use sluice_sdk::{Plugin, config, export_plugin, log};

    use crate::policy::{self, Facts, Settings, Verdict};

    pub struct Cache;

    /// The binding's config, parsed once per instance (an instance serves one binding).
    fn settings() -> &'static Result<Settings, String> {
        static SETTINGS: std::sync::OnceLock<Result<Settings, String>> = std::sync::OnceLock::new();
        SETTINGS.get_or_init(|| {
            let parsed = Settings::parse(&config::binding());
            if let Err(problem) = &parsed {
                log::log(log::Level::Error, &format!("{problem}; bypassing the cache"));
            }
            parsed
        })
    }

    impl Plugin for Cache {
        fn on_request(request: RequestInfo, headers: &Headers, body: &Body) -> RequestDecision {
            let Ok(settings) = settings() else {
                response_cache::bypass("other");
                return RequestDecision::Continue;
            };
            // Embeddings have no sampling, tools or choices; every other API generates text and
            // is judged as chat is (the host keys each API's entries apart).
            let embeddings = match request.api {
                Api::Embeddings => true,
                Api::ChatCompletions | Api::Completions | Api::Responses | Api::Messages => false,
            };
            // Only what the policy reads is fetched from the host.
            let field = |name: &str| if embeddings { None } else { body.field(name) };
            let (seed, tools, functions, n) = (field("seed"), field("tools"), field("functions"), field("n"));
            let sluice_cache = headers.get("x-sluice-cache");
            let cache_control = headers.get("cache-control");
            let facts = Facts {
                embeddings,
                temperature: request.summary.temperature,
                seed: seed.as_deref(),
                tools: tools.as_deref(),
                functions: functions.as_deref(),
                n: n.as_deref(),
                sluice_cache: sluice_cache.as_deref(),
                cache_control: cache_control.as_deref(),
            };
            let mode = match policy::decide(settings, &facts) {
                Verdict::Use => Mode::LookupAndStore,
                Verdict::StoreOnly => Mode::StoreOnly,
                Verdict::Bypass(reason) => {
                    response_cache::bypass(reason);
                    return RequestDecision::Continue;
                }
            };
            let mut extra_key = String::new();
            for name in &settings.key_headers {
                extra_key.push_str(name);
                extra_key.push('=');
                extra_key.push_str(&headers.get(name).unwrap_or_default());
                extra_key.push('\n');
            }
            let ask = CacheRequest {
                mode,
                ignore_fields: settings.ignore_fields.clone(),
                extra_key,
                ttl_ms: settings.ttl_seconds.saturating_mul(1000),
                semantic: settings
                    .semantic
                    .as_ref()
                    .map(|s| Semantic { embedding_model: s.embedding_model.clone(), threshold: s.threshold }),
            };
            if let Err(problem) = response_cache::use_cache(&ask) {
                log::log(log::Level::Warn, &format!("use-cache refused: {problem}"));
            }
            RequestDecision::Continue
        }
    }

    export_plugin!(Cache => [on_request]);
}
