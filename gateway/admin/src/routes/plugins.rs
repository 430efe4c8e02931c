//! `/admin/api/plugins…`: upload components, list versions, activate, roll back.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use bytes::Bytes;
use http::{HeaderMap, StatusCode, header};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sluice_store_model::{Actor, NewPluginVersion, Plugin, PluginVersion, StoreError, validate};
use utoipa::ToSchema;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Schema, Type};

use crate::AdminState;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{JsonBody, PathParams, body_error};

/// The body of `POST …/activate`.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ActivateBody {
    #[schema(minimum = 1, maximum = 2147483647)]
    pub version: i32,
    /// The host capabilities granted to the version, by name. The version's requested
    /// capabilities (`manifest.capabilities`, what its component imports) must all be granted.
    /// Absent means none are granted: a version that imports any capability is then refused,
    /// so nothing is ever granted without the admin naming it.
    #[serde(default)]
    #[schema(schema_with = grants_schema)]
    pub grants: Vec<String>,
}

/// An array of capability names, from the list the admin API accepts.
fn grants_schema() -> impl Into<RefOr<Schema>> {
    let name = ObjectBuilder::new().schema_type(Type::String).enum_values(Some(validate::CAPABILITIES));
    ArrayBuilder::new().items(name).description(Some("Host capabilities granted to this version; absent: none"))
}

/// Refuses to activate a version whose component imports a capability not granted, naming each
/// import as the plugin host would.
fn check_grants(name: &str, version: &PluginVersion, grants: &[String], hint: &str) -> Result<(), ApiError> {
    let missing = validate::ungranted(&version.manifest, grants);
    if missing.is_empty() {
        return Ok(());
    }
    let imports: Vec<String> = missing
        .iter()
        .map(|c| format!("{} needs capability `{c}`", validate::capability_import(&version.manifest, c)))
        .collect();
    let status = if hint.is_empty() { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::CONFLICT };
    Err(ApiError::new(
        status,
        "capability_not_granted",
        format!(
            "plugin {name:?} version {} imports what is not granted: {}{hint}",
            version.version,
            imports.join("; ")
        ),
    )
    .with_param("grants"))
}

#[utoipa::path(get, path = "/admin/api/plugins", tag = "plugins",
    responses((status = 200, description = "Every plugin with its active version", body = [Plugin])))]
pub(crate) async fn list_plugins(State(state): State<AdminState>) -> Result<Json<Vec<Plugin>>, ApiError> {
    Ok(Json(state.store.list_plugins().await?))
}

#[utoipa::path(post, path = "/admin/api/plugins/{name}/versions", tag = "plugins",
    request_body(content = Vec<u8>, content_type = "application/wasm",
        description = "The component's bytes (sluice:policy@0.2.0, or 0.1.0), up to 64 MiB"),
    params(("name" = String, Path, description = "Plugin name; created on its first upload",
        pattern = "^[a-z0-9][a-z0-9._-]{0,63}$")),
    responses(
        (status = 201, description = "Stored as the next version (not yet active)", body = PluginVersion, links(
            ("versions" = (operation_id = "list_plugin_versions", parameters(("name" = "$response.body#/plugin")))),
            ("activate" = (operation_id = "activate_plugin", parameters(("name" = "$response.body#/plugin")))),
            ("rollback" = (operation_id = "rollback_plugin", parameters(("name" = "$response.body#/plugin")))),
        )),
        (status = 409, description = "These exact bytes are already a version of this plugin, or the name is a \
                                      built-in's (`cache`: the gateway publishes its versions)",
         body = ErrorBody),
        (status = 413, description = "Larger than 64 MiB", body = ErrorBody),
        (status = 422, description = "Not a component this gateway can run, or an invalid name", body = ErrorBody),
    ))]
pub(crate) async fn upload_plugin_version(
    State(state): State<AdminState>,
    PathParams(name): PathParams<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<PluginVersion>), ApiError> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !content_type.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("application/wasm") {
        return Err(ApiError::bad_request(
            "unsupported_content_type",
            "send the component's bytes as Content-Type: application/wasm",
        )
        .with_param("Content-Type"));
    }
    let bytes = body.map_err(|e| body_error(e.status(), e.body_text()))?;
    validate::name("name", &name)?;
    if state.plugins.is_builtin(&name) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!(
                "{name:?} is a built-in plugin's name: the gateway publishes its versions; upload under another name"
            ),
        )
        .with_param("name"));
    }
    if bytes.is_empty() {
        return Err(ApiError::invalid("body", "the component is empty"));
    }
    let inspector = Arc::clone(&state.plugins);
    let inspected = {
        let bytes = bytes.clone();
        // Compiling a component takes milliseconds to seconds of CPU: off the async workers.
        tokio::task::spawn_blocking(move || inspector.inspect(&bytes)).await.map_err(|e| {
            tracing::error!(error = %e, "plugin inspection panicked");
            ApiError::internal()
        })?
    };
    let manifest = inspected.map_err(|reason| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_plugin",
            format!("the component was refused: {reason}"),
        )
        .with_param("body")
    })?;
    let version =
        NewPluginVersion { plugin: name, sha256: hex::encode(Sha256::digest(&bytes)), bytes: bytes.into(), manifest };
    let stored = state.store.add_plugin_version(&Actor::admin(), &version).await?;
    state.changed.notify_one();
    Ok((StatusCode::CREATED, Json(stored)))
}

