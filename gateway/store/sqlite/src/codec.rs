//! How values are spelled in the database: enums as the same snake_case words the API uses
//! and the schema's CHECK constraints list, unsigned counts as SQLite's signed 64-bit integers.

use sluice_store_model::{EngineFlavor, FailurePolicy, PoolApi, Priority, Scope, StoreError, TenantStatus, Timestamp};

use crate::error::{corrupt, json};

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
        other => Err(corrupt("tenant status", other)),
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
        other => Err(corrupt("tenant priority", other)),
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
        other => Err(corrupt("endpoint flavor", other)),
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
        other => Err(corrupt("failure policy", other)),
    }
}

/// `(scope_kind, scope_name)` as the plugin_bindings table keeps a scope.
pub(crate) fn scope_parts(scope: &Scope) -> (&'static str, Option<&str>) {
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
        (kind, name) => Err(corrupt("binding scope", format!("{kind} {name:?}"))),
    }
}

/// Limits are validated to fit before they get here; this only keeps the conversion honest.
pub(crate) fn to_i64(field: &'static str, value: Option<u64>) -> Result<Option<i64>, StoreError> {
    value.map(|v| i64::try_from(v).map_err(|_| StoreError::invalid(field, "is too large"))).transpose()
}

pub(crate) fn to_u64(what: &str, value: Option<i64>) -> Result<Option<u64>, StoreError> {
    value.map(|v| u64::try_from(v).map_err(|_| corrupt(what, v))).transpose()
}

pub(crate) fn to_u32(what: &str, value: i64) -> Result<u32, StoreError> {
    u32::try_from(value).map_err(|_| corrupt(what, value))
}

pub(crate) fn to_i32(what: &str, value: i64) -> Result<i32, StoreError> {
    i32::try_from(value).map_err(|_| corrupt(what, value))
}

/// A pool's `apis` column: a JSON list of names; NULL or an empty list is the default.
pub(crate) fn pool_apis(text: Option<&str>) -> Result<Vec<PoolApi>, StoreError> {
    let apis: Vec<PoolApi> = match text {
        Some(text) => serde_json::from_str(text).map_err(|e| json("pool apis", e))?,
        None => Vec::new(),
    };
    Ok(PoolApi::from_stored(&apis))
}

/// The `apis` column for `apis`: the names without repeats, in [`PoolApi::ALL`] order.
pub(crate) fn pool_apis_text(apis: &[PoolApi]) -> String {
    serde_json::Value::from_iter(PoolApi::normalized(apis).into_iter().map(PoolApi::name)).to_string()
}

pub(crate) fn ts(ms: i64) -> Timestamp {
    Timestamp::from_unix_ms(ms)
}

pub(crate) fn now_ms() -> i64 {
    Timestamp::now().unix_ms()
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
