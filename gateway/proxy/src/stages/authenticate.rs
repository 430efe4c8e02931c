//! `Authorization: Bearer <key>` → the tenant's key entry, from the in-memory snapshot. Requests
//! to the Messages API may send the key as Anthropic's SDKs do, in `x-api-key`.

use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderName};

use sluice_store_model::TenantStatus;

use crate::error::GatewayError;
use crate::tenants::{Directory, KeyEntry};

/// Anthropic's key header.
pub const X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");

/// Where the key may be: `Authorization: Bearer` always, and `x-api-key` when
/// `accept_x_api_key` (the Messages API). A request with both is judged by `Authorization`.
pub fn run(directory: &Directory, headers: &HeaderMap, accept_x_api_key: bool) -> Result<KeyEntry, GatewayError> {
    let key = match (headers.get(AUTHORIZATION), headers.get(X_API_KEY)) {
        (Some(value), _) => {
            let value = value.to_str().map_err(|_| GatewayError::InvalidApiKey)?;
            value
                .strip_prefix("Bearer ")
                .or_else(|| value.strip_prefix("bearer "))
                .map(str::trim)
                .filter(|k| !k.is_empty())
                .ok_or(GatewayError::MissingApiKey)?
        }
        (None, Some(value)) if accept_x_api_key => {
            let value = value.to_str().map_err(|_| GatewayError::InvalidApiKey)?.trim();
            if value.is_empty() {
                return Err(GatewayError::MissingApiKey);
            }
            value
        }
        (None, _) => return Err(GatewayError::MissingApiKey),
    };
    let entry = directory.current().authenticate(key).cloned().ok_or(GatewayError::InvalidApiKey)?;
    match entry.tenant.status {
        TenantStatus::Active => Ok(entry),
        TenantStatus::Suspended => Err(GatewayError::TenantSuspended),
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;
    use crate::tenants::{KeyHash, Tenant, TenantSnapshot};

    fn dir() -> Directory {
        let mut suspended = Tenant::new("idle");
        suspended.status = TenantStatus::Suspended;
        Directory::new(TenantSnapshot::new([
            (Tenant::new("acme"), vec![KeyHash::of("sk-good-123")]),
            (suspended, vec![KeyHash::of("sk-idle-123")]),
        ]))
    }

    fn headers(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn bearer_keys() {
        assert_eq!(&*run(&dir(), &headers("Bearer sk-good-123"), false).unwrap().tenant.name, "acme");
        assert!(matches!(run(&dir(), &headers("Bearer sk-bad"), false), Err(GatewayError::InvalidApiKey)));
        assert!(matches!(run(&dir(), &headers("Bearer sk-idle-123"), false), Err(GatewayError::TenantSuspended)));
        assert!(matches!(run(&dir(), &headers("Basic abc"), false), Err(GatewayError::MissingApiKey)));
        assert!(matches!(run(&dir(), &headers("Bearer "), false), Err(GatewayError::MissingApiKey)));
        assert!(matches!(run(&dir(), &HeaderMap::new(), false), Err(GatewayError::MissingApiKey)));
    }

    #[test]
    fn x_api_key_only_where_accepted() {
        let mut h = HeaderMap::new();
        h.insert(X_API_KEY, HeaderValue::from_static("sk-good-123"));
        assert_eq!(&*run(&dir(), &h, true).unwrap().tenant.name, "acme");
        assert!(matches!(run(&dir(), &h, false), Err(GatewayError::MissingApiKey)));
        h.insert(X_API_KEY, HeaderValue::from_static("sk-bad"));
        assert!(matches!(run(&dir(), &h, true), Err(GatewayError::InvalidApiKey)));
        h.insert(X_API_KEY, HeaderValue::from_static(" "));
        assert!(matches!(run(&dir(), &h, true), Err(GatewayError::MissingApiKey)));
    }
}
