//! The admin token check, run before any data route reads its body.
//!
//! Never open by default: without a configured token every data route answers 503 saying how to
//! set one. The presented and configured tokens are compared as SHA-256 digests in constant
//! time, so neither their contents nor their lengths leak through timing.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{StatusCode, header};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::AdminState;
use crate::error::ApiError;

pub(crate) async fn require_token(State(state): State<AdminState>, request: Request, next: Next) -> Response {
    match check(state.token.as_deref(), request.headers()) {
        Ok(()) => next.run(request).await,
        Err(error) => error.into_response(),
    }
}

fn check(configured: Option<&str>, headers: &http::HeaderMap) -> Result<(), ApiError> {
    let Some(configured) = configured.filter(|t| !t.is_empty()) else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "admin_token_not_set",
            "the admin API is disabled until an admin token is configured: set `[admin] token` in the config \
             (e.g. \"env:SLUICE_ADMIN_TOKEN\") or the SLUICE_ADMIN_TOKEN environment variable",
        ));
    };
    let unauthorized = |message: &str| ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message);
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| unauthorized("missing admin token: send `Authorization: Bearer <token>`"))?;
    let presented = value
        .to_str()
        .ok()
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .ok_or_else(|| unauthorized("the Authorization header must be `Bearer <token>`"))?;
    let matches: bool = Sha256::digest(presented.as_bytes()).ct_eq(&Sha256::digest(configured.as_bytes())).into();
    if matches { Ok(()) } else { Err(unauthorized("wrong admin token")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_auth(value: &str) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        h.insert(header::AUTHORIZATION, value.parse().unwrap());
        h
    }

    #[test]
    fn checks_the_bearer_token() {
        assert!(check(Some("s3cret"), &with_auth("Bearer s3cret")).is_ok());
        assert!(check(Some("s3cret"), &with_auth("bearer s3cret")).is_ok());
        for bad in ["Bearer s3cre", "Bearer s3cret2", "Basic s3cret", "s3cret", "Bearer "] {
            assert_eq!(check(Some("s3cret"), &with_auth(bad)).unwrap_err().status, StatusCode::UNAUTHORIZED, "{bad}");
        }
        assert_eq!(check(Some("s3cret"), &http::HeaderMap::new()).unwrap_err().status, StatusCode::UNAUTHORIZED);
    }

    #[test]
    fn no_token_means_closed() {
        for configured in [None, Some("")] {
            let e = check(configured, &with_auth("Bearer anything")).unwrap_err();
            assert_eq!(e.status, StatusCode::SERVICE_UNAVAILABLE);
            assert!(e.message.contains("SLUICE_ADMIN_TOKEN") && e.message.contains("[admin] token"));
        }
    }
}
