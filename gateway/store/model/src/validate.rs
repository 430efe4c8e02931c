//! Rules for names and values, checked before anything reaches a store so that every store
//! refuses the same inputs with the same messages.

use crate::{Limits, PoolApi, ScopeLimits, Slo, StoreError};

/// Tenant, pool, endpoint and plugin names: 1–64 characters of `a-z 0-9 - _ .`, starting with a
/// letter or digit. They appear in URLs, metric labels and logs, so nothing needs escaping.
pub fn name(field: &'static str, value: &str) -> Result<(), StoreError> {
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.');
    let first_ok = value.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if value.is_empty() || value.len() > 64 || !first_ok || !value.chars().all(ok_char) {
        return Err(StoreError::invalid(
            field,
            format!("{value:?} must be 1-64 characters of a-z, 0-9, '-', '_' or '.', starting with a letter or digit"),
        ));
    }
    Ok(())
}

/// Model names are the upstreams' own (`meta-llama/Llama-3.1-8B-Instruct`), so only length and
/// printable characters are checked.
pub fn model(field: &'static str, value: &str) -> Result<(), StoreError> {
    if value.is_empty() || value.len() > 256 || value.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(StoreError::invalid(field, format!("{value:?} must be 1-256 printable characters without spaces")));
    }
    Ok(())
}

/// An API key's name: 1-128 characters a person reads in lists and logs, so no control
/// characters and none of the invisible ones that make a name look like another (zero-width
/// spaces and joiners, bidirectional overrides and isolates, the byte-order mark).
pub fn key_name(field: &'static str, value: &str) -> Result<(), StoreError> {
    let invisible = |c: char| {
        c.is_control()
            || matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
    };
    if value.is_empty() || value.chars().count() > 128 || value.chars().any(invisible) {
        return Err(StoreError::invalid(
            field,
            "must be 1-128 characters without control characters, zero-width characters or direction overrides",
        ));
    }
    Ok(())
}

/// Stores keep limits as signed 64-bit integers.
fn fits(field: &'static str, value: Option<u64>) -> Result<(), StoreError> {
    match value {
        Some(v) if v > i64::MAX as u64 => Err(StoreError::invalid(field, "is too large")),
        _ => Ok(()),
    }
}

pub fn limits(limits: &Limits) -> Result<(), StoreError> {
    fits("requests_per_minute", limits.requests_per_minute)?;
    fits("tokens_per_minute", limits.tokens_per_minute)?;
    fits("max_concurrency", limits.max_concurrency)?;
    fits("monthly_token_budget", limits.monthly_token_budget)?;
    if let Some(models) = &limits.allowed_models {
        for m in models {
            model("allowed_models", m)?;
        }
    }
    Ok(())
}

/// An API key's or a tenant × model pair's limits: the same ranges as a tenant's.
pub fn scope_limits(limits: &ScopeLimits) -> Result<(), StoreError> {
    fits("requests_per_minute", limits.requests_per_minute)?;
    fits("tokens_per_minute", limits.tokens_per_minute)?;
    fits("max_concurrency", limits.max_concurrency)?;
    fits("monthly_token_budget", limits.monthly_token_budget)
}

/// One model's limits for a tenant: a model name and at least one limit (a pair without any is
/// removed, not stored empty).
pub fn model_limits(model_name: &str, limits: &ScopeLimits) -> Result<(), StoreError> {
    model("model", model_name)?;
    scope_limits(limits)?;
    if limits.is_empty() {
        return Err(StoreError::invalid(
            "limits",
            "set at least one of requests_per_minute, tokens_per_minute, max_concurrency, monthly_token_budget (remove a model's limits with DELETE)",
        ));
    }
    Ok(())
}

