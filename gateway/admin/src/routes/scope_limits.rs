//! `/admin/api/tenants/{name}/keys/{id}/limits` and `/admin/api/tenants/{name}/models/{model}/limits`:
//! limits narrower than the tenant's, enforced by the built-in `ratelimit` plugin on top of the
//! tenant's own (see docs/rate-limits.md).

use axum::Json;
use axum::extract::State;
use http::StatusCode;
use sluice_store_model::{Actor, ApiKey, ModelLimits, ScopeLimits, StoreError, validate};

use crate::AdminState;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{JsonBody, PathParams};

/// Replaces an API key's own limits; every replica enforces them within a second.
///
/// A request with this key takes these limits besides its tenant's (and its model's); a limit
/// not set here is the `ratelimit` binding's `per_key` value, if any. Over a limit: `429` as for
/// the tenant's limits, the message naming "this API key".
#[utoipa::path(put, path = "/admin/api/tenants/{name}/keys/{id}/limits", tag = "keys", request_body = ScopeLimits,
    params(("name" = String, Path, description = "Tenant name"), ("id" = i64, Path, description = "Key id")),
    responses(
        (status = 200, description = "The key with the limits now in force (absent or null = none of its own)", body = ApiKey),
        (status = 404, description = "No such tenant or key", body = ErrorBody),
        (status = 422, description = "A value out of range", body = ErrorBody),
    ))]
pub(crate) async fn set_key_limits(
    State(state): State<AdminState>,
    PathParams((tenant, id)): PathParams<(String, i64)>,
    JsonBody(limits): JsonBody<ScopeLimits>,
) -> Result<Json<ApiKey>, ApiError> {
    validate::scope_limits(&limits)?;
    let key = state.store.set_key_limits(&Actor::admin(), &tenant, id, &limits).await?;
    state.changed.notify_one();
    Ok(Json(key))
}

#[utoipa::path(delete, path = "/admin/api/tenants/{name}/keys/{id}/limits", tag = "keys",
    params(("name" = String, Path, description = "Tenant name"), ("id" = i64, Path, description = "Key id")),
    responses(
        (status = 200, description = "The key, without limits of its own (its tenant's still hold)", body = ApiKey),
        (status = 404, description = "No such tenant or key", body = ErrorBody),
    ))]
pub(crate) async fn clear_key_limits(
    State(state): State<AdminState>,
    PathParams((tenant, id)): PathParams<(String, i64)>,
) -> Result<Json<ApiKey>, ApiError> {
    let key = state.store.set_key_limits(&Actor::admin(), &tenant, id, &ScopeLimits::default()).await?;
    state.changed.notify_one();
    Ok(Json(key))
}

#[utoipa::path(get, path = "/admin/api/tenants/{name}/models/{model}/limits", tag = "tenants",
    params(
        ("name" = String, Path, description = "Tenant name"),
        ("model" = String, Path, description = "The model name as requests give it, percent-encoded (`/` as `%2F`)", pattern = r"^[^\s\x00-\x1f\x7f-\x9f]{1,256}$"),
    ),
    responses(
        (status = 200, description = "The tenant's limits for this model", body = ModelLimits),
        (status = 404, description = "No such tenant, or no limits for this model", body = ErrorBody),
    ))]
pub(crate) async fn get_model_limits(
    State(state): State<AdminState>,
    PathParams((tenant, model)): PathParams<(String, String)>,
) -> Result<Json<ModelLimits>, ApiError> {
    let all = state.store.list_model_limits(&tenant).await?;
    let found = all.into_iter().find(|m| m.model == model);
    found.map(Json).ok_or_else(|| StoreError::not_found("model limits", format!("{tenant}/model/{model}")).into())
}

/// Replaces the tenant's limits for one model; every replica enforces them within a second.
///
/// A request for this model takes these limits besides its tenant's (and its key's); a limit
/// not set here is the `ratelimit` binding's `per_model` value, if any. At least one limit must
/// be set: `DELETE` removes a model's limits. Over a limit: `429` as for the tenant's limits,
/// the message naming "this model".
#[utoipa::path(put, path = "/admin/api/tenants/{name}/models/{model}/limits", tag = "tenants", request_body = ScopeLimits,
    params(
        ("name" = String, Path, description = "Tenant name"),
        ("model" = String, Path, description = "The model name as requests give it, percent-encoded (`/` as `%2F`)", pattern = r"^[^\s\x00-\x1f\x7f-\x9f]{1,256}$"),
    ),
    responses(
        (status = 200, description = "The limits now in force for this model (absent or null = not limited by this model's entry)", body = ModelLimits,
            links(
                ("get" = (operation_id = "get_model_limits",
                    parameters(("name" = "$request.path.name"), ("model" = "$request.path.model")))),
                ("delete" = (operation_id = "delete_model_limits",
                    parameters(("name" = "$request.path.name"), ("model" = "$request.path.model")))),
            )),
        (status = 404, description = "No such tenant", body = ErrorBody),
        (status = 422, description = "A value out of range, a model name that is not one, or no limit set", body = ErrorBody),
    ))]
pub(crate) async fn set_model_limits(
    State(state): State<AdminState>,
    PathParams((tenant, model)): PathParams<(String, String)>,
    JsonBody(limits): JsonBody<ScopeLimits>,
) -> Result<Json<ModelLimits>, ApiError> {
    validate::model_limits(&model, &limits)?;
    let set = state.store.set_model_limits(&Actor::admin(), &tenant, &model, &limits).await?;
    state.changed.notify_one();
    Ok(Json(set))
}

#[utoipa::path(delete, path = "/admin/api/tenants/{name}/models/{model}/limits", tag = "tenants",
    params(
        ("name" = String, Path, description = "Tenant name"),
        ("model" = String, Path, description = "The model name as requests give it, percent-encoded (`/` as `%2F`)", pattern = r"^[^\s\x00-\x1f\x7f-\x9f]{1,256}$"),
    ),
    responses(
        (status = 204, description = "Removed: the model is limited by the tenant's limits (and `per_model`) only"),
        (status = 404, description = "No such tenant, or no limits for this model", body = ErrorBody),
    ))]
pub(crate) async fn delete_model_limits(
    State(state): State<AdminState>,
    PathParams((tenant, model)): PathParams<(String, String)>,
) -> Result<StatusCode, ApiError> {
    state.store.delete_model_limits(&Actor::admin(), &tenant, &model).await?;
    state.changed.notify_one();
    Ok(StatusCode::NO_CONTENT)
}
