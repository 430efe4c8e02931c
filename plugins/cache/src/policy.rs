//! The cache policy, free of host calls so that it is tested natively: the binding's settings,
//! and for one request whether it may use the cache and how.

use serde::Deserialize;

/// The binding's `config` table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// How long an entry lives.
    pub ttl_seconds: u64,
    /// Cache requests that offer tools or functions (their answers may call them).
    pub cache_tools: bool,
    /// Cache requests asking for more than one choice (`n` > 1).
    pub cache_multiple_choices: bool,
    /// Cache requests that are not deterministic (no `temperature` 0 and no `seed`): each
    /// client then gets the first sampled answer again.
    pub cache_sampled: bool,
    /// Top-level body members that do not form the key (besides `stream` and
    /// `stream_options`, which never do).
    pub ignore_fields: Vec<String>,
    /// Request headers whose values form part of the key (a prompt version, say).
    pub key_headers: Vec<String>,
    /// Also serve near matches: the prompt is embedded with `embedding_model` and a cached
    /// request at least `threshold` similar (cosine) is served.
    pub semantic: Option<SemanticSettings>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SemanticSettings {
    pub embedding_model: String,
    #[serde(default = "default_threshold")]
    pub threshold: f32,
}

fn default_threshold() -> f32 {
    0.95
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            ttl_seconds: 3600,
            cache_tools: false,
            cache_multiple_choices: false,
            cache_sampled: false,
            // Who asked does not change the answer.
            ignore_fields: vec!["user".to_owned()],
            key_headers: Vec::new(),
            semantic: None,
        }
    }
}

impl Settings {
    /// The settings in `json`; an unreadable config is an error the plugin reports once and
    /// then bypasses the cache for, rather than caching with settings nobody wrote.
    pub fn parse(json: &str) -> Result<Settings, String> {
        if json.trim().is_empty() {
            return Ok(Settings::default());
        }
        let settings: Settings = serde_json::from_str(json).map_err(|e| format!("cache config: {e}"))?;
        if settings.ttl_seconds == 0 {
            return Err("cache config: ttl_seconds must be at least 1".to_owned());
        }
        if let Some(s) = &settings.semantic
            && !(s.threshold > 0.0 && s.threshold <= 1.0)
        {
            return Err("cache config: semantic.threshold must be above 0 and at most 1".to_owned());
        }
        Ok(settings)
    }
}

/// What the request says about itself, as far as the policy cares.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Facts<'a> {
    pub embeddings: bool,
    pub temperature: Option<f32>,
    /// The JSON text of `seed`, `tools`, `functions` and `n`, when present.
    pub seed: Option<&'a str>,
    pub tools: Option<&'a str>,
    pub functions: Option<&'a str>,
    pub n: Option<&'a str>,
    /// `x-sluice-cache` and `cache-control`, when present.
    pub sluice_cache: Option<&'a str>,
    pub cache_control: Option<&'a str>,
}

/// The policy's answer for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Answer from the cache when an entry matches; store the answer otherwise.
    Use,
    /// Do not answer from the cache, but store the fresh answer.
    StoreOnly,
    /// Neither; the reason labels the bypass.
    Bypass(&'static str),
}

fn is_set(json: Option<&str>) -> bool {
    json.is_some_and(|v| !matches!(v.trim(), "null" | "[]" | "{}"))
}

fn directive(value: Option<&str>, name: &str) -> bool {
    value.is_some_and(|v| v.split(',').any(|d| d.trim().eq_ignore_ascii_case(name)))
}

