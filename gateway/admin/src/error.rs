//! Every admin API error, in the data plane's shape: `{"error":{"message","type","param","code"}}`.
//! [`StoreError`] maps to HTTP in one exhaustive match; internals (database messages) are logged,
//! never sent.

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde::{Deserialize, Serialize};
use sluice_store_model::StoreError;
use utoipa::ToSchema;

/// The JSON body of every error (the same shape as the OpenAI-compatible data plane).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    pub message: String,
    /// `invalid_request_error`, `authentication_error`, `rate_limit_exceeded` or `server_error`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The offending field, as the API spells it (`name`, `target_attainment`, `id`, …).
    pub param: Option<String>,
    /// A stable machine-readable code: `not_found`, `conflict`, `invalid_value`, `invalid_json`, …
    pub code: Option<String>,
}

/// An error on its way to becoming a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub param: Option<String>,
    /// Seconds for a `Retry-After` header (a locked-out client).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into(), param: None, retry_after: None }
    }

    pub fn with_retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    /// A request that does not parse: not JSON, not the expected shape, a bad path or query value.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// A well-formed value the API refuses (the same status the stores' validation errors get).
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_value", format!("{field}: {}", message.into()))
            .with_param(field)
    }

    pub fn internal() -> Self {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", "internal error; see the gateway's log")
    }

    pub fn body(&self) -> ErrorBody {
        let kind = match self.status {
            StatusCode::UNAUTHORIZED => "authentication_error",
            StatusCode::TOO_MANY_REQUESTS => "rate_limit_exceeded",
            s if s.is_server_error() => "server_error",
            _ => "invalid_request_error",
        };
        ErrorBody {
            error: ErrorDetail {
                message: self.message.clone(),
                kind: kind.to_owned(),
                param: self.param.clone(),
                code: Some(self.code.to_owned()),
            },
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound { .. } => ApiError::new(StatusCode::NOT_FOUND, "not_found", error.to_string()),
            StoreError::Conflict(message) => ApiError::new(StatusCode::CONFLICT, "conflict", message),
            StoreError::Invalid { field, .. } => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_value", error.to_string()).with_param(field)
            }
            StoreError::Unavailable(ref detail) => {
                tracing::warn!(%detail, "admin API: database unavailable");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "database_unavailable",
                    "the database is unavailable; try again shortly",
                )
            }
            StoreError::Migration(ref detail) | StoreError::Database(ref detail) => {
                tracing::error!(%detail, "admin API: store error");
                ApiError::internal()
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body())).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(secs) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_errors_map_to_statuses_and_hide_internals() {
        let cases = [
            (StoreError::not_found("tenant", "acme"), StatusCode::NOT_FOUND, None),
            (StoreError::Conflict("tenant \"acme\" exists".into()), StatusCode::CONFLICT, None),
            (StoreError::invalid("name", "bad"), StatusCode::UNPROCESSABLE_ENTITY, Some("name")),
            (StoreError::Unavailable("tcp 10.0.0.1 refused".into()), StatusCode::SERVICE_UNAVAILABLE, None),
            (StoreError::Database("syntax error at SELECT".into()), StatusCode::INTERNAL_SERVER_ERROR, None),
            (StoreError::Migration("checksum".into()), StatusCode::INTERNAL_SERVER_ERROR, None),
        ];
        for (store, status, param) in cases {
            let api = ApiError::from(store);
            assert_eq!(api.status, status);
            assert_eq!(api.param.as_deref(), param);
            assert!(!api.message.contains("SELECT") && !api.message.contains("10.0.0.1"), "{}", api.message);
        }
    }

    #[test]
    fn body_has_the_data_plane_shape() {
        let body = serde_json::to_value(ApiError::invalid("target_attainment", "must be in (0, 1]").body()).unwrap();
        assert_eq!(body["error"]["param"], "target_attainment");
        assert_eq!(body["error"]["type"], "invalid_request_error");
        assert_eq!(body["error"]["code"], "invalid_value");
        assert!(body["error"]["message"].as_str().unwrap().starts_with("target_attainment: "));
    }
}
