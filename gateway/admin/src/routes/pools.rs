//! `/admin/api/pools…`: pools of workers and their endpoints.

use axum::Json;
use axum::extract::State;
use http::StatusCode;
use serde::{Deserialize, Serialize};
use sluice_store_model::{Actor, NewEndpoint, NewPool, Pool, PoolPatch, validate};
use utoipa::ToSchema;

use crate::AdminState;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{JsonBody, PathParams};

/// The body of `PUT …/endpoints/{endpoint}`.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DrainBody {
    /// `true`: finish what it has and receive nothing new; `false`: back in rotation.
    pub drained: bool,
}

#[utoipa::path(get, path = "/admin/api/pools", tag = "pools",
    responses((status = 200, description = "Every pool with its endpoints", body = [Pool])))]
pub(crate) async fn list_pools(State(state): State<AdminState>) -> Result<Json<Vec<Pool>>, ApiError> {
    Ok(Json(state.store.list_pools().await?))
}

#[utoipa::path(post, path = "/admin/api/pools", tag = "pools", request_body = NewPool,
    responses(
        (status = 201, description = "Created (add endpoints next)", body = Pool, links(
            ("get" = (operation_id = "get_pool", parameters(("name" = "$response.body#/name")))),
            ("update" = (operation_id = "update_pool", parameters(("name" = "$response.body#/name")))),
            ("delete" = (operation_id = "delete_pool", parameters(("name" = "$response.body#/name")))),
            ("add_endpoint" = (operation_id = "add_endpoint", parameters(("name" = "$response.body#/name")))),
        )),
        (status = 400, description = "The request does not parse, or `apis` names an unknown API (`param`: `apis[i]`)", body = ErrorBody),
        (status = 409, description = "A pool with this name exists", body = ErrorBody),
        (status = 422, description = "Invalid name or models, or an empty `apis`", body = ErrorBody),
    ))]
pub(crate) async fn create_pool(
    State(state): State<AdminState>,
    JsonBody(body): JsonBody<NewPool>,
) -> Result<(StatusCode, Json<Pool>), ApiError> {
    validate::name("name", &body.name)?;
    if body.models.is_empty() {
        return Err(ApiError::invalid("models", "a pool serves at least one model"));
    }
    for model in &body.models {
        validate::model("models", model)?;
    }
    let apis = body.apis.as_deref().map(validate::pool_apis).transpose()?;
    let pool = state.store.create_pool(&Actor::admin(), &NewPool { apis, ..body }).await?;
    state.changed.notify_one();
    Ok((StatusCode::CREATED, Json(pool)))
}

#[utoipa::path(get, path = "/admin/api/pools/{name}", tag = "pools",
    params(("name" = String, Path, description = "Pool name")),
    responses(
        (status = 200, description = "The pool with its endpoints", body = Pool),
        (status = 404, description = "No such pool", body = ErrorBody),
    ))]
pub(crate) async fn get_pool(
    State(state): State<AdminState>,
    PathParams(name): PathParams<String>,
) -> Result<Json<Pool>, ApiError> {
    Ok(Json(state.store.get_pool(&name).await?))
}

/// Changes what a pool states about its workers; the gateway routes by it within a second. A
/// pool the config file declares gets the file's values back at the next reload or restart.
#[utoipa::path(patch, path = "/admin/api/pools/{name}", tag = "pools", request_body = PoolPatch,
    params(("name" = String, Path, description = "Pool name")),
    responses(
        (status = 200, description = "Updated (absent fields unchanged)", body = Pool),
        (status = 400, description = "The request does not parse, or `apis` names an unknown API (`param`: `apis[i]`)", body = ErrorBody),
        (status = 404, description = "No such pool", body = ErrorBody),
        (status = 422, description = "An empty `apis`", body = ErrorBody),
    ))]
pub(crate) async fn update_pool(
    State(state): State<AdminState>,
    PathParams(name): PathParams<String>,
    JsonBody(patch): JsonBody<PoolPatch>,
) -> Result<Json<Pool>, ApiError> {
    let Some(apis) = patch.apis else {
        // Nothing to change: no write, no audit entry.
        return Ok(Json(state.store.get_pool(&name).await?));
    };
    let apis = validate::pool_apis(&apis)?;
    let pool = state.store.set_pool_apis(&Actor::admin(), &name, &apis).await?;
    state.changed.notify_one();
    Ok(Json(pool))
}

