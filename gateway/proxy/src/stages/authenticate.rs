//! `Authorization: Bearer <key>` → the tenant's key entry, from the in-memory snapshot.

use http::HeaderMap;
use http::header::AUTHORIZATION;

use sluice_store_model::TenantStatus;

use crate::error::GatewayError;
use crate::tenants::{Directory, KeyEntry};

pub fn run(directory: &Directory, headers: &HeaderMap) -> Result<KeyEntry, GatewayError> {
    let value = headers.get(AUTHORIZATION).ok_or(GatewayError::MissingApiKey)?;
    let value = value.to_str().map_err(|_| GatewayError::InvalidApiKey)?;
    let key = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .ok_or(GatewayError::MissingApiKey)?;
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
        assert_eq!(&*run(&dir(), &headers("Bearer sk-good-123")).unwrap().tenant.name, "acme");
        assert!(matches!(run(&dir(), &headers("Bearer sk-bad")), Err(GatewayError::InvalidApiKey)));
        assert!(matches!(run(&dir(), &headers("Bearer sk-idle-123")), Err(GatewayError::TenantSuspended)));
        assert!(matches!(run(&dir(), &headers("Basic abc")), Err(GatewayError::MissingApiKey)));
        assert!(matches!(run(&dir(), &headers("Bearer ")), Err(GatewayError::MissingApiKey)));
        assert!(matches!(run(&dir(), &HeaderMap::new()), Err(GatewayError::MissingApiKey)));
    }
}