pub fn decide(settings: &Settings, facts: &Facts<'_>) -> Verdict {
    if directive(facts.sluice_cache, "no-store") || directive(facts.cache_control, "no-store") {
        return Verdict::Bypass("opted-out");
    }
    if !facts.embeddings {
        if !settings.cache_tools && (is_set(facts.tools) || is_set(facts.functions)) {
            return Verdict::Bypass("tools");
        }
        let choices = facts.n.and_then(|n| n.trim().parse::<u64>().ok()).unwrap_or(1);
        if !settings.cache_multiple_choices && choices > 1 {
            return Verdict::Bypass("choices");
        }
        // OpenAI's default temperature is 1: a request that names neither a temperature of 0
        // nor a seed asks for a sample, and a cached answer would be the same sample each time.
        let deterministic = facts.temperature == Some(0.0) || is_set(facts.seed);
        if !settings.cache_sampled && !deterministic {
            return Verdict::Bypass("not-deterministic");
        }
    }
    if directive(facts.sluice_cache, "no-cache") || directive(facts.cache_control, "no-cache") {
        return Verdict::StoreOnly;
    }
    Verdict::Use
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat<'a>() -> Facts<'a> {
        Facts { temperature: Some(0.0), ..Facts::default() }
    }

    #[test]
    fn only_deterministic_requests_are_cached_by_default() {
        let s = Settings::default();
        assert_eq!(decide(&s, &chat()), Verdict::Use);
        assert_eq!(decide(&s, &Facts { temperature: Some(0.7), ..chat() }), Verdict::Bypass("not-deterministic"));
        assert_eq!(decide(&s, &Facts { temperature: None, ..chat() }), Verdict::Bypass("not-deterministic"));
        assert_eq!(decide(&s, &Facts { temperature: Some(0.7), seed: Some("42"), ..chat() }), Verdict::Use);
        assert_eq!(
            decide(&s, &Facts { temperature: None, seed: Some("null"), ..chat() }),
            Verdict::Bypass("not-deterministic")
        );
        let sampled = Settings { cache_sampled: true, ..Settings::default() };
        assert_eq!(decide(&sampled, &Facts { temperature: Some(1.0), ..chat() }), Verdict::Use);
        // Embeddings have no sampling.
        assert_eq!(decide(&s, &Facts { embeddings: true, ..Facts::default() }), Verdict::Use);
    }

    #[test]
    fn tools_and_several_choices_bypass_unless_allowed() {
        let s = Settings::default();
        assert_eq!(decide(&s, &Facts { tools: Some(r#"[{"type":"function"}]"#), ..chat() }), Verdict::Bypass("tools"));
        assert_eq!(decide(&s, &Facts { tools: Some("[]"), ..chat() }), Verdict::Use);
        assert_eq!(decide(&s, &Facts { functions: Some(r#"[{}]"#), ..chat() }), Verdict::Bypass("tools"));
        assert_eq!(decide(&s, &Facts { n: Some("2"), ..chat() }), Verdict::Bypass("choices"));
        assert_eq!(decide(&s, &Facts { n: Some("1"), ..chat() }), Verdict::Use);
        let lax = Settings { cache_tools: true, cache_multiple_choices: true, ..Settings::default() };
        assert_eq!(decide(&lax, &Facts { tools: Some("[{}]"), n: Some("3"), ..chat() }), Verdict::Use);
    }

    #[test]
    fn clients_opt_out_with_headers() {
        let s = Settings::default();
        let with = |sluice: Option<&'static str>, control: Option<&'static str>| {
            decide(&s, &Facts { sluice_cache: sluice, cache_control: control, ..chat() })
        };
        assert_eq!(with(Some("no-store"), None), Verdict::Bypass("opted-out"));
        assert_eq!(with(None, Some("max-age=0, no-store")), Verdict::Bypass("opted-out"));
        assert_eq!(with(Some("No-Cache"), None), Verdict::StoreOnly);
        assert_eq!(with(None, Some("no-cache")), Verdict::StoreOnly);
        assert_eq!(with(None, Some("max-age=60")), Verdict::Use);
    }

    #[test]
    fn settings_parse_with_defaults_and_refuse_nonsense() {
        assert_eq!(Settings::parse("").unwrap(), Settings::default());
        assert_eq!(Settings::parse("{}").unwrap(), Settings::default());
        let s = Settings::parse(r#"{"ttl_seconds":60,"semantic":{"embedding_model":"e"}}"#).unwrap();
        assert_eq!(s.ttl_seconds, 60);
        assert_eq!(s.semantic.unwrap().threshold, 0.95);
        assert!(Settings::parse(r#"{"ttl_seconds":0}"#).is_err());
        assert!(Settings::parse(r#"{"tll_seconds":5}"#).unwrap_err().contains("tll_seconds"));
        assert!(Settings::parse(r#"{"semantic":{"embedding_model":"e","threshold":1.5}}"#).is_err());
    }
}