#[utoipa::path(get, path = "/admin/api/plugins/{name}/versions", tag = "plugins",
    params(("name" = String, Path, description = "Plugin name")),
    responses(
        (status = 200, description = "The plugin's versions, newest first (without their bytes)", body = [PluginVersion]),
        (status = 404, description = "No such plugin", body = ErrorBody),
    ))]
pub(crate) async fn list_plugin_versions(
    State(state): State<AdminState>,
    PathParams(name): PathParams<String>,
) -> Result<Json<Vec<PluginVersion>>, ApiError> {
    Ok(Json(state.store.list_plugin_versions(&name).await?))
}

#[utoipa::path(post, path = "/admin/api/plugins/{name}/activate", tag = "plugins", request_body = ActivateBody,
    params(("name" = String, Path, description = "Plugin name")),
    responses(
        (status = 200, description = "The plugin, now running this version with these grants wherever it is bound", body = Plugin),
        (status = 404, description = "No such plugin or version", body = ErrorBody),
        (status = 422, description = "Invalid version number or capability name, or the version imports a capability \
            that is not granted (`code: capability_not_granted`, the message names each import)", body = ErrorBody),
    ))]
pub(crate) async fn activate_plugin(
    State(state): State<AdminState>,
    PathParams(name): PathParams<String>,
    JsonBody(body): JsonBody<ActivateBody>,
) -> Result<Json<Plugin>, ApiError> {
    if body.version < 1 {
        return Err(ApiError::invalid("version", "versions count up from 1"));
    }
    let grants = validate::grants(&body.grants)?;
    let versions = state.store.list_plugin_versions(&name).await?;
    let version = versions
        .iter()
        .find(|v| v.version == body.version)
        .ok_or_else(|| StoreError::not_found("plugin version", format!("{name}@{}", body.version)))?;
    check_grants(&name, version, &grants, "")?;
    let plugin = state.store.activate_plugin_version(&Actor::admin(), &name, body.version, &grants).await?;
    state.changed.notify_one();
    Ok(Json(plugin))
}

#[utoipa::path(post, path = "/admin/api/plugins/{name}/rollback", tag = "plugins",
    params(("name" = String, Path, description = "Plugin name")),
    responses(
        (status = 200, description = "The plugin, now running the highest version below the one that was active, \
            with the grants that version was last activated with", body = Plugin),
        (status = 404, description = "No such plugin", body = ErrorBody),
        (status = 409, description = "Nothing to roll back to (no active version, or none below it), or the version \
            below imports a capability it was never granted (activate it with grants instead)", body = ErrorBody),
    ))]
pub(crate) async fn rollback_plugin(
    State(state): State<AdminState>,
    PathParams(name): PathParams<String>,
) -> Result<Json<Plugin>, ApiError> {
    let plugins = state.store.list_plugins().await?;
    let plugin = plugins.iter().find(|p| p.name == name).ok_or_else(|| StoreError::not_found("plugin", &name))?;
    let active = plugin
        .active_version
        .ok_or_else(|| StoreError::Conflict(format!("plugin {name:?} has no active version to roll back from")))?;
    let versions = state.store.list_plugin_versions(&name).await?;
    let previous = versions.iter().filter(|v| v.version < active).max_by_key(|v| v.version).ok_or_else(|| {
        StoreError::Conflict(format!("plugin {name:?} has no version below the active version {active}"))
    })?;
    // A rollback grants what the admin granted that version when it last ran; one that never
    // ran has no grants, and gets none here: granting is always the admin's explicit act.
    let grants = previous.granted.clone().unwrap_or_default();
    check_grants(&name, previous, &grants, "; activate it with grants instead")?;
    let plugin = state.store.activate_plugin_version(&Actor::admin(), &name, previous.version, &grants).await?;
    state.changed.notify_one();
    Ok(Json(plugin))
}
