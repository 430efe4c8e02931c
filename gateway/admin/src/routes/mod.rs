//! The route table: every path with its handlers, registered once for axum and for the OpenAPI
//! document.

mod bindings;
mod cache;
mod keys;
mod live_ticket;
mod plugins;
mod pools;
mod reload;
mod reports;
mod scope_limits;
mod tenants;

use axum::extract::DefaultBodyLimit;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AdminState;

/// What `sluice_store_model::validate::name` accepts, for the OpenAPI document.
pub(crate) const NAME_PATTERN: &str = "^[a-z0-9][a-z0-9._-]{0,63}$";
/// What `sluice_store_model::validate::model` accepts (up to its 256-byte limit).
pub(crate) const MODEL_PATTERN: &str = r"^[^\s\x00-\x1f\x7f-\x9f]{1,256}$";

/// The largest plugin component accepted by `POST /admin/api/plugins/{name}/versions`.
pub const MAX_PLUGIN_BYTES: usize = 64 << 20;

pub(crate) fn api() -> OpenApiRouter<AdminState> {
    // Only the upload route gets the large body limit; JSON routes keep axum's 2 MB default.
    let uploads = OpenApiRouter::new()
        .routes(routes!(plugins::upload_plugin_version, plugins::list_plugin_versions))
        .layer(DefaultBodyLimit::max(MAX_PLUGIN_BYTES));
    OpenApiRouter::new()
        .routes(routes!(tenants::list_tenants, tenants::create_tenant))
        .routes(routes!(tenants::get_tenant, tenants::update_tenant, tenants::delete_tenant))
        .routes(routes!(tenants::set_limits))
        .routes(routes!(tenants::set_slos))
        .routes(routes!(reports::tenant_usage))
        .routes(routes!(keys::create_key, keys::list_keys))
        .routes(routes!(keys::revoke_key))
        .routes(routes!(scope_limits::set_key_limits, scope_limits::clear_key_limits))
        .routes(routes!(
            scope_limits::get_model_limits,
            scope_limits::set_model_limits,
            scope_limits::delete_model_limits
        ))
        .routes(routes!(pools::list_pools, pools::create_pool))
        .routes(routes!(pools::get_pool, pools::update_pool, pools::delete_pool))
        .routes(routes!(pools::add_endpoint))
        .routes(routes!(pools::set_endpoint_drained, pools::remove_endpoint))
        .routes(routes!(plugins::list_plugins))
        .merge(uploads)
        .routes(routes!(plugins::activate_plugin))
        .routes(routes!(plugins::rollback_plugin))
        .routes(routes!(bindings::list_bindings, bindings::create_binding))
        .routes(routes!(bindings::delete_binding))
        .routes(routes!(reports::usage))
        .routes(routes!(reports::audit))
        .routes(routes!(reload::reload))
        .routes(routes!(cache::purge))
        .routes(routes!(live_ticket::issue_live_ticket))
}
