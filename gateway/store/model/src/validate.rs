//! Rules for names and values, checked before anything reaches a store so that every store
//! refuses the same inputs with the same messages.

use crate::{Limits, Slo, StoreError};

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

pub fn limits(limits: &Limits) -> Result<(), StoreError> {
    // Stores keep counters as signed 64-bit integers.
    let fits = |field: &'static str, value: Option<u64>| match value {
        Some(v) if v > i64::MAX as u64 => Err(StoreError::invalid(field, "is too large")),
        _ => Ok(()),
    };
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

#[cfg(test)]
mod tests {
    use super::*;

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