#[utoipa::path(delete, path = "/admin/api/pools/{name}", tag = "pools",
    params(("name" = String, Path, description = "Pool name")),
    responses(
        (status = 204, description = "Deleted with its endpoints"),
        (status = 404, description = "No such pool", body = ErrorBody),
    ))]
pub(crate) async fn delete_pool(
    State(state): State<AdminState>,
    PathParams(name): PathParams<String>,
) -> Result<StatusCode, ApiError> {
    state.store.delete_pool(&Actor::admin(), &name).await?;
    state.changed.notify_one();
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/admin/api/pools/{name}/endpoints", tag = "pools", request_body = NewEndpoint,
    params(("name" = String, Path, description = "Pool name")),
    responses(
        (status = 201, description = "The pool with the new endpoint", body = Pool, links(
            ("drain" = (operation_id = "set_endpoint_drained",
                parameters(("name" = "$request.path.name"), ("endpoint" = "$request.body#/name")))),
            ("remove" = (operation_id = "remove_endpoint",
                parameters(("name" = "$request.path.name"), ("endpoint" = "$request.body#/name")))),
        )),
        (status = 404, description = "No such pool", body = ErrorBody),
        (status = 409, description = "The pool has an endpoint with this name", body = ErrorBody),
        (status = 422, description = "Invalid name, URL or weight", body = ErrorBody),
    ))]
pub(crate) async fn add_endpoint(
    State(state): State<AdminState>,
    PathParams(pool): PathParams<String>,
    JsonBody(body): JsonBody<NewEndpoint>,
) -> Result<(StatusCode, Json<Pool>), ApiError> {
    validate::name("name", &body.name)?;
    validate::endpoint_url(&body.url)?;
    if body.weight == 0 {
        return Err(ApiError::invalid("weight", "must be at least 1 (drain an endpoint to stop its traffic)"));
    }
    if i32::try_from(body.weight).is_err() {
        return Err(ApiError::invalid("weight", format!("must be at most {}", i32::MAX)));
    }
    let pool = state.store.add_endpoint(&Actor::admin(), &pool, &body).await?;
    state.changed.notify_one();
    Ok((StatusCode::CREATED, Json(pool)))
}

#[utoipa::path(put, path = "/admin/api/pools/{name}/endpoints/{endpoint}", tag = "pools", request_body = DrainBody,
    params(("name" = String, Path, description = "Pool name"), ("endpoint" = String, Path, description = "Endpoint name")),
    responses(
        (status = 200, description = "The pool after the change", body = Pool),
        (status = 404, description = "No such pool or endpoint", body = ErrorBody),
    ))]
pub(crate) async fn set_endpoint_drained(
    State(state): State<AdminState>,
    PathParams((pool, endpoint)): PathParams<(String, String)>,
    JsonBody(body): JsonBody<DrainBody>,
) -> Result<Json<Pool>, ApiError> {
    let pool = state.store.set_endpoint_drained(&Actor::admin(), &pool, &endpoint, body.drained).await?;
    state.changed.notify_one();
    Ok(Json(pool))
}

#[utoipa::path(delete, path = "/admin/api/pools/{name}/endpoints/{endpoint}", tag = "pools",
    params(("name" = String, Path, description = "Pool name"), ("endpoint" = String, Path, description = "Endpoint name")),
    responses(
        (status = 200, description = "The pool without the endpoint", body = Pool),
        (status = 404, description = "No such pool or endpoint", body = ErrorBody),
    ))]
pub(crate) async fn remove_endpoint(
    State(state): State<AdminState>,
    PathParams((pool, endpoint)): PathParams<(String, String)>,
) -> Result<Json<Pool>, ApiError> {
    let pool = state.store.remove_endpoint(&Actor::admin(), &pool, &endpoint).await?;
    state.changed.notify_one();
    Ok(Json(pool))
}
