//! The Messages API's error shape, `{"type":"error","error":{"type":…,"message":…}}`, with
//! Anthropic's error types. Anthropic's SDKs read the type from the status code and the
//! message from the body; an OpenAI-shaped body would reach their users as an unreadable blob.

use serde::{Deserialize, Serialize};

use crate::error::ErrorBody;

/// Anthropic's error type for an HTTP status.
pub fn error_type(status: u16) -> &'static str {
    match status {
        400 | 405 | 408 | 422 => "invalid_request_error",
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 | 431 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        400..=499 => "invalid_request_error",
        _ => "api_error",
    }
}

#[derive(Serialize, Deserialize)]
struct Body<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    error: Detail<'a>,
}

#[derive(Serialize, Deserialize)]
struct Detail<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    message: &'a str,
}

/// The error body for `status` with `message`.
pub fn error_body(status: u16, message: &str) -> Vec<u8> {
    let body = Body { kind: "error", error: Detail { kind: error_type(status), message } };
    serde_json::to_vec(&body)
        .unwrap_or_else(|_| br#"{"type":"error","error":{"type":"api_error","message":"internal error"}}"#.to_vec())
}

/// An error answer (`status`, `body`) in Anthropic's shape: `None` when it already is one,
/// else the same message re-wrapped (an OpenAI-shaped body's `error.message`; any other body's
/// text, cut to a readable length).
pub fn reshape(status: u16, body: &[u8]) -> Option<Vec<u8>> {
    if let Ok(anthropic) = serde_json::from_slice::<Body<'_>>(body)
        && anthropic.kind == "error"
    {
        return None;
    }
    if let Ok(openai) = serde_json::from_slice::<ErrorBody>(body) {
        return Some(error_body(status, &openai.error.message));
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    let message = match text.char_indices().nth(500) {
        Some((cut, _)) => &text[..cut],
        None if text.is_empty() => "the request failed",
        None => text,
    };
    Some(error_body(status, message))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(bytes: &[u8]) -> serde_json::Value {
        serde_json::from_slice(bytes).unwrap()
    }

    #[test]
    fn types_follow_anthropics_statuses() {
        for (status, kind) in [
            (400, "invalid_request_error"),
            (401, "authentication_error"),
            (403, "permission_error"),
            (404, "not_found_error"),
            (413, "request_too_large"),
            (429, "rate_limit_error"),
            (500, "api_error"),
            (502, "api_error"),
            (503, "overloaded_error"),
            (529, "overloaded_error"),
        ] {
            assert_eq!(error_type(status), kind, "{status}");
        }
    }

    #[test]
    fn openai_bodies_are_rewrapped_and_anthropic_ones_kept() {
        let openai =
            ErrorBody::new("invalid API key", "invalid_request_error", None, Some("invalid_api_key")).to_json();
        assert_eq!(
            json(&reshape(401, &openai).unwrap()),
            serde_json::json!({"type":"error","error":{"type":"authentication_error","message":"invalid API key"}})
        );
        assert!(reshape(529, br#"{"type":"error","error":{"type":"overloaded_error","message":"busy"}}"#).is_none());
        let html = reshape(502, b"<html>bad gateway</html>").unwrap();
        assert_eq!(json(&html)["error"]["message"], "<html>bad gateway</html>");
        assert_eq!(json(&reshape(500, b"").unwrap())["error"]["type"], "api_error");
    }
}
