//! Everything that can go wrong with a request, mapped to HTTP in one exhaustive `match`.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use sluice_metrics::{Api, Outcome};
use sluice_openai::ErrorBody;
use sluice_openai::agents::anthropic_error;

use crate::body::ResponseBody;
use crate::upstream::{QueueRejection, RequestSize};

/// Which upstream timeout fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeoutPhase {
    FirstByte,
    Idle,
    Total,
}

impl TimeoutPhase {
    pub fn label(self) -> &'static str {
        match self {
            TimeoutPhase::FirstByte => "timeout_first_byte",
            TimeoutPhase::Idle => "timeout_idle",
            TimeoutPhase::Total => "timeout_total",
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum GatewayError {
    #[error("missing API key: send it as 'Authorization: Bearer <key>'")]
    MissingApiKey,
    #[error("invalid API key")]
    InvalidApiKey,
    #[error("this tenant is suspended; contact the gateway's operators")]
    TenantSuspended,
    #[error("this API key may not use the model '{0}'")]
    ModelNotAllowed(String),
    #[error("unknown path {0}")]
    UnknownPath(String),
    #[error("method {method} is not allowed on {path}")]
    MethodNotAllowed { method: String, path: String },
    #[error("request body is larger than the {limit}-byte limit")]
    BodyTooLarge { limit: usize },
    #[error("the request body did not arrive within {after:?}")]
    BodyTimeout { after: Duration },
    #[error("could not read the request body: {0}")]
    BodyRead(String),
    #[error("invalid request body: {message}")]
    InvalidBody { message: String, param: Option<String> },
    #[error("the model '{0}' does not exist or is not served here")]
    ModelNotFound(String),
    /// The model's pool does not declare that its workers speak the request's API (the pool's
    /// `apis` setting). Translation between APIs is not done: the request is refused.
    #[error(
        "the model '{model}' is not served on {path} here: its workers are not declared to speak that API \
         (the pool's `apis` setting); use an API they speak"
    )]
    ApiNotServed { model: String, path: &'static str },
    #[error("no healthy worker is available for model '{model}'")]
    NoHealthyEndpoint { model: String },
    #[error("could not reach a worker for model '{model}' after {attempts} attempt(s): {reason}")]
    Upstream { model: String, attempts: u32, reason: String },
    #[error("the worker for model '{model}' did not answer in time ({phase:?}, {after:?})")]
    UpstreamTimeout { model: String, phase: TimeoutPhase, after: Duration },
    /// The worker closed the connection, without an answer, while taking a request whose size
    /// alone may explain it. The request is the likely cause, so no other worker is tried.
    #[error(
        "the worker for model '{model}' closed the connection without answering while receiving this request \
         ({} bytes of headers, {} bytes of body); it is likely larger than the worker accepts, so it was not retried",
        .size.head, .size.body
    )]
    UpstreamRefusedSize { model: String, size: RequestSize },
    /// Every usable worker of the pool was at its in-flight limit, and the request could not
    /// wait for a slot: it waited `waited` in the pool's queue, or the queue was full.
    #[error("{}", saturated_message(model, *reason, *waited))]
    PoolSaturated { model: String, reason: QueueRejection, waited: Duration },
    /// The gateway is short of file descriptors or memory to open a connection to a worker:
    /// its own overload, not the worker's fault.
    #[error("the gateway is overloaded and cannot reach a worker for model '{model}' right now; retry later")]
    LocalResources { model: String },
    /// The request bodies in flight already fill `server.max_inflight_body_bytes`.
    #[error(
        "the gateway is holding as many request bodies as its memory budget allows ({budget_bytes} bytes); retry shortly"
    )]
    BodyBudgetExhausted { budget_bytes: usize },
    /// This tenant's request bodies in flight already fill its share of the body budget
    /// (`server.max_inflight_body_bytes_per_tenant`).
    #[error(
        "this tenant's requests in flight already hold its share of the gateway's memory for request bodies \
         ({share_bytes} bytes); retry when some of them have finished"
    )]
    TenantBodyShareExhausted { share_bytes: usize },
    #[error("{message}")]
    PolicyDenied { plugin: String, status: u16, message: String },
    #[error("the policy plugin '{plugin}' failed ({kind}); the request was not processed")]
    PluginFailed { plugin: String, kind: &'static str },
    /// The gateway is shutting down and its grace period ran out with the stream still open.
    #[error("the gateway is shutting down; the response was cut short, retry the request")]
    ShuttingDown,
    #[error("internal error")]
    Internal(String),
}

