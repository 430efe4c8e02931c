//! `POST /admin/api/cache/purge`: removes response-cache entries by tenant, model or key prefix.

use axum::{Extension, Json};
use http::StatusCode;
use sluice_store_model::validate;

use crate::error::{ApiError, ErrorBody};
use crate::extract::JsonBody;
use crate::{CachePurgeReport, CachePurgeRequest, GatewayHooks};

/// The longest key prefix: a whole key (SHA-256, hex).
const KEY_HEX_LEN: usize = 64;

/// Removes the response cache's entries that match every field given.
///
/// With the Redis backend the entries go for every replica; with the in-process backend only
/// from the replica that answers (send the purge to each, as for a reload). Near-match (semantic)
/// candidates of the purged tenant or model go too; entries purged by key prefix drop out of
/// near matching when next found.
#[utoipa::path(post, path = "/admin/api/cache/purge", tag = "operations", request_body = CachePurgeRequest,
    responses(
        (status = 200, description = "How many entries were removed", body = CachePurgeReport),
        (status = 409, description = "This admin API does not run inside a gateway (`code`: `cache_unavailable`)",
         body = ErrorBody),
        (status = 422, description = "No field given without `all`, or a value out of shape (`param` names it)",
         body = ErrorBody),
        (status = 503, description = "The cache's Redis does not answer; nothing was removed for certain \
                                      (`code`: `cache_unavailable`)", body = ErrorBody),
    ))]
pub(crate) async fn purge(
    hooks: Option<Extension<GatewayHooks>>,
    JsonBody(request): JsonBody<CachePurgeRequest>,
) -> Result<Json<CachePurgeReport>, ApiError> {
    let request = checked(request)?;
    let Some(Extension(hooks)) = hooks else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "cache_unavailable",
            "this admin API is not attached to a gateway with a response cache",
        ));
    };
    Ok(Json(hooks.cache.purge(request).await?))
}

/// Refuses a request that names nothing (an empty body must not empty the cache by accident)
/// and normalises the key prefix to the lowercase hex of `x-sluice-cache-key`.
fn checked(mut request: CachePurgeRequest) -> Result<CachePurgeRequest, ApiError> {
    let named = request.tenant.is_some() || request.model.is_some() || request.key_prefix.is_some();
    if named && request.all {
        return Err(ApiError::invalid("all", "cannot be combined with tenant, model or key_prefix"));
    }
    if !named && !request.all {
        return Err(ApiError::invalid("all", "name a tenant, a model or a key_prefix, or set all: true"));
    }
    if let Some(tenant) = &request.tenant {
        validate::name("tenant", tenant)?;
    }
    if let Some(model) = &request.model {
        validate::model("model", model)?;
    }
    if let Some(prefix) = &mut request.key_prefix {
        if prefix.is_empty() || prefix.len() > KEY_HEX_LEN || !prefix.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(ApiError::invalid(
                "key_prefix",
                format!("must be 1-{KEY_HEX_LEN} hex digits (the start of an x-sluice-cache-key)"),
            ));
        }
        prefix.make_ascii_lowercase();
    }
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(tenant: Option<&str>, model: Option<&str>, key_prefix: Option<&str>, all: bool) -> CachePurgeRequest {
        CachePurgeRequest {
            tenant: tenant.map(str::to_owned),
            model: model.map(str::to_owned),
            key_prefix: key_prefix.map(str::to_owned),
            all,
        }
    }

    #[test]
    fn a_purge_names_what_it_removes_or_says_all() {
        assert!(checked(request(None, None, None, false)).is_err());
        assert!(checked(request(Some("acme"), None, None, true)).is_err());
        assert!(checked(request(None, None, None, true)).is_ok());
        assert!(checked(request(Some("acme"), Some("m/x"), None, false)).is_ok());
    }

    #[test]
    fn key_prefixes_are_hex_and_lowercased() {
        let ok = checked(request(None, None, Some("AB12"), false)).unwrap();
        assert_eq!(ok.key_prefix.as_deref(), Some("ab12"));
        assert!(checked(request(None, None, Some("xyz"), false)).is_err());
        assert!(checked(request(None, None, Some(""), false)).is_err());
        assert!(checked(request(None, None, Some(&"a".repeat(65)), false)).is_err());
        assert!(checked(request(Some("Not A Name"), None, None, false)).is_err());
    }
}
