//! A hyper client for talking to the gateway the way real clients do: HTTP/1.1, HTTP/2 with
//! prior knowledge (h2c), or HTTPS with a custom root and ALPN.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, Version, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls_pki_types::CertificateDer;
use serde_json::Value;

use crate::sse::SseStream;

/// Request bodies: whole (with a Content-Length) or streamed (chunked on HTTP/1.1).
pub type TestBody = BoxBody<Bytes, Infallible>;

pub fn full_body(bytes: impl Into<Bytes>) -> TestBody {
    Full::new(bytes.into()).boxed()
}

/// A body sent as `chunks` separate frames with no declared length, so HTTP/1.1 uses
/// `Transfer-Encoding: chunked`.
pub fn chunked_body(chunks: Vec<Bytes>) -> TestBody {
    let frames = futures_util::stream::iter(chunks.into_iter().map(|c| Ok::<_, Infallible>(Frame::data(c))));
    BodyExt::boxed(StreamBody::new(frames))
}

/// A pooled client. Cheap to clone.
#[derive(Clone, Debug)]
pub struct TestClient {
    inner: Client<HttpsConnector<HttpConnector>, TestBody>,
}

/// A whole response.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    /// The body as JSON; panics with the body text if it is not.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Asserts the OpenAI error shape `{"error":{"message","type","param","code"}}` with all four
    /// members present and returns the `error` object.
    pub fn openai_error(&self) -> Value {
        let v = self.json();
        let error = v.get("error").unwrap_or_else(|| panic!("no `error` member in {v}"));
        for member in ["message", "type", "param", "code"] {
            assert!(error.get(member).is_some(), "error body lacks `{member}`: {v}");
        }
        assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()), "empty message: {v}");
        assert!(error["type"].is_string(), "type is not a string: {v}");
        assert_eq!(
            self.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()),
            Some("application/json"),
            "error content type"
        );
        error.clone()
    }
}

fn http_connector() -> HttpConnector {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http
}

fn tls_config(root: Option<&CertificateDer<'static>>) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    if let Some(root) = root {
        roots.add(root.clone()).expect("test root certificate is valid");
    }
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

impl TestClient {
    /// HTTP/1.1 over plain TCP (and HTTPS with HTTP/1.1 only, should a URL say so).
    pub fn http1() -> Self {
        let connector =
            HttpsConnectorBuilder::new().with_tls_config(tls_config(None)).https_or_http().enable_http1().build();
        TestClient { inner: Client::builder(TokioExecutor::new()).build(connector) }
    }

    /// HTTP/1.1 over plain TCP from the local address `from` (another loopback address such as
    /// `127.0.0.2`: a second client as the gateway sees it).
    pub fn http1_from(from: std::net::IpAddr) -> Self {
        let mut http = http_connector();
        http.set_local_address(Some(from));
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(tls_config(None))
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        TestClient { inner: Client::builder(TokioExecutor::new()).build(connector) }
    }

    /// HTTP/2 with prior knowledge over plain TCP (h2c).
    pub fn h2c() -> Self {
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(tls_config(None))
            .https_or_http()
            .enable_http2()
            .wrap_connector(http_connector());
        TestClient { inner: Client::builder(TokioExecutor::new()).http2_only(true).build(connector) }
    }

    /// HTTPS trusting only `root`. With `offer_h2` the client offers `h2` and `http/1.1` over
    /// ALPN and speaks whatever the server picks; without, it offers only `http/1.1`.
    pub fn https(root: &CertificateDer<'static>, offer_h2: bool) -> Self {
        let builder = HttpsConnectorBuilder::new().with_tls_config(tls_config(Some(root))).https_only();
        let connector = if offer_h2 {
            builder.enable_all_versions().wrap_connector(http_connector())
        } else {
            builder.enable_http1().wrap_connector(http_connector())
        };
        TestClient { inner: Client::builder(TokioExecutor::new()).build(connector) }
    }

    /// Sends a request and returns the response head with the body still streaming.
    pub async fn send(&self, request: Request<TestBody>) -> Response<Incoming> {
        let uri = request.uri().clone();
        self.try_send(request).await.unwrap_or_else(|e| panic!("request to {uri} failed: {e:?}"))
    }

    /// [`TestClient::send`] for requests that are expected to fail (refused connections, TLS
    /// errors).
    pub async fn try_send(
        &self,
        request: Request<TestBody>,
    ) -> Result<Response<Incoming>, hyper_util::client::legacy::Error> {
        self.inner.request(request).await
    }

    /// Sends a request and reads the whole response.
    pub async fn send_whole(&self, request: Request<TestBody>) -> Reply {
        read_whole(self.send(request).await).await
    }

    /// `POST url` with a JSON body and, when given, `Authorization: Bearer key`.
    pub async fn post_json(&self, url: &str, key: Option<&str>, body: &Value) -> Response<Incoming> {
        self.send(request(Method::POST, url, key, full_body(body.to_string()))).await
    }

    /// [`TestClient::post_json`], read whole.
    pub async fn post_json_whole(&self, url: &str, key: Option<&str>, body: &Value) -> Reply {
        read_whole(self.post_json(url, key, body).await).await
    }

    /// [`TestClient::post_json`] for a streamed answer: asserts 200 and an event-stream, and
    /// returns the events as they come.
    pub async fn post_stream(&self, url: &str, key: Option<&str>, body: &Value) -> SseStream {
        let response = self.post_json(url, key, body).await;
        if response.status() != StatusCode::OK {
            let reply = read_whole(response).await;
            panic!("stream request answered {}: {}", reply.status, reply.text());
        }
        let content_type = response.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
        assert_eq!(content_type, Some("text/event-stream"), "streamed content type");
        SseStream::new(response)
    }

    /// `GET url`, read whole.
    pub async fn get(&self, url: &str, key: Option<&str>) -> Reply {
        self.send_whole(request(Method::GET, url, key, full_body(Bytes::new()))).await
    }
}

/// A request with an optional bearer key and, for non-empty bodies, a JSON content type.
pub fn request(method: Method, url: &str, key: Option<&str>, body: TestBody) -> Request<TestBody> {
    let mut builder = Request::builder().method(method).uri(url).header(header::CONTENT_TYPE, "application/json");
    if let Some(key) = key {
        builder = builder.header(header::AUTHORIZATION, format!("Bearer {key}"));
    }
    builder.body(body).expect("valid test request")
}

/// Reads a response to its end.
pub async fn read_whole(response: Response<Incoming>) -> Reply {
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("response body reads to its end").to_bytes();
    Reply { status: parts.status, version: parts.version, headers: parts.headers, body }
}
