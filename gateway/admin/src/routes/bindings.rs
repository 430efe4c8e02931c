//! `/admin/api/bindings…`: where plugins run (globally, for a tenant, for a model), in which
//! order and with which failure policy.

use axum::Json;
use axum::extract::State;
use http::StatusCode;
use std::borrow::Cow;

use serde::Deserialize;
use sluice_store_model::{Actor, Binding, FailurePolicy, Scope, validate};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::{PartialSchema, ToSchema};

use crate::AdminState;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{JsonBody, PathParams};
use crate::routes::{MODEL_PATTERN, NAME_PATTERN};

/// The body of `POST /admin/api/bindings`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewBinding {
    #[schema(pattern = "^[a-z0-9][a-z0-9._-]{0,63}$")]
    pub plugin: String,
    pub scope: ScopeBody,
    /// Lower runs first.
    #[serde(default)]
    pub order: i32,
    #[serde(default)]
    pub failure_policy: FailurePolicy,
    /// The plugin's configuration (a JSON object), read through its `config` capability.
    #[serde(default = "empty_object")]
    #[schema(value_type = Object)]
    pub config: serde_json::Value,
    /// The deadline of each call into the plugin, in milliseconds, up to the host's maximum
    /// (1000 ms); absent: the host's default (10 ms).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 1000)]
    pub timeout_ms: Option<u32>,
    /// The most linear memory an instance may grow to, in bytes, from 1 MiB up to the plugin
    /// engine's maximum (`[plugin_host] max_memory_bytes`, 64 MiB unless configured); absent:
    /// the host's default (16 MiB, or the engine's maximum if lower).
    #[serde(default)]
    #[schema(minimum = 1048576)]
    pub max_memory_bytes: Option<u64>,
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}

/// [`Scope`] as a request spells it; unlike the stored type it refuses keys it does not know
/// (`{"kind": "global", "name": "x"}` is a mistake worth reporting).
#[derive(Debug, Deserialize)]
#[serde(try_from = "serde_json::Map<String, serde_json::Value>")]
pub(crate) enum ScopeBody {
    Global,
    Tenant(String),
    Model(String),
}

/// Built from a JSON object only (serde would also take `["tenant", "acme"]`).
impl TryFrom<serde_json::Map<String, serde_json::Value>> for ScopeBody {
    type Error = String;

    fn try_from(mut object: serde_json::Map<String, serde_json::Value>) -> Result<Self, String> {
        let kind = object.remove("kind").ok_or("`kind` is missing: global, tenant or model")?;
        let name = object.remove("name");
        if let Some(extra) = object.keys().next() {
            return Err(format!("unknown field `{extra}`, expected `kind` or `name`"));
        }
        let named = |name: Option<serde_json::Value>| match name {
            Some(serde_json::Value::String(name)) => Ok(name),
            Some(_) => Err("`name` must be a string".to_owned()),
            None => Err("`name` is missing".to_owned()),
        };
        match kind.as_str() {
            Some("global") if name.is_none() => Ok(ScopeBody::Global),
            Some("global") => Err("a global scope has no `name`".to_owned()),
            Some("tenant") => named(name).map(ScopeBody::Tenant),
            Some("model") => named(name).map(ScopeBody::Model),
            _ => Err(format!("unknown kind {kind}, expected global, tenant or model")),
        }
    }
}

impl From<ScopeBody> for Scope {
    fn from(scope: ScopeBody) -> Scope {
        match scope {
            ScopeBody::Global => Scope::Global,
            ScopeBody::Tenant(name) => Scope::Tenant(name),
            ScopeBody::Model(name) => Scope::Model(name),
        }
    }
}

// Written out because the derive cannot say `additionalProperties: false` per variant.
impl PartialSchema for ScopeBody {
    fn schema() -> RefOr<Schema> {
        let variant = |kind: &str, name_pattern: Option<&str>| {
            let mut object = ObjectBuilder::new()
                .property("kind", ObjectBuilder::new().schema_type(Type::String).enum_values(Some([kind])))
                .required("kind")
                .additional_properties(Some(AdditionalProperties::FreeForm(false)));
            if let Some(pattern) = name_pattern {
                object = object
                    .property("name", ObjectBuilder::new().schema_type(Type::String).pattern(Some(pattern)))
                    .required("name");
            }
            object
        };
        OneOfBuilder::new()
            .item(variant("global", None))
            .item(variant("tenant", Some(NAME_PATTERN)))
            .item(variant("model", Some(MODEL_PATTERN)))
            .description(Some("Where the binding applies: everywhere, for one tenant, or for one model"))
            .into()
    }
}

impl ToSchema for ScopeBody {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("BindingScope")
    }
}

#[utoipa::path(get, path = "/admin/api/bindings", tag = "plugins",
    responses((status = 200, description = "Every binding, by order then id", body = [Binding])))]
pub(crate) async fn list_bindings(State(state): State<AdminState>) -> Result<Json<Vec<Binding>>, ApiError> {
    Ok(Json(state.store.list_bindings().await?))
}

#[utoipa::path(post, path = "/admin/api/bindings", tag = "plugins", request_body = NewBinding,
    responses(
        (status = 201, description = "Bound", body = Binding,
            links(("delete" = (operation_id = "delete_binding", parameters(("id" = "$response.body#/id")))))),
        (status = 404, description = "No such plugin (or tenant, for a tenant scope)", body = ErrorBody),
        (status = 409, description = "The plugin is already bound at this scope", body = ErrorBody),
        (status = 422, description = "Invalid plugin name, scope or config, or a limit beyond the host's maxima \
            (`param` names `timeout_ms` or `max_memory_bytes`)", body = ErrorBody),
    ))]
pub(crate) async fn create_binding(
    State(state): State<AdminState>,
    JsonBody(body): JsonBody<NewBinding>,
) -> Result<(StatusCode, Json<Binding>), ApiError> {
    validate::name("plugin", &body.plugin)?;
    match &body.scope {
        ScopeBody::Global => {}
        ScopeBody::Tenant(name) => validate::name("scope.name", name)?,
        ScopeBody::Model(name) => validate::model("scope.name", name)?,
    }
    let scope = Scope::from(body.scope);
    if !body.config.is_object() {
        return Err(ApiError::invalid("config", "must be a JSON object"));
    }
    validate::binding_limits(body.timeout_ms, body.max_memory_bytes, &state.plugins.binding_maxima())?;
    let new = sluice_store_model::NewBinding {
        plugin: body.plugin,
        scope,
        order: body.order,
        failure_policy: body.failure_policy,
        config: body.config,
        timeout_ms: body.timeout_ms,
        max_memory_bytes: body.max_memory_bytes,
    };
    let binding = state.store.bind_plugin(&Actor::admin(), &new).await?;
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
