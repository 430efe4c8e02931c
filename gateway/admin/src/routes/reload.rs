//! `POST /admin/api/reload`: the gateway re-reads its config file.

use axum::{Extension, Json};
use http::StatusCode;

use crate::error::{ApiError, ErrorBody};
use crate::{GatewayHooks, ReloadReport};

#[utoipa::path(post, path = "/admin/api/reload", tag = "operations",
    responses(
        (status = 200, description = "The config file was read and what can change at runtime was applied; \
                                      `restart_required` lists the changed settings that wait for a restart",
         body = ReloadReport),
        (status = 400, description = "The file does not load (`code`: `invalid_config`; `param` names the field \
                                      when one is to blame); nothing was applied and the running configuration \
                                      stays in force", body = ErrorBody),
        (status = 409, description = "There is no config file to re-read: the gateway was started without one \
                                      (the embedded default), or this admin API does not run inside a gateway \
                                      (`code`: `reload_unavailable`)", body = ErrorBody),
        (status = 503, description = "No admin token is configured, or the database is unavailable (the file's \
                                      tenants and pools could not be written; nothing was applied)",
         body = ErrorBody),
    ))]
pub(crate) async fn reload(hooks: Option<Extension<GatewayHooks>>) -> Result<Json<ReloadReport>, ApiError> {
    let Some(Extension(hooks)) = hooks else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "reload_unavailable",
            "this admin API is not attached to a gateway that can reload its configuration",
        ));
    };
    Ok(Json(hooks.reload.reload().await?))
}
