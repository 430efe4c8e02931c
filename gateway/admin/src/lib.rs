//! Sluice's admin API: JSON over HTTP at `/admin/api/…` for tenants, keys, limits, SLOs,
//! pools and endpoints, plugins and their bindings, usage and the audit log, and reloading the
//! gateway's config file (see `docs/admin-api.md`; the OpenAPI document is
//! `docs/admin-api.openapi.json`).
//!
//! Handlers are thin: HTTP → validation ([`sluice_store_model::validate`]) → one [`Backend`]
//! call → JSON. Every mutation is audited by the store (actor `admin`) and then signalled on
//! [`AdminState::changed`], which the gateway waits on to reload its snapshot. The router has
//! the full paths, so the server mounts it as is on its admin listener.

mod auth;
pub mod error;
mod extract;
mod openapi;
mod routes;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::extract::OriginalUri;
use axum::response::IntoResponse;
use axum::{Extension, Router};
use http::{Method, StatusCode, header};
use serde::{Deserialize, Serialize};
use sluice_store_model::Backend;
use sluice_store_model::validate::BindingMaxima;
use tokio::sync::Notify;
use utoipa::ToSchema;

pub use error::{ApiError, ErrorBody, ErrorDetail};
pub use routes::MAX_PLUGIN_BYTES;

/// Where the OpenAPI document is served (without authentication: it holds no data).
pub const OPENAPI_PATH: &str = "/admin/api/openapi.json";

/// Checks an uploaded plugin component before it is stored.
pub trait PluginInspector: Send + Sync {
    /// Validates the component against the plugin contract and returns its manifest (the hooks
    /// it exports, the capabilities it imports), or why it cannot be used.
    fn inspect(&self, wasm: &[u8]) -> Result<serde_json::Value, String>;

    /// The largest `timeout_ms` and `max_memory_bytes` a stored binding may ask for. The memory
    /// maximum is the plugin engine's (`[plugin_host] max_memory_bytes`); the default is the
    /// engine's default size and [`sluice_store_model::validate::MAX_BINDING_TIMEOUT_MS`], so an
    /// inspector over an engine configured otherwise should say so here.
    fn binding_maxima(&self) -> BindingMaxima {
        BindingMaxima::default()
    }
}

/// Re-reads the gateway's config file and applies what can change at runtime
/// (`POST /admin/api/reload`). The gateway implements it; see [`router_with_reload`].
pub trait Reload: Send + Sync {
    /// Applies the file, or refuses it and keeps the running configuration (an [`ApiError`]
    /// saying why: `400 invalid_config` naming the field for a file that does not load).
    fn reload(&self) -> Pin<Box<dyn Future<Output = Result<ReloadReport, ApiError>> + Send + '_>>;
}

/// How the reload handler finds the gateway.
pub(crate) type SharedReload = Arc<dyn Reload>;

/// The answer to a successful reload.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReloadReport {
    /// What this reload changed, one line each (tenants and keys written to the store, TLS
    /// certificate replaced, plugin bindings loaded, …); empty when the file matched what was
    /// running.
    pub applied: Vec<String>,
    /// Settings that differ from the running ones but take effect only after a restart
    /// (`server.listen`, `database`, …), each with what stays in force meanwhile.
    pub restart_required: Vec<String>,
}

/// What the handlers share.
#[derive(Clone)]
pub struct AdminState {
    pub store: Arc<dyn Backend>,
    /// The admin token; `None` (or empty) keeps every data route closed with 503.
    pub token: Option<Arc<str>>,
    pub plugins: Arc<dyn PluginInspector>,
    /// Notified after every successful mutation.
    pub changed: Arc<Notify>,
}

/// The admin API's routes, under their full paths (`/admin/api/tenants`, …).
pub fn router(state: AdminState) -> Router {
    let (api, _) = routes::api().split_for_parts();
    let api = api.route_layer(axum::middleware::from_fn_with_state(state.clone(), auth::require_token));
    let document = openapi_json();
    Router::new()
        .merge(api)
        .route(
            OPENAPI_PATH,
            axum::routing::get(move || {
                let document = document.clone();
                async move { ([(header::CONTENT_TYPE, "application/json")], document) }
            }),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

/// [`router`], with `POST /admin/api/reload` answered by `reload` (without it, that route
/// answers 409 `reload_unavailable`).
pub fn router_with_reload(state: AdminState, reload: Arc<dyn Reload>) -> Router {
    router(state).layer(Extension(reload))
}

/// The OpenAPI 3 document, generated from the handlers' annotations.
pub fn openapi() -> utoipa::openapi::OpenApi {
    openapi::document(routes::api().into_openapi())
}

/// The document as served and as committed: pretty-printed JSON with a trailing newline.
pub fn openapi_json() -> String {
    let mut text = openapi().to_pretty_json().unwrap_or_else(|e| {
        tracing::error!(error = %e, "cannot serialise the OpenAPI document");
        "{}".to_owned()
    });
    text.push('\n');
    text
}

async fn not_found(method: Method, OriginalUri(uri): OriginalUri) -> impl IntoResponse {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no admin API route for {method} {}", uri.path()))
}

async fn method_not_allowed(method: Method, OriginalUri(uri): OriginalUri) -> impl IntoResponse {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{} does not accept {method}", uri.path()),
    )
}
