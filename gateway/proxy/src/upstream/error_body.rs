//! A worker's error answer in the OpenAI error shape.
//!
//! OpenAI SDKs read `{"error": {"message", "type", "param", "code"}}` from any non-2xx answer.
//! vLLM and SGLang answer in that shape, and it passes unchanged; what else a worker or the
//! server in front of it may send — an empty 431 from hyper, nginx's HTML error page, a plain
//! `Payload Too Large`, vLLM's older top-level `{"object": "error", "message": …}`, TGI's
//! `{"error": "…"}`, FastAPI's `{"detail": "…"}` — is wrapped, keeping the status. The message
//! names the status and carries at most a short excerpt of what the worker said, with anything
//! that looks like an address or a path blanked out: error pages name servers, versions and
//! internal URLs that are no business of the client's. Only error answers come here, so a
//! successful response never pays for any of this.

use std::net::{IpAddr, SocketAddr};

use http::{HeaderValue, StatusCode};
use serde_json::Value;
use sluice_openai::ErrorBody;

/// The longest excerpt of the worker's words a wrapped message carries, in bytes.
const EXCERPT_MAX: usize = 200;

/// Bodies larger than this are not searched for a message: an error answer that large is not a
/// message meant for a person.
const PARSE_MAX: usize = 64 * 1024;

/// The body to send the client instead of the worker's error `body`, or `None` when the worker's
/// body already is an OpenAI error (a JSON object whose `error` member is an object) and goes
/// to the client unchanged.
pub fn wrap_error_body(status: StatusCode, content_type: Option<&HeaderValue>, body: &[u8]) -> Option<Vec<u8>> {
    let said = match what_the_worker_said(content_type, body) {
        Said::OpenAi => return None,
        Said::Message { message, param } => (Some(message), param),
        Said::Nothing => (None, None),
    };
    let (message, param) = said;
    let mut text = format!("the worker answered {}", status.as_u16());
    if let Some(reason) = status.canonical_reason() {
        text.push(' ');
        text.push_str(reason);
    }
    if let Some(excerpt) = message.as_deref().map(excerpt).filter(|e| !e.is_empty()) {
        text.push_str(": ");
        text.push_str(&excerpt);
    }
    let (kind, code) = kind_and_code(status);
    let param = param.map(|p| excerpt(&p)).filter(|p| !p.is_empty());
    Some(ErrorBody::new(text, kind, param.as_deref(), Some(code)).to_json())
}

/// OpenAI's `type` for the status, as its API would use it, and a code that says the worker,
/// not the gateway, refused.
fn kind_and_code(status: StatusCode) -> (&'static str, &'static str) {
    match status.as_u16() {
        401 => ("authentication_error", "upstream_rejected"),
        403 => ("permission_error", "upstream_rejected"),
        429 => ("rate_limit_error", "upstream_rejected"),
        400..=499 => ("invalid_request_error", "upstream_rejected"),
        _ => ("server_error", "upstream_error"),
    }
}

enum Said {
    /// Already an OpenAI error.
    OpenAi,
    /// A message (and parameter) found in a JSON body of another shape, or a plain text body.
    Message { message: String, param: Option<String> },
    /// Nothing worth passing on: empty, HTML, binary, or JSON without a message.
    Nothing,
}

fn what_the_worker_said(content_type: Option<&HeaderValue>, body: &[u8]) -> Said {
    let trimmed = body.trim_ascii();
    if trimmed.is_empty() || trimmed.len() > PARSE_MAX {
        return Said::Nothing;
    }
    if trimmed.starts_with(b"{") {
        return match serde_json::from_slice::<Value>(trimmed) {
            Ok(Value::Object(object)) => from_json(&object),
            // Not JSON after all (or not an object): judged as text below.
            Ok(_) | Err(_) => from_text(content_type, trimmed),
        };
    }
    from_text(content_type, trimmed)
}

fn from_json(object: &serde_json::Map<String, Value>) -> Said {
    let string = |key: &str| object.get(key).and_then(Value::as_str).map(str::to_owned);
    match object.get("error") {
        Some(Value::Object(_)) => return Said::OpenAi,
        Some(Value::String(message)) => return Said::Message { message: message.clone(), param: None },
        _ => {}
    }
    match string("message").or_else(|| string("detail")) {
        Some(message) => Said::Message { message, param: string("param") },
        None => Said::Nothing,
    }
}

fn from_text(content_type: Option<&HeaderValue>, body: &[u8]) -> Said {
    let html = content_type.is_some_and(|ct| {
        let ct = ct.as_bytes();
        ct.len() >= 9 && ct[..9].eq_ignore_ascii_case(b"text/html")
    }) || body.starts_with(b"<");
    match std::str::from_utf8(body) {
        Ok(text) if !html => Said::Message { message: text.to_owned(), param: None },
        _ => Said::Nothing,
    }
}

