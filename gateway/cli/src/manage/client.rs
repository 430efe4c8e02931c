//! A small client for the admin API: JSON in, JSON out, API errors as their message.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// Uploads compile on the server before it answers; everything else is quick.
const TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The API answered with an error; the message is its `error.message`.
    #[error("{message}")]
    Api { status: StatusCode, message: String },
    #[error("cannot reach the admin API at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("invalid admin URL {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("the admin API answered {status} with a body that is not JSON: {body}")]
    NotJson { status: StatusCode, body: String },
    #[error("timed out after {0:?} waiting for the admin API")]
    Timeout(Duration),
}

pub struct AdminClient {
    base: String,
    token: Option<String>,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl AdminClient {
    pub fn new(base: &str, token: Option<String>) -> Result<Self, ClientError> {
        let bad = |reason: &str| ClientError::BadUrl { url: base.to_owned(), reason: reason.to_owned() };
        let uri: http::Uri = base.parse().map_err(|e: http::uri::InvalidUri| bad(&e.to_string()))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
            return Err(bad("expected http://host:port or https://host:port"));
        }
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(rustls::crypto::ring::default_provider())
            .map_err(|e| bad(&format!("no TLS root certificates: {e}")))?
            .https_or_http()
            .enable_http1()
            .build();
        let client = Client::builder(TokioExecutor::new()).build(connector);
        Ok(AdminClient { base: base.trim_end_matches('/').to_owned(), token, client })
    }

    pub async fn get(&self, path: &str) -> Result<Value, ClientError> {
        self.send(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str) -> Result<Value, ClientError> {
        self.send(Method::POST, path, None).await
    }

    pub async fn delete(&self, path: &str) -> Result<Value, ClientError> {
        self.send(Method::DELETE, path, None).await
    }

    pub async fn json(&self, method: Method, path: &str, body: &Value) -> Result<Value, ClientError> {
        let bytes = Bytes::from(body.to_string());
        self.send(method, path, Some(("application/json", bytes))).await
    }

    pub async fn upload(&self, path: &str, content_type: &'static str, bytes: Bytes) -> Result<Value, ClientError> {
        self.send(Method::POST, path, Some((content_type, bytes))).await
    }

    /// Sends one request; a 204 or empty body is `null`.
    async fn send(&self, method: Method, path: &str, body: Option<(&str, Bytes)>) -> Result<Value, ClientError> {
        let url = format!("{}{path}", self.base);
        let mut request = Request::builder().method(method).uri(&url).header(header::ACCEPT, "application/json");
        if let Some(token) = &self.token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let body = match body {
            Some((content_type, bytes)) => {
                request = request.header(header::CONTENT_TYPE, content_type);
                Full::new(bytes)
            }
            None => Full::new(Bytes::new()),
        };
        let request =
            request.body(body).map_err(|e| ClientError::BadUrl { url: url.clone(), reason: e.to_string() })?;
        let unreachable = |reason: String| ClientError::Unreachable { url: self.base.clone(), reason };
        let exchange = async {
            let response = self.client.request(request).await.map_err(|e| unreachable(error_chain(&e)))?;
            let status = response.status();
            let bytes = response.into_body().collect().await.map_err(|e| unreachable(error_chain(&e)))?.to_bytes();
            Ok::<_, ClientError>((status, bytes))
        };
        let (status, bytes) =
            tokio::time::timeout(TIMEOUT, exchange).await.map_err(|_| ClientError::Timeout(TIMEOUT))??;
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).map_err(|_| ClientError::NotJson {
                status,
                body: String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned(),
            })?
        };
        if status.is_success() {
            return Ok(value);
        }
        let message = value["error"]["message"].as_str().map_or_else(|| format!("HTTP {status}"), str::to_owned);
        Err(ClientError::Api { status, message })
    }
}

/// hyper's errors say "client error (Connect)"; the cause ("Connection refused") is further down.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Percent-encodes one path segment or query value (everything but RFC 3986's unreserved).
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_segments() {
        assert_eq!(encode("acme"), "acme");
        assert_eq!(encode("a b/c"), "a%20b%2Fc");
        assert_eq!(encode("2026-11-27T13:00:00+01:00"), "2026-11-27T13%3A00%3A00%2B01%3A00");
    }

    #[test]
    fn refuses_urls_that_are_not_http() {
        assert!(AdminClient::new("ftp://x", None).is_err());
        assert!(AdminClient::new("localhost:9090", None).is_err());
        assert!(AdminClient::new("http://127.0.0.1:9090/", None).is_ok());
    }
}
