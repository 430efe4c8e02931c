//! `/admin/api/tenants/{name}/keys…`: API keys. The secret exists only in the response to its
//! creation; the store keeps its prefix and SHA-256.

use axum::Json;
use axum::extract::State;
use http::StatusCode;
use serde::{Deserialize, Serialize};
use sluice_store_model::{Actor, ApiKey, CreatedKey, NewKey, keys, validate};
use utoipa::ToSchema;

use crate::AdminState;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{OptionalJsonBody, PathParams};

/// The optional body of `POST …/keys`.
#[derive(Debug, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewKeyBody {
    /// A label for people (`ci`, `laptop`): 1-128 characters, no control characters.
    #[serde(default)]
    #[schema(pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]{1,128}$")]
    pub name: Option<String>,
}

#[utoipa::path(post, path = "/admin/api/tenants/{name}/keys", tag = "keys",
    request_body(content = Option<NewKeyBody>, description = "Optional; an empty body creates an unnamed key"),
    params(("name" = String, Path, description = "Tenant name")),
    responses(
        (status = 201, description = "The key, with its secret in `key`: shown this once, never again", body = CreatedKey,
            links(
                ("revoke" = (operation_id = "revoke_key",
                    parameters(("name" = "$request.path.name"), ("id" = "$response.body#/id")))),
                ("limits" = (operation_id = "set_key_limits",
                    parameters(("name" = "$request.path.name"), ("id" = "$response.body#/id")))),
            )),
        (status = 404, description = "No such tenant", body = ErrorBody),
        (status = 422, description = "Invalid key name", body = ErrorBody),
    ))]
pub(crate) async fn create_key(
    State(state): State<AdminState>,
    PathParams(tenant): PathParams<String>,
    OptionalJsonBody(body): OptionalJsonBody<NewKeyBody>,
) -> Result<(StatusCode, Json<CreatedKey>), ApiError> {
    if let Some(name) = &body.name {
        validate::key_name("name", name)?;
    }
    let generated = keys::generate();
    let new = NewKey { name: body.name, prefix: generated.prefix, digest: generated.digest };
    let info = state.store.create_key(&Actor::admin(), &tenant, &new).await?;
    state.changed.notify_one();
    Ok((StatusCode::CREATED, Json(CreatedKey { key: generated.secret, info })))
}

#[utoipa::path(get, path = "/admin/api/tenants/{name}/keys", tag = "keys",
    params(("name" = String, Path, description = "Tenant name")),
    responses(
        (status = 200, description = "The tenant's keys, revoked ones included, newest first (prefixes only)", body = [ApiKey]),
        (status = 404, description = "No such tenant", body = ErrorBody),
    ))]
pub(crate) async fn list_keys(
    State(state): State<AdminState>,
    PathParams(tenant): PathParams<String>,
) -> Result<Json<Vec<ApiKey>>, ApiError> {
    Ok(Json(state.store.list_keys(&tenant).await?))
}

#[utoipa::path(delete, path = "/admin/api/tenants/{name}/keys/{id}", tag = "keys",
    params(("name" = String, Path, description = "Tenant name"), ("id" = i64, Path, description = "Key id")),
    responses(
        (status = 200, description = "The revoked key (revoking twice is harmless)", body = ApiKey),
        (status = 404, description = "No such tenant or key", body = ErrorBody),
    ))]
pub(crate) async fn revoke_key(
    State(state): State<AdminState>,
    PathParams((tenant, id)): PathParams<(String, i64)>,
) -> Result<Json<ApiKey>, ApiError> {
    let key = state.store.revoke_key(&Actor::admin(), &tenant, id).await?;
    state.changed.notify_one();
    Ok(Json(key))
}