impl GatewayError {
    pub fn status(&self) -> StatusCode {
        match self {
            GatewayError::MissingApiKey | GatewayError::InvalidApiKey => StatusCode::UNAUTHORIZED,
            GatewayError::TenantSuspended | GatewayError::ModelNotAllowed(_) => StatusCode::FORBIDDEN,
            GatewayError::UnknownPath(_) | GatewayError::ModelNotFound(_) => StatusCode::NOT_FOUND,
            GatewayError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            GatewayError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            GatewayError::BodyRead(_) | GatewayError::InvalidBody { .. } | GatewayError::ApiNotServed { .. } => {
                StatusCode::BAD_REQUEST
            }
            GatewayError::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            GatewayError::TenantBodyShareExhausted { .. } => StatusCode::TOO_MANY_REQUESTS,
            GatewayError::NoHealthyEndpoint { .. }
            | GatewayError::PoolSaturated { .. }
            | GatewayError::LocalResources { .. }
            | GatewayError::BodyBudgetExhausted { .. }
            | GatewayError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            GatewayError::Upstream { .. } => StatusCode::BAD_GATEWAY,
            GatewayError::UpstreamTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            GatewayError::UpstreamRefusedSize { size, .. } if size.head_is_large() => {
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
            }
            GatewayError::UpstreamRefusedSize { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            GatewayError::PolicyDenied { status, .. } => StatusCode::from_u16(*status)
                .ok()
                .filter(|s| s.is_client_error() || s.is_server_error())
                .unwrap_or(StatusCode::FORBIDDEN),
            GatewayError::PluginFailed { .. } => StatusCode::SERVICE_UNAVAILABLE,
            GatewayError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// OpenAI's `type` and `code`.
    fn kind_and_code(&self) -> (&'static str, &'static str) {
        match self {
            GatewayError::MissingApiKey => ("invalid_request_error", "missing_api_key"),
            GatewayError::InvalidApiKey => ("invalid_request_error", "invalid_api_key"),
            GatewayError::TenantSuspended => ("permission_error", "tenant_suspended"),
            GatewayError::ModelNotAllowed(_) => ("permission_error", "model_not_allowed"),
            GatewayError::UnknownPath(_) => ("invalid_request_error", "unknown_url"),
            GatewayError::MethodNotAllowed { .. } => ("invalid_request_error", "method_not_allowed"),
            GatewayError::BodyTooLarge { .. } => ("invalid_request_error", "request_too_large"),
            GatewayError::BodyRead(_) => ("invalid_request_error", "body_read_error"),
            GatewayError::BodyTimeout { .. } => ("invalid_request_error", "request_timeout"),
            GatewayError::InvalidBody { .. } => ("invalid_request_error", "invalid_body"),
            GatewayError::ModelNotFound(_) => ("invalid_request_error", "model_not_found"),
            GatewayError::ApiNotServed { .. } => ("invalid_request_error", "api_not_served"),
            GatewayError::NoHealthyEndpoint { .. } => ("server_error", "no_healthy_upstream"),
            GatewayError::PoolSaturated { .. } => ("server_error", "pool_saturated"),
            GatewayError::LocalResources { .. } | GatewayError::BodyBudgetExhausted { .. } => {
                ("server_error", "gateway_overloaded")
            }
            GatewayError::TenantBodyShareExhausted { .. } => ("rate_limit_exceeded", "too_many_body_bytes_in_flight"),
            GatewayError::Upstream { .. } => ("server_error", "upstream_error"),
            GatewayError::UpstreamTimeout { .. } => ("server_error", "upstream_timeout"),
            GatewayError::UpstreamRefusedSize { .. } => ("invalid_request_error", "request_too_large"),
            GatewayError::PolicyDenied { .. } if self.status().is_server_error() => ("server_error", "policy_denied"),
            GatewayError::PolicyDenied { .. } => ("invalid_request_error", "policy_denied"),
            GatewayError::PluginFailed { .. } => ("server_error", "plugin_failed"),
            GatewayError::ShuttingDown => ("server_error", "shutting_down"),
            GatewayError::Internal(_) => ("server_error", "internal_error"),
        }
    }

    fn param(&self) -> Option<&str> {
        match self {
            GatewayError::InvalidBody { param, .. } => param.as_deref(),
            GatewayError::ModelNotFound(_) | GatewayError::ModelNotAllowed(_) | GatewayError::ApiNotServed { .. } => {
                Some("model")
            }
            GatewayError::MissingApiKey
            | GatewayError::InvalidApiKey
            | GatewayError::TenantSuspended
            | GatewayError::UnknownPath(_)
            | GatewayError::MethodNotAllowed { .. }
            | GatewayError::BodyTooLarge { .. }
            | GatewayError::BodyRead(_)
            | GatewayError::BodyTimeout { .. }
            | GatewayError::NoHealthyEndpoint { .. }
            | GatewayError::PoolSaturated { .. }
            | GatewayError::LocalResources { .. }
            | GatewayError::BodyBudgetExhausted { .. }
            | GatewayError::TenantBodyShareExhausted { .. }
            | GatewayError::Upstream { .. }
            | GatewayError::UpstreamTimeout { .. }
            | GatewayError::UpstreamRefusedSize { .. }
            | GatewayError::PolicyDenied { .. }
            | GatewayError::PluginFailed { .. }
            | GatewayError::ShuttingDown
            | GatewayError::Internal(_) => None,
        }
    }

    pub fn outcome(&self) -> Outcome {
        match self {
            GatewayError::MissingApiKey
            | GatewayError::InvalidApiKey
            | GatewayError::UnknownPath(_)
            | GatewayError::MethodNotAllowed { .. }
            | GatewayError::BodyTooLarge { .. }
            | GatewayError::BodyRead(_)
            | GatewayError::BodyTimeout { .. }
            | GatewayError::InvalidBody { .. }
            | GatewayError::ModelNotFound(_)
            | GatewayError::ApiNotServed { .. }
            | GatewayError::TenantSuspended
            | GatewayError::ModelNotAllowed(_) => Outcome::ClientError,
            GatewayError::PolicyDenied { .. } if self.status().is_server_error() => Outcome::Unavailable,
            GatewayError::PolicyDenied { .. } if self.status() == StatusCode::TOO_MANY_REQUESTS => Outcome::RateLimited,
            GatewayError::PolicyDenied { .. } => Outcome::ClientError,
            GatewayError::TenantBodyShareExhausted { .. } => Outcome::RateLimited,
            GatewayError::NoHealthyEndpoint { .. }
            | GatewayError::PoolSaturated { .. }
            | GatewayError::LocalResources { .. }
            | GatewayError::BodyBudgetExhausted { .. }
            | GatewayError::PluginFailed { .. }
            | GatewayError::ShuttingDown => Outcome::Unavailable,
            GatewayError::Upstream { .. } => Outcome::UpstreamError,
            GatewayError::UpstreamTimeout { .. } => Outcome::UpstreamTimeout,
            // The worker refused it, as it would with a 413 of its own.
            GatewayError::UpstreamRefusedSize { .. } => Outcome::UpstreamRejected,
            GatewayError::Internal(_) => Outcome::InternalError,
        }
    }

    /// The OpenAI-shaped body. Internal errors say only "internal error"; details go to the log.
    pub fn body(&self) -> ErrorBody {
        let (kind, code) = self.kind_and_code();
        ErrorBody::new(self.to_string(), kind, self.param(), Some(code))
    }

    pub fn into_response(self) -> Response<ResponseBody> {
        let status = self.status();
        let mut response = Response::new(ResponseBody::full(Bytes::from(self.body().to_json())));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        match self {
            GatewayError::MissingApiKey | GatewayError::InvalidApiKey => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            GatewayError::NoHealthyEndpoint { .. }
            | GatewayError::PoolSaturated { .. }
            | GatewayError::LocalResources { .. }
            | GatewayError::BodyBudgetExhausted { .. }
            | GatewayError::TenantBodyShareExhausted { .. }
            | GatewayError::PluginFailed { .. }
            | GatewayError::ShuttingDown => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            GatewayError::MethodNotAllowed { .. } => {
                headers.insert(header::ALLOW, HeaderValue::from_static("POST"));
            }
            GatewayError::UnknownPath(_)
            | GatewayError::TenantSuspended
            | GatewayError::ModelNotAllowed(_)
            | GatewayError::BodyTooLarge { .. }
            | GatewayError::BodyRead(_)
            | GatewayError::BodyTimeout { .. }
            | GatewayError::InvalidBody { .. }
            | GatewayError::ModelNotFound(_)
            | GatewayError::ApiNotServed { .. }
            | GatewayError::Upstream { .. }
            | GatewayError::UpstreamTimeout { .. }
            | GatewayError::UpstreamRefusedSize { .. }
            | GatewayError::PolicyDenied { .. }
            | GatewayError::Internal(_) => {}
        }
        response
    }
}

fn saturated_message(model: &str, reason: QueueRejection, waited: Duration) -> String {
    match reason {
        QueueRejection::Timeout => format!(
            "every worker for model '{model}' is at capacity and the request waited {waited:?} for a slot; retry later"
        ),
        QueueRejection::QueueFull => {
            format!("every worker for model '{model}' is at capacity and its queue is full; retry later")
        }
    }
}

/// An `event: error`-free SSE error payload, as vLLM sends when a stream fails midway; OpenAI
/// SDKs raise it as an API error.
pub fn sse_error_event(error: &GatewayError) -> Bytes {
    let mut out = b"data: ".to_vec();
    out.extend_from_slice(&error.body().to_json());
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

/// The stream's error event in the request's API. OpenAI's SDKs (chat completions and the
/// Responses API alike) raise on a data-only event whose data has an `error` member;
/// Anthropic's raise on `event: error` with an Anthropic error body.
pub fn sse_error_event_in(api: Option<Api>, error: &GatewayError) -> Bytes {
    match api {
        Some(Api::Messages) => {
            let mut out = b"event: error\ndata: ".to_vec();
            out.extend_from_slice(&anthropic_error::error_body(error.status().as_u16(), &error.to_string()));
            out.extend_from_slice(b"\n\n");
            Bytes::from(out)
        }
        Some(Api::ChatCompletions | Api::Completions | Api::Embeddings | Api::Responses) | None => {
            sse_error_event(error)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_streams_end_with_anthropic_error_events() {
        let event = sse_error_event_in(Some(Api::Messages), &GatewayError::ShuttingDown);
        let text = std::str::from_utf8(&event).unwrap();
        let data = text.strip_prefix("event: error\ndata: ").unwrap().trim_end();
        let body: serde_json::Value = serde_json::from_str(data).unwrap();
        assert_eq!(body["error"]["type"], "overloaded_error");
        assert_eq!(
            sse_error_event_in(Some(Api::Responses), &GatewayError::ShuttingDown),
            sse_error_event(&GatewayError::ShuttingDown)
        );
    }

    fn body_of(e: &GatewayError) -> serde_json::Value {
        serde_json::from_slice(&e.body().to_json()).unwrap()
    }

    #[test]
    fn client_errors_map_to_4xx_with_openai_shape() {
        let cases = [
            (GatewayError::MissingApiKey, 401, "missing_api_key"),
            (GatewayError::InvalidApiKey, 401, "invalid_api_key"),
            (GatewayError::ModelNotFound("x".into()), 404, "model_not_found"),
            (GatewayError::BodyTooLarge { limit: 10 }, 413, "request_too_large"),
            (GatewayError::BodyTimeout { after: Duration::from_secs(1) }, 408, "request_timeout"),
            (GatewayError::InvalidBody { message: "bad".into(), param: Some("messages".into()) }, 400, "invalid_body"),
        ];
        for (err, status, code) in cases {
            assert_eq!(err.status().as_u16(), status, "{err}");
            assert_eq!(err.outcome(), Outcome::ClientError);
            let v = body_of(&err);
            assert_eq!(v["error"]["code"], code);
            assert_eq!(v["error"]["type"], "invalid_request_error");
            assert!(v["error"]["message"].as_str().unwrap().len() > 3);
        }
        assert_eq!(body_of(&GatewayError::ModelNotFound("x".into()))["error"]["param"], "model");
    }

    #[test]
    fn upstream_errors_map_to_5xx_and_hide_internals() {
        assert_eq!(GatewayError::NoHealthyEndpoint { model: "m".into() }.status(), 503);
        assert_eq!(GatewayError::Upstream { model: "m".into(), attempts: 3, reason: "HTTP 500".into() }.status(), 502);
        let t = GatewayError::UpstreamTimeout {
            model: "m".into(),
            phase: TimeoutPhase::Idle,
            after: Duration::from_secs(1),
        };
        assert_eq!(t.status(), 504);
        assert_eq!(t.outcome(), Outcome::UpstreamTimeout);
        let internal = GatewayError::Internal("mutex poisoned at foo.rs:12".into());
        assert_eq!(internal.status(), 500);
        assert!(!body_of(&internal).to_string().contains("foo.rs"));
    }

    #[test]
    fn a_request_a_worker_refused_for_its_size_is_the_clients_413_or_431() {
        let body =
            GatewayError::UpstreamRefusedSize { model: "m".into(), size: RequestSize { head: 300, body: 6 << 20 } };
        assert_eq!(body.status(), 413);
        assert_eq!(body.outcome(), Outcome::UpstreamRejected);
        let v = body_of(&body);
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert_eq!(v["error"]["code"], "request_too_large");
        assert!(v["error"]["message"].as_str().unwrap().contains("6291456 bytes of body"), "{v}");
        let head =
            GatewayError::UpstreamRefusedSize { model: "m".into(), size: RequestSize { head: 64 << 10, body: 10 } };
        assert_eq!(head.status(), 431);
    }

    #[test]
    fn plugin_denials_and_failures() {
        let denied = GatewayError::PolicyDenied { plugin: "p".into(), status: 429, message: "slow down".into() };
        assert_eq!(denied.status(), 429);
        assert_eq!(denied.outcome(), Outcome::RateLimited, "a plugin's 429 is a limit, shown as rejected");
        let forbidden = GatewayError::PolicyDenied { plugin: "p".into(), status: 403, message: "no".into() };
        assert_eq!(forbidden.outcome(), Outcome::ClientError);
        assert_eq!(body_of(&denied)["error"]["message"], "slow down");
        assert_eq!(body_of(&denied)["error"]["code"], "policy_denied");
        let odd = GatewayError::PolicyDenied { plugin: "p".into(), status: 200, message: "x".into() };
        assert_eq!(odd.status(), 403, "a denial is never a success");
        let failed = GatewayError::PluginFailed { plugin: "deny-list".into(), kind: "timeout" };
        assert_eq!(failed.status(), 503);
        assert_eq!(failed.outcome(), Outcome::Unavailable);
        let v = body_of(&failed);
        assert_eq!(v["error"]["code"], "plugin_failed");
        assert_eq!(v["error"]["type"], "server_error");
        assert!(v["error"]["message"].as_str().unwrap().contains("'deny-list' failed (timeout)"));
    }

    #[test]
    fn responses_carry_helpful_headers() {
        let r = GatewayError::MissingApiKey.into_response();
        assert_eq!(r.headers()[header::WWW_AUTHENTICATE], "Bearer");
        let r = GatewayError::NoHealthyEndpoint { model: "m".into() }.into_response();
        assert_eq!(r.headers()[header::RETRY_AFTER], "1");
        assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");
    }

    #[test]
    fn a_saturated_pool_is_a_503_with_retry_after() {
        let e = GatewayError::PoolSaturated {
            model: "m".into(),
            reason: QueueRejection::Timeout,
            waited: Duration::from_secs(5),
        };
        assert_eq!(e.status(), 503);
        assert_eq!(e.outcome(), Outcome::Unavailable);
        let v = body_of(&e);
        assert_eq!(v["error"]["type"], "server_error");
        assert_eq!(v["error"]["code"], "pool_saturated");
        assert!(v["error"]["message"].as_str().unwrap().contains("waited 5s"), "{v}");
        assert_eq!(e.into_response().headers()[header::RETRY_AFTER], "1");
    }

    #[test]
    fn sse_error_event_is_one_event() {
        let ev = sse_error_event(&GatewayError::Internal("x".into()));
        assert!(ev.starts_with(b"data: {\"error\""));
        assert!(ev.ends_with(b"\n\n"));
    }
}
