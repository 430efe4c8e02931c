//! Read-only reports: usage per tenant and model over a time range, and the audit log.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use sluice_store_model::{AuditEntry, AuditQuery, Timestamp, UsageCounts, UsageQuery, UsageRow, validate};
use utoipa::{IntoParams, ToSchema};

use crate::AdminState;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{PathParams, QueryParams};

const DAY_MS: i64 = 24 * 3600 * 1000;
const DEFAULT_AUDIT_LIMIT: u32 = 100;
const MAX_AUDIT_LIMIT: u32 = 1000;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct UsageParams {
    /// Start (inclusive): RFC 3339 (`2026-11-27T13:00:00Z`) or a date (`2026-11-27`, midnight UTC).
    /// Default: 24 hours before `to`.
    #[param(
        pattern = "^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])([Tt ]([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2}))?$"
    )]
    from: Option<String>,
    /// End (exclusive), same forms. Default: now.
    #[param(
        pattern = "^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])([Tt ]([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2}))?$"
    )]
    to: Option<String>,
    /// Only this tenant.
    #[param(pattern = "^[a-z0-9][a-z0-9._-]{0,63}$")]
    tenant: Option<String>,
    /// Only this model.
    #[param(pattern = "^[^\\s\\x00-\\x1f\\x7f-\\x9f]{1,256}$")]
    model: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct TenantUsageParams {
    /// Start (inclusive): RFC 3339 or a date. Default: 24 hours before `to`.
    #[param(
        pattern = "^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])([Tt ]([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2}))?$"
    )]
    from: Option<String>,
    /// End (exclusive), same forms. Default: now.
    #[param(
        pattern = "^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])([Tt ]([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2}))?$"
    )]
    to: Option<String>,
    /// Only this model.
    #[param(pattern = "^[^\\s\\x00-\\x1f\\x7f-\\x9f]{1,256}$")]
    model: Option<String>,
}

/// Per-minute rows in `[from, to)` and their sum.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct UsageReport {
    pub from: Timestamp,
    pub to: Timestamp,
    pub tenant: Option<String>,
    pub model: Option<String>,
    pub rows: Vec<UsageRow>,
    pub totals: UsageCounts,
}

#[utoipa::path(get, path = "/admin/api/usage", tag = "usage", params(UsageParams),
    responses(
        (status = 200, description = "Usage per minute, tenant and model, with totals", body = UsageReport),
        (status = 422, description = "A timestamp that does not parse, or `to` before `from`", body = ErrorBody),
    ))]
pub(crate) async fn usage(
    State(state): State<AdminState>,
    QueryParams(params): QueryParams<UsageParams>,
) -> Result<Json<UsageReport>, ApiError> {
    if let Some(tenant) = &params.tenant {
        validate::name("tenant", tenant)?;
    }
    report(&state, params.from, params.to, params.tenant, params.model).await
}

#[utoipa::path(get, path = "/admin/api/tenants/{name}/usage", tag = "usage", params(
        ("name" = String, Path, description = "Tenant name"), TenantUsageParams),
    responses(
        (status = 200, description = "The tenant's usage per minute and model, with totals", body = UsageReport),
        (status = 422, description = "A timestamp that does not parse, or `to` before `from`", body = ErrorBody),
    ))]
pub(crate) async fn tenant_usage(
    State(state): State<AdminState>,
    PathParams(tenant): PathParams<String>,
    QueryParams(params): QueryParams<TenantUsageParams>,
) -> Result<Json<UsageReport>, ApiError> {
    report(&state, params.from, params.to, Some(tenant), params.model).await
}

async fn report(
    state: &AdminState,
    from: Option<String>,
    to: Option<String>,
    tenant: Option<String>,
    model: Option<String>,
) -> Result<Json<UsageReport>, ApiError> {
    let parse = |field: &str, text: Option<String>| {
        text.map(|t| Timestamp::parse_rfc3339(&t).map_err(|e| ApiError::invalid(field, e))).transpose()
    };
    let to = parse("to", to)?.unwrap_or_else(Timestamp::now);
    let from = parse("from", from)?.unwrap_or(Timestamp(to.0.saturating_sub(DAY_MS)));
    if to < from {
        return Err(ApiError::invalid("to", "must not be before `from`"));
    }
    if let Some(model) = &model {
        validate::model("model", model)?;
    }
    let query =
        UsageQuery { tenant: tenant.clone(), model: model.clone(), from: from.unix_seconds(), to: to.unix_seconds() };
    let rows = state.store.usage(&query).await?;
    let mut totals = UsageCounts::default();
    for row in &rows {
        totals.merge(&row.counts);
    }
    Ok(Json(UsageReport { from, to, tenant, model, rows, totals }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct AuditParams {
    /// How many entries, newest first (1-1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
    /// Only entries with an id below this one (the last id of the previous page).
    before: Option<i64>,
}

#[utoipa::path(get, path = "/admin/api/audit", tag = "audit", params(AuditParams),
    responses(
        (status = 200, description = "Admin changes, newest first", body = [AuditEntry]),
        (status = 422, description = "`limit` out of range", body = ErrorBody),
    ))]
pub(crate) async fn audit(
    State(state): State<AdminState>,
    QueryParams(params): QueryParams<AuditParams>,
) -> Result<Json<Vec<AuditEntry>>, ApiError> {
    let limit = params.limit.unwrap_or(DEFAULT_AUDIT_LIMIT);
    if !(1..=MAX_AUDIT_LIMIT).contains(&limit) {
        return Err(ApiError::invalid("limit", format!("must be between 1 and {MAX_AUDIT_LIMIT}")));
    }
    Ok(Json(state.store.audit_log(&AuditQuery { limit, before: params.before }).await?))
}
