//! Sluice's admin API: JSON over HTTP at `/admin/api/…` for tenants, keys, limits, SLOs,
//! pools and endpoints, plugins and their bindings, usage and the audit log (see
//! `docs/admin-api.md`; the OpenAPI document is `docs/admin-api.openapi.json`).
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

use std::sync::Arc;

use axum::Router;
use axum::extract::OriginalUri;
use axum::response::IntoResponse;
use http::{Method, StatusCode, header};
use sluice_store_model::Backend;
use sluice_store_model::validate::BindingMaxima;
use tokio::sync::Notify;

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
