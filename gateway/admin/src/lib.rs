//! Sluice's admin API: JSON over HTTP at `/admin/api/…` for tenants, keys, limits, SLOs,
//! pools and endpoints, plugins and their bindings, usage and the audit log, reloading the
//! gateway's config file and purging its response cache (see `docs/admin-api.md`; the OpenAPI document is
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

pub use auth::{AdminAuth, AuthSettings, LiveTicket, Refusal, TICKET_TTL, client_address, query_param};
pub use error::{ApiError, ErrorBody, ErrorDetail};
pub use routes::MAX_PLUGIN_BYTES;

/// Where the OpenAPI document is served (without authentication: it holds no data).
pub const OPENAPI_PATH: &str = "/admin/api/openapi.json";
/// The live stream's path; the gateway serves it, with tickets from [`AdminAuth::issue_ticket`].
pub const LIVE_PATH: &str = "/admin/api/live";

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

    /// Whether `name` is a built-in plugin's, which the gateway publishes itself: uploads to it
    /// are refused. None by default (an admin API without a gateway has no built-ins).
    fn is_builtin(&self, _name: &str) -> bool {
        false
    }
}

/// Re-reads the gateway's config file and applies what can change at runtime
/// (`POST /admin/api/reload`). The gateway implements it; see [`GatewayHooks`].
pub trait Reload: Send + Sync {
    /// Applies the file, or refuses it and keeps the running configuration (an [`ApiError`]
    /// saying why: `400 invalid_config` naming the field for a file that does not load).
    fn reload(&self) -> Pin<Box<dyn Future<Output = Result<ReloadReport, ApiError>> + Send + '_>>;
}

/// Removes entries from the gateway's response cache (`POST /admin/api/cache/purge`). The
/// gateway implements it; see [`GatewayHooks`].
pub trait CachePurge: Send + Sync {
    /// Removes the entries matching every field of a checked request (at least one field, or
    /// `all`) and says how many went.
    fn purge(
        &self,
        request: CachePurgeRequest,
    ) -> Pin<Box<dyn Future<Output = Result<CachePurgeReport, ApiError>> + Send + '_>>;
}

/// What the admin API asks of the gateway it runs in. Without them (an admin API over a store
/// alone, as in tests) `POST /admin/api/reload` and `POST /admin/api/cache/purge` answer `409`.
#[derive(Clone)]
pub struct GatewayHooks {
    pub reload: Arc<dyn Reload>,
    pub cache: Arc<dyn CachePurge>,
}

/// Which response-cache entries to remove: those matching every field given.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CachePurgeRequest {
    /// Only this tenant's entries.
    #[schema(pattern = "^[a-z0-9][a-z0-9._-]{0,63}$")]
    #[serde(default)]
    pub tenant: Option<String>,
    /// Only entries for this model (the name requests give).
    #[schema(pattern = r"^[^\s\x00-\x1f\x7f-\x9f]{1,256}$")]
    #[serde(default)]
    pub model: Option<String>,
    /// Only entries whose key starts with these hex digits (a response's `x-sluice-cache-key`,
    /// or its start).
    #[schema(pattern = "^[0-9a-fA-F]{1,64}$")]
    #[serde(default)]
    pub key_prefix: Option<String>,
    /// Every entry. Required when no other field is given (an empty request never empties the
    /// cache), refused with one.
    #[serde(default)]
    pub all: bool,
}

/// The answer to a purge.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CachePurgeReport {
    /// Entries removed.
    pub purged: u64,
    /// `memory`: this replica's own entries (purge each replica); `redis`: the entries every
    /// replica shares.
    pub backend: String,
}

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
    /// The admin token check, shared with the live stream (which the gateway serves itself).
    pub auth: Arc<AdminAuth>,
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

/// [`router`] inside a gateway: reloads and cache purges reach it through `hooks`.
pub fn gateway_router(state: AdminState, hooks: GatewayHooks) -> Router {
    router(state).layer(Extension(hooks))
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