pub fn slos(slos: &[Slo]) -> Result<(), StoreError> {
    let mut seen = std::collections::HashSet::new();
    for slo in slos {
        if slo.model != "*" {
            model("model", &slo.model)?;
        }
        if !seen.insert(slo.model.as_str()) {
            return Err(StoreError::invalid("model", format!("{:?} appears more than once", slo.model)));
        }
        if !(slo.target_attainment > 0.0 && slo.target_attainment <= 1.0) {
            return Err(StoreError::invalid("target_attainment", "must be in (0, 1], e.g. 0.95"));
        }
        if slo.ttft_p95_ms.is_none() && slo.tpot_p95_ms.is_none() {
            return Err(StoreError::invalid("ttft_p95_ms", "an SLO needs ttft_p95_ms, tpot_p95_ms or both"));
        }
        if slo.ttft_p95_ms == Some(0) || slo.tpot_p95_ms == Some(0) {
            return Err(StoreError::invalid("ttft_p95_ms", "targets must be at least 1 ms"));
        }
    }
    Ok(())
}

/// Endpoint URLs: absolute `http://` or `https://` with a host.
pub fn endpoint_url(value: &str) -> Result<(), StoreError> {
    let rest = value.strip_prefix("http://").or_else(|| value.strip_prefix("https://"));
    match rest {
        // Control characters would reach the gateway's HTTP client as an unparseable URI.
        Some(rest)
            if !rest.is_empty()
                && !rest.starts_with('/')
                && !value.chars().any(|c| c.is_whitespace() || c.is_control()) =>
        {
            Ok(())
        }
        _ => Err(StoreError::invalid("url", format!("{value:?} must be an absolute http:// or https:// URL"))),
    }
}

/// The APIs a pool's workers speak: at least one. Returns them without repeats, in
/// [`PoolApi::ALL`] order, as the stores keep them.
pub fn pool_apis(apis: &[PoolApi]) -> Result<Vec<PoolApi>, StoreError> {
    if apis.is_empty() {
        return Err(StoreError::invalid(
            "apis",
            format!("a pool speaks at least one API; expected some of {}", PoolApi::NAMES.join(", ")),
        ));
    }
    Ok(PoolApi::normalized(apis))
}

/// The host capabilities a stored plugin version may be granted, in the contract's order: each
/// is one interface of `sluice:policy` (`plugins/wit/policy.wit`). The plugin host's
/// `Capability::ALL` is the authority; a test in `sluice-server` keeps this list equal to it.
pub const CAPABILITIES: [&str; 10] =
    ["log", "clock", "counters", "cache", "response-cache", "limits", "config", "metrics", "embeddings", "http"];

/// Capability names to grant: each one of [`CAPABILITIES`]. Returns them without repeats, in
/// [`CAPABILITIES`] order, so that equal grants are stored and compared alike.
pub fn grants(grants: &[String]) -> Result<Vec<String>, StoreError> {
    if let Some(unknown) = grants.iter().find(|g| !CAPABILITIES.contains(&g.as_str())) {
        return Err(StoreError::invalid(
            "grants",
            format!("{unknown:?} is not a capability; expected any of {}", CAPABILITIES.join(", ")),
        ));
    }
    Ok(CAPABILITIES.iter().filter(|c| grants.iter().any(|g| g == *c)).map(|c| (*c).to_owned()).collect())
}

/// The capabilities in a manifest (`manifest.capabilities`, what the component imports) that
/// `granted` lacks, in manifest order.
pub fn ungranted<'m>(manifest: &'m serde_json::Value, granted: &[String]) -> Vec<&'m str> {
    requested(manifest).into_iter().filter(|c| !granted.iter().any(|g| g == c)).collect()
}

/// The capabilities a version requests: its manifest's `capabilities` (what it imports).
pub fn requested(manifest: &serde_json::Value) -> Vec<&str> {
    manifest
        .get("capabilities")
        .and_then(serde_json::Value::as_array)
        .map(|names| names.iter().filter_map(serde_json::Value::as_str).collect())
        .unwrap_or_default()
}

/// The WIT import that needs `capability`, as the plugin host names it in its errors:
/// `sluice:policy/http@0.1.0` for `http` under the contract `sluice:policy@0.1.0`.
pub fn capability_import(manifest: &serde_json::Value, capability: &str) -> String {
    let contract = manifest.get("contract").and_then(serde_json::Value::as_str).unwrap_or("sluice:policy@0.1.0");
    match contract.split_once('@') {
        Some((package, version)) => format!("{package}/{capability}@{version}"),
        None => format!("{contract}/{capability}"),
    }
}