/// `text` on one line, words that look like addresses or paths blanked out, cut to
/// [`EXCERPT_MAX`] bytes.
fn excerpt(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(EXCERPT_MAX + 4));
    for word in text.split(|c: char| c.is_whitespace() || c.is_control()).filter(|w| !w.is_empty()) {
        let word = if is_internal(word) { "[redacted]" } else { word };
        let space = usize::from(!out.is_empty());
        if out.len() + space + word.len() > EXCERPT_MAX {
            if out.is_empty() {
                // One long word: cut it at a character boundary.
                let mut end = EXCERPT_MAX;
                while !word.is_char_boundary(end) {
                    end -= 1;
                }
                out.push_str(&word[..end]);
            }
            out.push('…');
            break;
        }
        if space == 1 {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

/// A word that may name something of the deployment's: a URL, an e-mail or `user@host`, a
/// filesystem path, an IP address, or `host:port`.
fn is_internal(word: &str) -> bool {
    let word =
        word.trim_matches(|c: char| matches!(c, '"' | '\'' | '`' | '(' | ')' | '[' | ']' | '<' | '>' | ',' | ';'));
    let word = word.trim_end_matches(['.', ':']);
    if word.contains("://") || word.contains('@') || word.contains('\\') {
        return true;
    }
    if word.len() > 1 && (word.starts_with('/') || word.starts_with("~/") || word.starts_with("./")) {
        return true;
    }
    if word.parse::<IpAddr>().is_ok() || word.parse::<SocketAddr>().is_ok() {
        return true;
    }
    // `worker-3:8000`, `localhost:8000/v1`
    if let Some((host, rest)) = word.split_once(':') {
        let port = rest.split('/').next().unwrap_or_default();
        return !host.is_empty() && !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit());
    }
    false
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use super::*;

    fn wrapped(status: u16, content_type: Option<&'static str>, body: &str) -> serde_json::Value {
        let ct = content_type.map(HeaderValue::from_static);
        let status = StatusCode::from_u16(status).unwrap();
        let out = wrap_error_body(status, ct.as_ref(), body.as_bytes()).expect("wrapped");
        serde_json::from_slice::<Value>(&out).unwrap()["error"].clone()
    }

    #[test]
    fn an_empty_answer_says_the_status() {
        let e = wrapped(431, None, "");
        assert_eq!(e["message"], "the worker answered 431 Request Header Fields Too Large");
        assert_eq!(e["type"], "invalid_request_error");
        assert_eq!(e["code"], "upstream_rejected");
        assert!(e["param"].is_null());
        assert_eq!(wrapped(599, None, "")["message"], "the worker answered 599");
        assert_eq!(wrapped(503, None, "")["type"], "server_error");
        assert_eq!(wrapped(429, None, "")["type"], "rate_limit_error");
        assert_eq!(wrapped(401, None, "")["type"], "authentication_error");
    }

    #[test]
    fn an_openai_error_passes_unchanged() {
        let body = br#"{"error":{"message":"too long","type":"BadRequestError","param":null,"code":400}}"#;
        assert!(wrap_error_body(StatusCode::BAD_REQUEST, None, body).is_none());
    }

    #[test]
    fn other_json_shapes_give_their_message() {
        let vllm = r#"{"object":"error","message":"This model's maximum context length is 2048 tokens.","type":"BadRequestError","param":"messages","code":400}"#;
        let e = wrapped(400, Some("application/json"), vllm);
        assert_eq!(
            e["message"],
            "the worker answered 400 Bad Request: This model's maximum context length is 2048 tokens."
        );
        assert_eq!(e["param"], "messages");
        let tgi =
            wrapped(422, Some("application/json"), r#"{"error":"Input validation error","error_type":"validation"}"#);
        assert_eq!(tgi["message"], "the worker answered 422 Unprocessable Entity: Input validation error");
        assert_eq!(
            wrapped(404, None, r#"{"detail":"Not Found"}"#)["message"],
            "the worker answered 404 Not Found: Not Found"
        );
        assert_eq!(wrapped(400, None, r#"{"foo":1}"#)["message"], "the worker answered 400 Bad Request");
    }

    #[test]
    fn html_says_only_the_status() {
        let page = "<html><head><title>413 Request Entity Too Large</title></head><body><hr><center>nginx/1.25.3</center></body></html>";
        let e = wrapped(413, Some("text/html; charset=utf-8"), page);
        assert_eq!(e["message"], "the worker answered 413 Payload Too Large");
        let e = wrapped(413, None, page);
        assert!(!e.to_string().contains("nginx"), "{e}");
    }

    #[test]
    fn plain_text_is_an_excerpt_without_internals() {
        let text = "upstream http://10.0.3.7:8000/v1 refused:\n header too large (see /opt/vllm/server.py, admin@corp.example, worker-3:8000, 10.0.3.7)";
        let e = wrapped(431, Some("text/plain"), text);
        let message = e["message"].as_str().unwrap();
        assert!(
            message.starts_with(
                "the worker answered 431 Request Header Fields Too Large: upstream [redacted] refused: header too large"
            ),
            "{message}"
        );
        for secret in ["10.0.3.7", "/opt", "admin@", "worker-3", "http://"] {
            assert!(!message.contains(secret), "{secret} leaked: {message}");
        }
    }

    #[test]
    fn an_excerpt_is_short() {
        let long = "word ".repeat(10_000);
        let e = wrapped(400, Some("text/plain"), &long);
        let message = e["message"].as_str().unwrap();
        assert!(message.len() < EXCERPT_MAX + 60, "{} bytes", message.len());
        assert!(message.ends_with('…'));
        let one_word = "é".repeat(1_000);
        let message = wrapped(400, None, &one_word)["message"].as_str().unwrap().to_owned();
        assert!(message.len() < EXCERPT_MAX + 60, "{} bytes", message.len());
        let binary = [0xffu8, 0xfe, 0x00, 0x01];
        let out = wrap_error_body(StatusCode::BAD_REQUEST, None, &binary).unwrap();
        assert!(String::from_utf8(out).unwrap().contains("\"the worker answered 400 Bad Request\""));
    }
}
