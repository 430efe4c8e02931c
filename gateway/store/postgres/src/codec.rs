//! How model values are spelled in columns: enums as the snake_case text the schema's CHECK
//! constraints list (the same spelling as the admin API's JSON), lists as JSONB arrays.

use sluice_store_model::{
    EngineFlavor, FailurePolicy, Limits, PoolApi, Priority, Scope, StoreError, TenantStatus, Timestamp,
};

fn unexpected(column: &str, value: &str) -> StoreError {
    StoreError::Database(format!("unexpected {column} {value:?} in the database"))
}

pub(crate) fn status_str(status: TenantStatus) -> &'static str {
    match status {
        TenantStatus::Active => "active",
        TenantStatus::Suspended => "suspended",
    }
}

pub(crate) fn status(text: &str) -> Result<TenantStatus, StoreError> {
    match text {
        "active" => Ok(TenantStatus::Active),
        "suspended" => Ok(TenantStatus::Suspended),
        _ => Err(unexpected("tenant status", text)),
    }
}

pub(crate) fn priority_str(priority: Priority) -> &'static str {
    match priority {
        Priority::High => "high",
        Priority::Normal => "normal",
        Priority::Low => "low",
    }
}

pub(crate) fn priority(text: &str) -> Result<Priority, StoreError> {
    match text {
        "high" => Ok(Priority::High),
        "normal" => Ok(Priority::Normal),
        "low" => Ok(Priority::Low),
        _ => Err(unexpected("priority", text)),
    }
}

pub(crate) fn flavor_str(flavor: EngineFlavor) -> &'static str {
    match flavor {
        EngineFlavor::Vllm => "vllm",
        EngineFlavor::Sglang => "sglang",
        EngineFlavor::Trtllm => "trtllm",
        EngineFlavor::LlamaCpp => "llama_cpp",
        EngineFlavor::Openai => "openai",
    }
}

pub(crate) fn flavor(text: &str) -> Result<EngineFlavor, StoreError> {
    match text {
        "vllm" => Ok(EngineFlavor::Vllm),
        "sglang" => Ok(EngineFlavor::Sglang),
        "trtllm" => Ok(EngineFlavor::Trtllm),
        "llama_cpp" => Ok(EngineFlavor::LlamaCpp),
        "openai" => Ok(EngineFlavor::Openai),
        _ => Err(unexpected("engine flavor", text)),
    }
}

pub(crate) fn policy_str(policy: FailurePolicy) -> &'static str {
    match policy {
        FailurePolicy::Open => "open",
        FailurePolicy::Closed => "closed",
    }
}

pub(crate) fn policy(text: &str) -> Result<FailurePolicy, StoreError> {
    match text {
        "open" => Ok(FailurePolicy::Open),
        "closed" => Ok(FailurePolicy::Closed),
        _ => Err(unexpected("failure policy", text)),
    }
}

/// `(scope_kind, scope_name)` as stored.
pub(crate) fn scope_columns(scope: &Scope) -> (&'static str, Option<&str>) {
    match scope {
        Scope::Global => ("global", None),
        Scope::Tenant(name) => ("tenant", Some(name)),
        Scope::Model(name) => ("model", Some(name)),
    }
}

pub(crate) fn scope(kind: &str, name: Option<String>) -> Result<Scope, StoreError> {
    match (kind, name) {
        ("global", None) => Ok(Scope::Global),
        ("tenant", Some(name)) => Ok(Scope::Tenant(name)),
        ("model", Some(name)) => Ok(Scope::Model(name)),
        (kind, _) => Err(unexpected("binding scope", kind)),
    }
}

/// Limits and counters are `u64` in the model and BIGINT here; validation keeps them in range.
pub(crate) fn to_i64(field: &'static str, value: Option<u64>) -> Result<Option<i64>, StoreError> {
    value.map(|v| i64::try_from(v).map_err(|_| StoreError::invalid(field, "is too large"))).transpose()
}

pub(crate) fn to_u64(column: &str, value: Option<i64>) -> Result<Option<u64>, StoreError> {
    value.map(|v| u64::try_from(v).map_err(|_| unexpected(column, &v.to_string()))).transpose()
}

/// A binding's deadline: `u32` milliseconds in the model, BIGINT (>= 1 by CHECK) here.
pub(crate) fn timeout_ms(value: Option<i64>) -> Result<Option<u32>, StoreError> {
    value.map(|v| u32::try_from(v).map_err(|_| unexpected("binding timeout_ms", &v.to_string()))).transpose()
}

pub(crate) fn string_list(column: &str, value: serde_json::Value) -> Result<Vec<String>, StoreError> {
    serde_json::from_value(value).map_err(|e| StoreError::Database(format!("{column} is not a list of strings: {e}")))
}

pub(crate) fn json_list(list: &[String]) -> serde_json::Value {
    serde_json::Value::Array(list.iter().cloned().map(serde_json::Value::String).collect())
}

/// A pool's `apis` column: a JSONB list of names; NULL or an empty list is the default.
pub(crate) fn pool_apis(value: Option<serde_json::Value>) -> Result<Vec<PoolApi>, StoreError> {
    let apis: Vec<PoolApi> = match value {
        Some(value) => serde_json::from_value(value)
            .map_err(|e| StoreError::Database(format!("pool apis is not a list of API names: {e}")))?,
        None => Vec::new(),
    };
    Ok(PoolApi::from_stored(&apis))
}

/// The `apis` column for `apis`: the names without repeats, in [`PoolApi::ALL`] order.
pub(crate) fn pool_apis_json(apis: &[PoolApi]) -> serde_json::Value {
    PoolApi::normalized(apis).into_iter().map(|a| serde_json::Value::from(a.name())).collect()
}

pub(crate) fn ts(ms: i64) -> Timestamp {
    Timestamp::from_unix_ms(ms)
}

pub(crate) fn now_ms() -> i64 {
    Timestamp::now().unix_ms()
}

/// A `tenant_limits` row; `None` columns are unlimited.
pub(crate) fn limits(
    requests_per_minute: Option<i64>,
    tokens_per_minute: Option<i64>,
    max_concurrency: Option<i64>,
    monthly_token_budget: Option<i64>,
    allowed_models: Option<serde_json::Value>,
) -> Result<Limits, StoreError> {
    Ok(Limits {
        requests_per_minute: to_u64("requests_per_minute", requests_per_minute)?,
        tokens_per_minute: to_u64("tokens_per_minute", tokens_per_minute)?,
        max_concurrency: to_u64("max_concurrency", max_concurrency)?,
        monthly_token_budget: to_u64("monthly_token_budget", monthly_token_budget)?,
        allowed_models: allowed_models.map(|v| string_list("allowed_models", v)).transpose()?,
    })
}

/// SLO targets are `u32` milliseconds in the model and INTEGER (> 0 by CHECK) here.
pub(crate) fn slo_ms(column: &str, value: Option<i32>) -> Result<Option<u32>, StoreError> {
    value.map(|v| u32::try_from(v).map_err(|_| unexpected(column, &v.to_string()))).transpose()
}

/// A row's four limit columns (`api_keys`, `model_limits`) as [`ScopeLimits`]: sqlx gives each
/// query a record type of its own, so this names the fields rather than taking a type.
macro_rules! scope_limits_of {
    ($row:expr) => {
        sluice_store_model::ScopeLimits::from_columns([
            $row.requests_per_minute,
            $row.tokens_per_minute,
            $row.max_concurrency,
            $row.monthly_token_budget,
        ])
    };
}
pub(crate) use scope_limits_of;
