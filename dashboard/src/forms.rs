//! Form input → the admin API's request types, with the same validation the API applies
//! (`sluice_store_model::validate`), so mistakes show before anything is sent.

use sluice_store_model::{Limits, PoolApi, Slo, validate};

/// A form error: which field, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    fn new(field: &str, message: impl Into<String>) -> Self {
        FieldError { field: field.to_owned(), message: message.into() }
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl From<sluice_store_model::StoreError> for FieldError {
    fn from(e: sluice_store_model::StoreError) -> Self {
        match e {
            sluice_store_model::StoreError::Invalid { field, message } => FieldError::new(field, message),
            other => FieldError::new("form", other.to_string()),
        }
    }
}

/// An empty box means "no limit"; otherwise a whole number.
pub fn optional_u64(field: &str, text: &str) -> Result<Option<u64>, FieldError> {
    let t = text.trim().replace('_', "");
    if t.is_empty() {
        return Ok(None);
    }
    t.parse::<u64>().map(Some).map_err(|_| FieldError::new(field, "must be a whole number, or empty for no limit"))
}

pub fn optional_u32(field: &str, text: &str) -> Result<Option<u32>, FieldError> {
    match optional_u64(field, text)? {
        None => Ok(None),
        Some(v) => u32::try_from(v).map(Some).map_err(|_| FieldError::new(field, "is too large")),
    }
}

pub fn tenant_name(text: &str) -> Result<String, FieldError> {
    let name = text.trim();
    validate::name("name", name)?;
    Ok(name.to_owned())
}

/// The limits form: four optional numbers and a comma-separated model list (empty: all models).
pub fn limits(rpm: &str, tpm: &str, concurrency: &str, budget: &str, models: &str) -> Result<Limits, FieldError> {
    let allowed: Vec<String> = models.split(',').map(str::trim).filter(|m| !m.is_empty()).map(str::to_owned).collect();
    let limits = Limits {
        requests_per_minute: optional_u64("requests_per_minute", rpm)?,
        tokens_per_minute: optional_u64("tokens_per_minute", tpm)?,
        max_concurrency: optional_u64("max_concurrency", concurrency)?,
        monthly_token_budget: optional_u64("monthly_token_budget", budget)?,
        allowed_models: (!allowed.is_empty()).then_some(allowed),
    };
    validate::limits(&limits)?;
    Ok(limits)
}

/// One SLO row: model (`*` for all), TTFT and TPOT p95 targets in ms, attainment in percent.
pub fn slo(model: &str, ttft_ms: &str, tpot_ms: &str, attainment_pct: &str) -> Result<Slo, FieldError> {
    let pct: f64 = attainment_pct
        .trim()
        .trim_end_matches('%')
        .parse()
        .map_err(|_| FieldError::new("target_attainment", "must be a percentage, e.g. 95"))?;
    let model = model.trim();
    let slo = Slo {
        model: if model.is_empty() { "*".to_owned() } else { model.to_owned() },
        ttft_p95_ms: optional_u32("ttft_p95_ms", ttft_ms)?,
        tpot_p95_ms: optional_u32("tpot_p95_ms", tpot_ms)?,
        target_attainment: pct / 100.0,
    };
    validate::slos(std::slice::from_ref(&slo))?;
    Ok(slo)
}

pub fn endpoint(name: &str, url: &str, weight: &str) -> Result<(String, String, u32), FieldError> {
    let name = name.trim();
    validate::name("name", name)?;
    let url = url.trim();
    validate::endpoint_url(url)?;
    let weight = optional_u32("weight", weight)?.unwrap_or(1);
    if weight == 0 {
        return Err(FieldError::new("weight", "must be at least 1 (drain an endpoint to stop its traffic)"));
    }
    Ok((name.to_owned(), url.to_owned(), weight))
}

/// A pool's APIs, comma-separated; an empty box means the default (chat, completions,
/// embeddings), sent as no list at all.
pub fn pool_apis(text: &str) -> Result<Option<Vec<PoolApi>>, FieldError> {
    let names: Vec<&str> = text.split(',').map(str::trim).filter(|n| !n.is_empty()).collect();
    if names.is_empty() {
        return Ok(None);
    }
    let apis = names
        .iter()
        .map(|name| {
            PoolApi::from_name(name).ok_or_else(|| {
                FieldError::new(
                    "apis",
                    format!("{name:?} is not an API; expected some of {}", PoolApi::NAMES.join(", ")),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(validate::pool_apis(&apis)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_optional_and_checked() {
        assert_eq!(optional_u64("rpm", " "), Ok(None));
        assert_eq!(optional_u64("rpm", "1_000"), Ok(Some(1000)));
        assert_eq!(optional_u64("rpm", "-1").unwrap_err().field, "rpm");
        assert_eq!(optional_u32("t", "5000000000").unwrap_err().message, "is too large");
    }

    #[test]
    fn names_follow_the_api_rules() {
        assert_eq!(tenant_name(" acme "), Ok("acme".into()));
        let e = tenant_name("Acme Corp").unwrap_err();
        assert_eq!(e.field, "name");
        assert!(e.message.contains("a-z"));
    }

    #[test]
    fn limits_and_slos() {
        let l = limits("60", "", "4", "", "llama, mistral").unwrap();
        assert_eq!(l.requests_per_minute, Some(60));
        assert_eq!(l.allowed_models, Some(vec!["llama".into(), "mistral".into()]));
        assert_eq!(limits("", "", "", "", "").unwrap(), Limits::default());

        let s = slo("", "500", "50", "95").unwrap();
        assert_eq!((s.model.as_str(), s.ttft_p95_ms, s.tpot_p95_ms), ("*", Some(500), Some(50)));
        assert!((s.target_attainment - 0.95).abs() < 1e-9);
        assert_eq!(slo("*", "", "", "95").unwrap_err().field, "ttft_p95_ms");
        assert_eq!(slo("*", "500", "", "150").unwrap_err().field, "target_attainment");
        assert_eq!(slo("*", "500", "", "abc").unwrap_err().field, "target_attainment");
    }

    #[test]
    fn pool_apis_are_names_or_the_default() {
        assert_eq!(pool_apis(" "), Ok(None));
        assert_eq!(pool_apis("messages, chat,"), Ok(Some(vec![PoolApi::Chat, PoolApi::Messages])));
        let e = pool_apis("chat, anthropic").unwrap_err();
        assert_eq!(e.field, "apis");
        assert!(e.message.contains("\"anthropic\"") && e.message.contains("messages"), "{e}");
    }

    #[test]
    fn endpoints() {
        assert_eq!(endpoint("w1", "http://10.0.0.1:8000", ""), Ok(("w1".into(), "http://10.0.0.1:8000".into(), 1)));
        assert_eq!(endpoint("w1", "10.0.0.1:8000", "").unwrap_err().field, "url");
        assert_eq!(endpoint("w1", "http://h", "0").unwrap_err().field, "weight");
    }
}
