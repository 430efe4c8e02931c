//! `/admin/api/bindings…`: where plugins run (globally, for a tenant, for a model), in which
//! order and with which failure policy.

use axum::Json;
use axum::extract::State;
use http::StatusCode;
use serde::{Deserialize, Serialize};
use sluice_store_model::{Actor, Binding, FailurePolicy, Scope, validate};
use utoipa::ToSchema;

use crate::AdminState;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{JsonBody, PathParams};

/// The body of `POST /admin/api/bindings`.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewBinding {
    pub plugin: String,
    pub scope: Scope,
    /// Lower runs first.
    #[serde(default)]
    pub order: i32,
    #[serde(default)]
    pub failure_policy: FailurePolicy,
    /// The plugin's configuration (a JSON object), read through its `config` capability.
    #[serde(default = "empty_object")]
    #[schema(value_type = Object)]
    pub config: serde_json::Value,
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}

#[utoipa::path(get, path = "/admin/api/bindings", tag = "plugins",
    responses((status = 200, description = "Every binding, by order then id", body = [Binding])))]
pub(crate) async fn list_bindings(State(state): State<AdminState>) -> Result<Json<Vec<Binding>>, ApiError> {
    Ok(Json(state.store.list_bindings().await?))
}

#[utoipa::path(post, path = "/admin/api/bindings", tag = "plugins", request_body = NewBinding,
    responses(
        (status = 201, description = "Bound", body = Binding),
        (status = 404, description = "No such plugin (or tenant, for a tenant scope)", body = ErrorBody),
        (status = 409, description = "The plugin is already bound at this scope", body = ErrorBody),
        (status = 422, description = "Invalid plugin name, scope or config", body = ErrorBody),
    ))]
pub(crate) async fn create_binding(
    State(state): State<AdminState>,
    JsonBody(body): JsonBody<NewBinding>,
) -> Result<(StatusCode, Json<Binding>), ApiError> {
    validate::name("plugin", &body.plugin)?;
    match &body.scope {
        Scope::Global => {}
        Scope::Tenant(name) => validate::name("scope.name", name)?,
        Scope::Model(name) => validate::model("scope.name", name)?,
    }
    if !body.config.is_object() {
        return Err(ApiError::invalid("config", "must be a JSON object"));
    }
    let binding = state
        .store
        .bind_plugin(&Actor::admin(), &body.plugin, &body.scope, body.order, body.failure_policy, &body.config)
        .await?;
    state.changed.notify_one();
    Ok((StatusCode::CREATED, Json(binding)))
}

#[utoipa::path(delete, path = "/admin/api/bindings/{id}", tag = "plugins",
    params(("id" = i64, Path, description = "Binding id")),
    responses(
        (status = 204, description = "Unbound"),
        (status = 404, description = "No such binding", body = ErrorBody),
    ))]
pub(crate) async fn delete_binding(
    State(state): State<AdminState>,
    PathParams(id): PathParams<i64>,
) -> Result<StatusCode, ApiError> {
    state.store.unbind_plugin(&Actor::admin(), id).await?;
    state.changed.notify_one();
    Ok(StatusCode::NO_CONTENT)
}
