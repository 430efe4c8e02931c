//! `/admin/api/tenants…`: tenants, their limits and SLOs.

use axum::Json;
use axum::extract::State;
use http::StatusCode;
use sluice_store_model::{Actor, Limits, NewTenant, Slo, Tenant, TenantDetail, TenantPatch, validate};

use crate::AdminState;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{JsonBody, JsonList, PathParams};

#[utoipa::path(get, path = "/admin/api/tenants", tag = "tenants",
    responses((status = 200, description = "Every tenant, by name", body = [Tenant])))]
pub(crate) async fn list_tenants(State(state): State<AdminState>) -> Result<Json<Vec<Tenant>>, ApiError> {
    Ok(Json(state.store.list_tenants().await?))
}

#[utoipa::path(post, path = "/admin/api/tenants", tag = "tenants", request_body = NewTenant,
    responses(
        (status = 201, description = "Created", body = Tenant, links(
            ("get" = (operation_id = "get_tenant", parameters(("name" = "$response.body#/name")))),
            ("update" = (operation_id = "update_tenant", parameters(("name" = "$response.body#/name")))),
            ("delete" = (operation_id = "delete_tenant", parameters(("name" = "$response.body#/name")))),
            ("limits" = (operation_id = "set_limits", parameters(("name" = "$response.body#/name")))),
            ("slos" = (operation_id = "set_slos", parameters(("name" = "$response.body#/name")))),
            ("usage" = (operation_id = "tenant_usage", parameters(("name" = "$response.body#/name")))),
            ("create_key" = (operation_id = "create_key", parameters(("name" = "$response.body#/name")))),
            ("keys" = (operation_id = "list_keys", parameters(("name" = "$response.body#/name")))),
        )),
        (status = 409, description = "A tenant with this name exists", body = ErrorBody),
        (status = 422, description = "Invalid name", body = ErrorBody),
    ))]
pub(crate) async fn create_tenant(
    State(state): State<AdminState>,
    JsonBody(body): JsonBody<NewTenant>,
) -> Result<(StatusCode, Json<Tenant>), ApiError> {
    validate::name("name", &body.name)?;
    let tenant = state.store.create_tenant(&Actor::admin(), &body).await?;
    state.changed.notify_one();
    Ok((StatusCode::CREATED, Json(tenant)))
}

#[utoipa::path(get, path = "/admin/api/tenants/{name}", tag = "tenants",
    params(("name" = String, Path, description = "Tenant name")),
    responses(
        (status = 200, description = "The tenant with its limits (its own and per model), SLOs and keys (prefixes only, with their limits)", body = TenantDetail),
        (status = 404, description = "No such tenant", body = ErrorBody),
    ))]
pub(crate) async fn get_tenant(
    State(state): State<AdminState>,
    PathParams(name): PathParams<String>,
) -> Result<Json<TenantDetail>, ApiError> {
    Ok(Json(state.store.get_tenant(&name).await?))
}

#[utoipa::path(patch, path = "/admin/api/tenants/{name}", tag = "tenants", request_body = TenantPatch,
    params(("name" = String, Path, description = "Tenant name")),
    responses(
        (status = 200, description = "Updated (absent fields unchanged)", body = Tenant),
        (status = 404, description = "No such tenant", body = ErrorBody),
    ))]
pub(crate) async fn update_tenant(
    State(state): State<AdminState>,
    PathParams(name): PathParams<String>,
    JsonBody(patch): JsonBody<TenantPatch>,
) -> Result<Json<Tenant>, ApiError> {
    let tenant = state.store.update_tenant(&Actor::admin(), &name, &patch).await?;
    state.changed.notify_one();
    Ok(Json(tenant))
}

#[utoipa::path(delete, path = "/admin/api/tenants/{name}", tag = "tenants",
    params(("name" = String, Path, description = "Tenant name")),
    responses(
        (status = 204, description = "Deleted with its keys, limits, SLOs and tenant-scoped bindings; usage stays"),
        (status = 404, description = "No such tenant", body = ErrorBody),
    ))]
pub(crate) async fn delete_tenant(
    State(state): State<AdminState>,
    PathParams(name): PathParams<String>,
) -> Result<StatusCode, ApiError> {
    state.store.delete_tenant(&Actor::admin(), &name).await?;
    state.changed.notify_one();
    Ok(StatusCode::NO_CONTENT)
}

/// Replaces a tenant's limits; every replica enforces them within a second.
///
/// The built-in `ratelimit` plugin enforces `requests_per_minute`, `tokens_per_minute`,
/// `max_concurrency` and `monthly_token_budget` on the OpenAI API: over a limit, a request gets
/// `429` with an OpenAI error body whose `type` is `rate_limit_exceeded` (`code`
/// `rate_limit_exceeded`, `request_too_large` or `concurrency_limit_exceeded`) or, for a spent
/// monthly budget, `insufficient_quota`; with `Retry-After` and `retry-after-ms`. Every answer a
/// limit applies to carries `x-ratelimit-limit-requests`, `x-ratelimit-remaining-requests`,
/// `x-ratelimit-reset-requests`, `x-ratelimit-limit-tokens`, `x-ratelimit-remaining-tokens` and
/// `x-ratelimit-reset-tokens`. See docs/rate-limits.md.
#[utoipa::path(put, path = "/admin/api/tenants/{name}/limits", tag = "tenants", request_body = Limits,
    params(("name" = String, Path, description = "Tenant name")),
    responses(
        (status = 200, description = "The limits now in force (absent or null = unlimited)", body = Limits),
        (status = 404, description = "No such tenant", body = ErrorBody),
        (status = 422, description = "A value out of range", body = ErrorBody),
    ))]
pub(crate) async fn set_limits(
    State(state): State<AdminState>,
    PathParams(name): PathParams<String>,
    JsonBody(limits): JsonBody<Limits>,
) -> Result<Json<Limits>, ApiError> {
    validate::limits(&limits)?;
    let limits = state.store.set_limits(&Actor::admin(), &name, &limits).await?;
    state.changed.notify_one();
    Ok(Json(limits))
}

#[utoipa::path(put, path = "/admin/api/tenants/{name}/slos", tag = "tenants", request_body = [Slo],
    params(("name" = String, Path, description = "Tenant name")),
    responses(
        (status = 200, description = "The tenant's SLOs, replaced by this list", body = [Slo]),
        (status = 404, description = "No such tenant", body = ErrorBody),
        (status = 422, description = "An invalid or duplicated SLO", body = ErrorBody),
    ))]
pub(crate) async fn set_slos(
    State(state): State<AdminState>,
    PathParams(name): PathParams<String>,
    JsonList(slos): JsonList<Slo>,
) -> Result<Json<Vec<Slo>>, ApiError> {
    validate::slos(&slos)?;
    for slo in &slos {
        // Stored as 32-bit signed integers.
        for (field, value) in [("ttft_p95_ms", slo.ttft_p95_ms), ("tpot_p95_ms", slo.tpot_p95_ms)] {
            if value.is_some_and(|v| i32::try_from(v).is_err()) {
                return Err(ApiError::invalid(field, format!("must be at most {}", i32::MAX)));
            }
        }
    }
    let slos = state.store.set_slos(&Actor::admin(), &name, &slos).await?;
    state.changed.notify_one();
    Ok(Json(slos))
}
