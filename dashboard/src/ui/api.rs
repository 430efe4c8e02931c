//! Calls to the admin API with the session's bearer token. Errors carry the API's own message
//! (`{"error":{"message","type","param","code"}}`) so forms can show it as is.

use serde::Serialize;
use serde::de::DeserializeOwned;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

use super::session;

pub const BASE: &str = "/admin/api";

#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status; 0 when the request never got an answer.
    pub status: u16,
    pub message: String,
    pub param: Option<String>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.param {
            Some(p) if !self.message.contains(p.as_str()) => write!(f, "{} ({p})", self.message),
            _ => f.write_str(&self.message),
        }
    }
}

fn network(e: JsValue) -> ApiError {
    let detail = e.as_string().or_else(|| js_sys::JSON::stringify(&e).ok().and_then(|s| s.as_string()));
    ApiError {
        status: 0,
        message: format!("cannot reach the gateway: {}", detail.unwrap_or_else(|| "network error".into())),
        param: None,
    }
}

pub enum Body {
    Empty,
    Json(String),
    /// A `.wasm` file, sent as `application/wasm`.
    Wasm(web_sys::File),
}

/// One request. `token` overrides the session's (the login page checks a token before keeping it).
pub async fn raw(method: &str, path: &str, body: Body, token: Option<String>) -> Result<String, ApiError> {
    let Some(token) = token.or_else(session::current) else {
        return Err(ApiError { status: 401, message: "log in first".into(), param: None });
    };
    let headers = web_sys::Headers::new().map_err(network)?;
    headers.set("Authorization", &format!("Bearer {token}")).map_err(network)?;
    let init = web_sys::RequestInit::new();
    init.set_method(method);
    match body {
        Body::Empty => {}
        Body::Json(json) => {
            headers.set("Content-Type", "application/json").map_err(network)?;
            init.set_body(&JsValue::from_str(&json));
        }
        Body::Wasm(file) => {
            headers.set("Content-Type", "application/wasm").map_err(network)?;
            init.set_body(&file.into());
        }
    }
    init.set_headers(&headers);
    let request = web_sys::Request::new_with_str_and_init(&format!("{BASE}{path}"), &init).map_err(network)?;
    let window = web_sys::window().ok_or_else(|| network(JsValue::from_str("no window")))?;
    let response: web_sys::Response =
        JsFuture::from(window.fetch_with_request(&request)).await.map_err(network)?.dyn_into().map_err(network)?;
    let text =
        JsFuture::from(response.text().map_err(network)?).await.map_err(network)?.as_string().unwrap_or_default();
    let status = response.status();
    if (200..300).contains(&status) {
        return Ok(text);
    }
    let parsed: Option<serde_json::Value> = serde_json::from_str(&text).ok();
    let error = parsed.as_ref().and_then(|v| v.get("error"));
    let message = error
        .and_then(|e| e.get("message"))
        .and_then(|m| m.as_str())
        .map(str::to_owned)
        .unwrap_or_else(|| format!("{status} {}", if text.is_empty() { response.status_text() } else { text }));
    let param = error.and_then(|e| e.get("param")).and_then(|p| p.as_str()).map(str::to_owned);
    Err(ApiError { status, message, param })
}

fn decode<T: DeserializeOwned>(text: &str) -> Result<T, ApiError> {
    serde_json::from_str(if text.is_empty() { "null" } else { text }).map_err(|e| ApiError {
        status: 0,
        message: format!("unexpected answer from the gateway: {e}"),
        param: None,
    })
}

/// A 401 on a page means the token stopped working (changed on the server): back to login.
fn check_auth<T>(result: Result<T, ApiError>) -> Result<T, ApiError> {
    if let Err(e) = &result
        && e.status == 401
        && session::current().is_some()
    {
        session::logout(Some(e.message.clone()));
    }
    result
}

pub async fn get<T: DeserializeOwned>(path: &str) -> Result<T, ApiError> {
    check_auth(decode(&raw("GET", path, Body::Empty, None).await?))
}

pub async fn send<T: DeserializeOwned>(method: &str, path: &str, body: &impl Serialize) -> Result<T, ApiError> {
    let json = serde_json::to_string(body).map_err(|e| ApiError { status: 0, message: e.to_string(), param: None })?;
    check_auth(raw(method, path, Body::Json(json), None).await.and_then(|t| decode(&t)))
}

pub async fn delete(path: &str) -> Result<(), ApiError> {
    check_auth(raw("DELETE", path, Body::Empty, None).await.map(|_| ()))
}

pub async fn upload<T: DeserializeOwned>(path: &str, file: web_sys::File) -> Result<T, ApiError> {
    check_auth(raw("POST", path, Body::Wasm(file), None).await.and_then(|t| decode(&t)))
}

/// A ticket that opens the live stream once (`POST /admin/api/live/ticket`): `EventSource`
/// cannot send the token in a header, and the gateway refuses it in the URL.
pub async fn live_ticket() -> Result<String, ApiError> {
    #[derive(serde::Deserialize)]
    struct Ticket {
        ticket: String,
    }
    check_auth(raw("POST", "/live/ticket", Body::Empty, None).await.and_then(|t| decode::<Ticket>(&t)))
        .map(|t| t.ticket)
}

/// Percent-encodes a path segment (names are restricted, but model names are not).
pub fn seg(s: &str) -> String {
    js_sys::encode_uri_component(s).as_string().unwrap_or_else(|| s.to_owned())
}
