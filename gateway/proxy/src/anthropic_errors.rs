//! Every error answer to a Messages API request, in Anthropic's shape: the gateway's own
//! refusals (authentication, unknown model, bad body, limits, no worker), a plugin's local
//! answer (the rate limiter's `429`) and a worker's error alike. Status and headers
//! (`retry-after`, `x-ratelimit-*`) stay as they are; only the body is rewritten.

use bytes::Bytes;
use http::{HeaderValue, Response, header};
use sluice_openai::agents::anthropic_error;

use crate::body::ResponseBody;

/// Rewrites `response`'s body if it is an error not already in Anthropic's shape.
pub fn reshape(response: &mut Response<ResponseBody>) {
    let status = response.status();
    if !status.is_client_error() && !status.is_server_error() {
        return;
    }
    let body = match response.body() {
        ResponseBody::Full(Some(bytes)) => bytes.clone(),
        ResponseBody::Full(None) => Bytes::new(),
        // A stream started with a 2xx; its errors are events (see `relay.rs`).
        ResponseBody::Stream(_) => return,
    };
    let Some(reshaped) = anthropic_error::reshape(status.as_u16(), &body) else { return };
    *response.body_mut() = ResponseBody::full(reshaped);
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response.headers_mut().remove(header::CONTENT_LENGTH);
}

#[cfg(test)]
mod tests {
    use http::StatusCode;

    use super::*;
    use crate::error::GatewayError;

    fn body_of(response: Response<ResponseBody>) -> serde_json::Value {
        match response.into_body() {
            ResponseBody::Full(Some(bytes)) => serde_json::from_slice(&bytes).unwrap(),
            _ => panic!("not a whole body"),
        }
    }

    #[test]
    fn gateway_errors_become_anthropic_errors() {
        let mut response = GatewayError::InvalidApiKey.into_response();
        reshape(&mut response);
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let body = body_of(response);
        assert_eq!(body["type"], "error");
        assert_eq!(body["error"]["type"], "authentication_error");
        assert_eq!(body["error"]["message"], "invalid API key");
    }

    #[test]
    fn successes_are_untouched() {
        let mut response = Response::new(ResponseBody::full(Bytes::from_static(b"{\"id\":1}")));
        reshape(&mut response);
        assert_eq!(body_of(response), serde_json::json!({"id": 1}));
    }
}
