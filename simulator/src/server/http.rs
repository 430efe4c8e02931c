//! Response bodies, the error-to-HTTP mapping and request-body reading.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sluice_openai::ErrorBody;

/// Request bodies above this are refused (a 1M-token prompt is a few MiB of JSON).
const MAX_BODY_BYTES: usize = 32 << 20;

pub(crate) type Body = UnsyncBoxBody<Bytes, BodyError>;

/// Why a response body stopped early. Hyper resets the stream (HTTP/2) or closes the
/// connection (HTTP/1.1) when a body yields one, which is exactly what the faults want.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BodyError {
    #[error("connection dropped by fault injection after {0} tokens")]
    InjectedDrop(u32),
    #[error("the engine stopped before the response was complete")]
    EngineStopped,
}

/// Everything a request can fail with, mapped to HTTP in one place.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    #[error("{message}")]
    BadRequest { message: String, param: Option<&'static str> },
    #[error("The model `{0}` does not exist.")]
    ModelNotFound(String),
    #[error("no such route")]
    RouteNotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("request body larger than {MAX_BODY_BYTES} bytes")]
    PayloadTooLarge,
    #[error("simulated worker failure (fault injection)")]
    InjectedFault,
    #[error("the engine is not running")]
    EngineUnavailable,
    /// A Responses request continues a response this worker did not store (vLLM's words).
    #[error("Response with id '{0}' not found.")]
    ResponseNotFound(String),
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>, param: Option<&'static str>) -> Self {
        ApiError::BadRequest { message: message.into(), param }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::ModelNotFound(_) | ApiError::RouteNotFound | ApiError::ResponseNotFound(_) => {
                StatusCode::NOT_FOUND
            }
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::InjectedFault => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::EngineUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// Low-cardinality name for logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            ApiError::BadRequest { .. } => "bad_request",
            ApiError::ModelNotFound(_) => "model_not_found",
            ApiError::RouteNotFound => "route_not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::PayloadTooLarge => "payload_too_large",
            ApiError::InjectedFault => "injected_fault",
            ApiError::EngineUnavailable => "engine_unavailable",
            ApiError::ResponseNotFound(_) => "response_not_found",
        }
    }

    fn body(&self) -> ErrorBody {
        let message = self.to_string();
        match self {
            ApiError::BadRequest { param, .. } => ErrorBody::new(message, "invalid_request_error", *param, None),
            ApiError::ModelNotFound(_) => {
                ErrorBody::new(message, "invalid_request_error", Some("model"), Some("model_not_found"))
            }
            ApiError::RouteNotFound | ApiError::MethodNotAllowed | ApiError::PayloadTooLarge => {
                ErrorBody::new(message, "invalid_request_error", None, Some(self.label()))
            }
            ApiError::InjectedFault | ApiError::EngineUnavailable => {
                ErrorBody::new(message, "server_error", None, Some(self.label()))
            }
            ApiError::ResponseNotFound(_) => {
                ErrorBody::new(message, "invalid_request_error", Some("response_id"), None)
            }
        }
    }

    pub fn into_response(self) -> Response<Body> {
        if let ApiError::ResponseNotFound(_) = &self {
            // vLLM's body exactly: its `code` is the status, a number.
            let body = serde_json::json!({"error": {
                "message": self.to_string(), "type": "invalid_request_error", "param": "response_id", "code": 404,
            }});
            return bytes_response(self.status(), "application/json", body.to_string());
        }
        bytes_response(self.status(), "application/json", self.body().to_json())
    }
}

pub(crate) fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed_unsync()
}

pub(crate) fn bytes_response(
    status: StatusCode,
    content_type: &'static str,
    bytes: impl Into<Bytes>,
) -> Response<Body> {
    let mut resp = Response::new(full(bytes));
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// What `Faults::garbage_body` answers: a proxy's error page, not JSON.
pub(crate) const GARBAGE: &[u8] = b"<html><body>502 Bad Gateway \xff\xfe</body></html>";

/// A `200` whose body is not JSON (fault injection).
pub(crate) fn garbage_response() -> Response<Body> {
    bytes_response(StatusCode::OK, "application/json", Bytes::from_static(GARBAGE))
}

pub(crate) fn json_response<T: Serialize>(value: &T) -> Response<Body> {
    match serde_json::to_vec(value) {
        Ok(bytes) => bytes_response(StatusCode::OK, "application/json", bytes),
        // Our response types hold only strings and numbers; this cannot happen in practice.
        Err(_) => ApiError::EngineUnavailable.into_response(),
    }
}

/// A response whose body fails at once: headers go out, then the connection is cut.
pub(crate) fn dropped_response(tokens: u32) -> Response<Body> {
    let stream = futures_util::stream::once(async move {
        // Pending once so hyper flushes the headers before the failure closes the connection.
        tokio::task::yield_now().await;
        Err::<http_body::Frame<Bytes>, _>(BodyError::InjectedDrop(tokens))
    });
    let mut resp = Response::new(http_body_util::StreamBody::new(stream).boxed_unsync());
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// Reads and parses a JSON request body.
pub(crate) async fn read_json<T: DeserializeOwned>(body: Incoming) -> Result<T, ApiError> {
    let bytes = match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return Err(ApiError::PayloadTooLarge);
        }
        Err(e) => return Err(ApiError::bad_request(format!("reading body: {e}"), None)),
    };
    serde_json::from_slice(&bytes).map_err(|e| ApiError::bad_request(format!("invalid request body: {e}"), None))
}