/// The largest deadline a stored binding may ask for, in milliseconds, unless the gateway
/// configures another. The one place this default lives; the admin API and the gateway's
/// plugin sync both read it.
pub const MAX_BINDING_TIMEOUT_MS: u32 = 1000;

/// The smallest memory limit a binding may have (the same floor as the config file's).
pub const MIN_BINDING_MEMORY_BYTES: u64 = 1 << 20;

/// The host's maxima for a stored binding's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BindingMaxima {
    pub timeout_ms: u32,
    /// The plugin engine's `max_memory_bytes` (`[plugin_host] max_memory_bytes`).
    pub memory_bytes: u64,
}

impl Default for BindingMaxima {
    /// [`MAX_BINDING_TIMEOUT_MS`] and the engine's default maximum memory (64 MiB).
    fn default() -> Self {
        BindingMaxima { timeout_ms: MAX_BINDING_TIMEOUT_MS, memory_bytes: 64 << 20 }
    }
}

/// A binding's `timeout_ms` (1 ms up to the maximum) and `max_memory_bytes` (1 MiB up to the
/// engine's maximum); unset values are the host's defaults and always fit.
pub fn binding_limits(
    timeout_ms: Option<u32>,
    max_memory_bytes: Option<u64>,
    maxima: &BindingMaxima,
) -> Result<(), StoreError> {
    if let Some(t) = timeout_ms
        && !(1..=maxima.timeout_ms).contains(&t)
    {
        return Err(StoreError::invalid(
            "timeout_ms",
            format!("{t} must be between 1 and the host's maximum of {} ms", maxima.timeout_ms),
        ));
    }
    if let Some(m) = max_memory_bytes
        && !(MIN_BINDING_MEMORY_BYTES..=maxima.memory_bytes).contains(&m)
    {
        return Err(StoreError::invalid(
            "max_memory_bytes",
            format!(
                "{m} must be between {MIN_BINDING_MEMORY_BYTES} (1 MiB) and the plugin engine's maximum of {} bytes",
                maxima.memory_bytes
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_names_are_what_a_reader_sees() {
        for ok in ["ci", "prod key #2", "clé d'équipe", "研究"] {
            assert!(key_name("name", ok).is_ok(), "{ok:?}");
        }
        let long = "x".repeat(129);
        for bad in
            ["", "tab\there", "admin\u{202E}txt.exe", "ad\u{200B}min", "\u{FEFF}bom", "\u{2066}iso", long.as_str()]
        {
            assert!(key_name("name", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn grants_are_known_capabilities_in_contract_order() {
        let names = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(grants(&names(&["http", "log", "http"])).unwrap(), names(&["log", "http"]));
        assert_eq!(grants(&[]).unwrap(), Vec::<String>::new());
        let e = grants(&names(&["log", "filesystem"])).unwrap_err();
        assert!(
            matches!(&e, StoreError::Invalid { field: "grants", message } if message.contains("filesystem")),
            "{e}"
        );
    }

    #[test]
    fn ungranted_imports_are_named_as_the_host_names_them() {
        let manifest = serde_json::json!({"contract": "sluice:policy@0.1.0", "capabilities": ["log", "http"]});
        assert_eq!(ungranted(&manifest, &["log".to_owned()]), ["http"]);
        assert!(ungranted(&manifest, &["log".to_owned(), "http".to_owned()]).is_empty());
        assert!(ungranted(&serde_json::json!({}), &[]).is_empty(), "a manifest without capabilities requests none");
        assert_eq!(capability_import(&manifest, "http"), "sluice:policy/http@0.1.0");
    }

    #[test]
    fn binding_limits_stay_within_the_maxima() {
        let max = BindingMaxima { timeout_ms: 1000, memory_bytes: 64 << 20 };
        assert!(binding_limits(None, None, &max).is_ok());
        assert!(binding_limits(Some(1), Some(1 << 20), &max).is_ok());
        assert!(binding_limits(Some(1000), Some(64 << 20), &max).is_ok());
        let field = |r: Result<(), StoreError>| match r {
            Err(StoreError::Invalid { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(field(binding_limits(Some(0), None, &max)), "timeout_ms");
        assert_eq!(field(binding_limits(Some(1001), None, &max)), "timeout_ms");
        assert_eq!(field(binding_limits(None, Some((64 << 20) + 1), &max)), "max_memory_bytes");
        assert_eq!(field(binding_limits(None, Some(4096), &max)), "max_memory_bytes");
    }

    #[test]
    fn scope_limits_fit_the_stores_and_a_model_needs_one() {
        let one = ScopeLimits { tokens_per_minute: Some(1000), ..ScopeLimits::default() };
        assert!(scope_limits(&ScopeLimits::default()).is_ok());
        assert!(model_limits("meta-llama/Llama-3.1-8B-Instruct", &one).is_ok());
        let field = |r: Result<(), StoreError>| match r {
            Err(StoreError::Invalid { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        let huge = ScopeLimits { max_concurrency: Some(u64::MAX), ..ScopeLimits::default() };
        assert_eq!(field(scope_limits(&huge)), "max_concurrency");
        assert_eq!(field(model_limits("llama", &ScopeLimits::default())), "limits");
        assert_eq!(field(model_limits("a b", &one)), "model");
    }

    #[test]
    fn names() {
        assert!(name("name", "acme").is_ok());
        assert!(name("name", "team-7.prod_eu").is_ok());
        for bad in ["", "Acme", "-acme", "a b", "a/b", &"x".repeat(65)] {
            assert!(matches!(name("name", bad), Err(StoreError::Invalid { field: "name", .. })), "{bad}");
        }
    }

    #[test]
    fn slos_need_a_target_and_unique_models() {
        let slo = |model: &str, att: f64| Slo {
            model: model.into(),
            ttft_p95_ms: Some(500),
            tpot_p95_ms: None,
            target_attainment: att,
        };
        assert!(slos(&[slo("*", 0.95), slo("llama", 0.9)]).is_ok());
        assert!(slos(&[slo("llama", 0.95), slo("llama", 0.9)]).is_err());
        assert!(slos(&[slo("llama", 0.0)]).is_err());
        assert!(slos(&[slo("llama", 1.5)]).is_err());
        let none = Slo { model: "m".into(), ttft_p95_ms: None, tpot_p95_ms: None, target_attainment: 0.9 };
        assert!(slos(&[none]).is_err());
    }

    #[test]
    fn pool_apis_are_a_set_in_one_order() {
        use PoolApi::*;
        assert_eq!(pool_apis(&[Messages, Chat, Messages]).unwrap(), [Chat, Messages]);
        let e = pool_apis(&[]).unwrap_err();
        assert!(matches!(&e, StoreError::Invalid { field: "apis", message } if message.contains("chat")), "{e}");
        // The names are serde's, and each API's own.
        for (api, name) in PoolApi::ALL.into_iter().zip(PoolApi::NAMES) {
            assert_eq!(serde_json::to_value(api).unwrap(), name);
            assert_eq!((api.name(), PoolApi::from_name(name)), (name, Some(api)));
        }
        assert_eq!(PoolApi::from_name("anthropic"), None);
        assert!(PoolApi::DEFAULT.iter().all(|a| PoolApi::ALL.contains(a)));
    }

    #[test]
    fn urls() {
        assert!(endpoint_url("http://10.0.0.1:8000").is_ok());
        assert!(endpoint_url("https://gpu.example/v1").is_ok());
        for bad in
            ["", "10.0.0.1:8000", "http://", "ftp://x", "http:///x", "http://a b", "https://\u{1a}", "http://a\u{7f}"]
        {
            assert!(endpoint_url(bad).is_err(), "{bad}");
        }
    }
}
