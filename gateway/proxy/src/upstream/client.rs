//! Pooled keep-alive HTTP clients to upstream workers: HTTP/1.1, and HTTP/2 for endpoints that
//! ask for it (prior knowledge on `http://`, ALPN on `https://`).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use sluice_config::UpstreamConfig;

pub type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// One pair of clients per pool, since connect timeouts and pool sizes are per pool.
#[derive(Clone, Debug)]
pub struct UpstreamClient {
    http1: HttpClient,
    http2: HttpClient,
}

impl UpstreamClient {
    pub fn new(config: &UpstreamConfig) -> Self {
        UpstreamClient { http1: build(config, false), http2: build(config, true) }
    }

    pub fn get(&self, http2: bool) -> &HttpClient {
        if http2 { &self.http2 } else { &self.http1 }
    }
}

/// An HTTP/1.1 (and https) client for requests that are not to workers: the plugins' `http`
/// capability.
pub fn outbound_client(config: &UpstreamConfig) -> HttpClient {
    build(config, false)
}

fn build(config: &UpstreamConfig, http2: bool) -> HttpClient {
    let mut http = HttpConnector::new();
    http.set_connect_timeout(Some(config.connect_timeout));
    http.set_nodelay(true);
    http.enforce_http(false);
    http.set_keepalive(Some(Duration::from_secs(60)));
    let tls = match rustls_config() {
        Ok(tls) => tls,
        Err(e) => {
            tracing::warn!(error = %e, "no system root certificates; https upstreams will fail to verify");
            empty_roots_config()
        }
    };
    let builder = HttpsConnectorBuilder::new().with_tls_config(tls).https_or_http();
    let connector =
        if http2 { builder.enable_http2().wrap_connector(http) } else { builder.enable_http1().wrap_connector(http) };
    let mut client = Client::builder(TokioExecutor::new());
    client
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(config.max_idle_connections_per_endpoint)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new());
    if http2 {
        client
            .http2_only(true)
            .http2_adaptive_window(true)
            .http2_keep_alive_interval(Duration::from_secs(20))
            .http2_keep_alive_while_idle(true);
    }
    client.build(connector)
}

fn provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    std::sync::Arc::new(rustls::crypto::ring::default_provider())
}

fn rustls_config() -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        // Individual unparsable system certificates are skipped, as browsers do.
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        return Err(format!("{} errors loading native certs", native.errors.len()));
    }
    rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map(|b| b.with_root_certificates(roots).with_no_client_auth())
        .map_err(|e| e.to_string())
}

fn empty_roots_config() -> rustls::ClientConfig {
    match rustls::ClientConfig::builder_with_provider(provider()).with_safe_default_protocol_versions() {
        Ok(b) => b.with_root_certificates(rustls::RootCertStore::empty()).with_no_client_auth(),
        // The ring provider supports the default versions; this arm is unreachable in practice.
        Err(_) => {
            rustls::ClientConfig::builder().with_root_certificates(rustls::RootCertStore::empty()).with_no_client_auth()
        }
    }
}
