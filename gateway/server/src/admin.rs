//! The admin plane: `/metrics`, `/healthz`, `/readyz`, the admin API (`/admin/api/…`), its live
//! stream (`/admin/api/live`) and the dashboard (every other GET). It listens separately from
//! the data plane so that it can stay private.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::body::Body;
use axum::response::IntoResponse;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use sluice_admin::{AdminAuth, AuthSettings, LIVE_PATH, query_param};
use sluice_live::LiveHub;
use sluice_proxy::Gateway;
use sluice_store::model::BackendKind;
use sluice_store::watcher::StoreHealth;
use tower::ServiceExt;

pub struct Admin {
    pub gateway: Arc<Gateway>,
    /// Cleared when shutdown starts, so load balancers stop sending traffic first. Shared with
    /// the data plane's `/health`.
    pub ready: Arc<AtomicBool>,
    /// Present when Sluice runs with a store: the admin API, its live stream and the dashboard.
    pub console: Option<Console>,
}

pub struct Console {
    pub api: axum::Router,
    pub live: Arc<LiveHub>,
    /// The admin API's own check: one lockout table for the API and the stream.
    pub auth: Arc<AdminAuth>,
    pub health: Arc<StoreHealth>,
    pub backend: BackendKind,
}

const API_PREFIX: &str = "/admin/api/";

impl Admin {
    pub async fn handle<B>(self: Arc<Self>, request: Request<B>) -> Result<Response<Body>, Infallible>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<axum::BoxError>,
    {
        let path = request.uri().path();
        let response = match (request.method(), path) {
            (&Method::GET, "/metrics") => self.metrics_handler(),
            (&Method::GET, "/healthz") => text(StatusCode::OK, "ok\n"),
            (&Method::GET, "/readyz") => self.readyz_handler(),
            (_, "/metrics" | "/healthz" | "/readyz") => text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n"),
            _ => match &self.console {
                Some(console) if path == LIVE_PATH => console.live_handler(&request),
                Some(console) if path.starts_with(API_PREFIX) || path == "/admin/api" => {
                    let request = request.map(Body::new);
                    match console.api.clone().oneshot(request).await {
                        Ok(response) => response,
                        Err(never) => match never {},
                    }
                }
                Some(_) if matches!(*request.method(), Method::GET | Method::HEAD) => dashboard_handler(&request),
                _ => text(StatusCode::NOT_FOUND, "not found\n"),
            },
        };
        Ok(response)
    }

    fn metrics_handler(&self) -> Response<Body> {
        let mut response = Response::new(Body::from(self.gateway.metrics.render()));
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
        response
    }

    /// Ready while serving. Upstream health, a lost database and an unreachable Redis (rate
    /// limits on their fallback) are reported as `degraded` but do not make the gateway unready: taking every replica out of a load balancer because the workers are
    /// sick, or because the database is (the gateway serves from its last snapshot), would turn
    /// a degraded service into an outage.
    fn readyz_handler(&self) -> Response<Body> {
        let ready = self.ready.load(Ordering::Relaxed);
        let pools: Vec<serde_json::Value> = self
            .gateway
            .upstreams()
            .pools
            .iter()
            .map(|p| {
                let available = p.endpoints.iter().filter(|e| e.is_available()).count();
                serde_json::json!({"pool": &*p.name, "endpoints": p.endpoints.len(), "available": available})
            })
            .collect();
        let store = self.console.as_ref().map(|c| {
            let report = c.health.report();
            serde_json::json!({
                "backend": c.backend,
                "degraded": report.degraded,
                "snapshot_version": report.snapshot_version,
                "last_error": report.last_error,
            })
        });
        // Rate limits shared through Redis: whether decisions use the fallback right now.
        let shared = self.gateway.plugins.services().limits.shared();
        let limits = shared.map(|s| {
            let fallback = match s.fallback_policy() {
                sluice_plugin_host::Fallback::Local { .. } => "local",
                sluice_plugin_host::Fallback::Closed => "closed",
            };
            let mode = match s.mode() {
                sluice_plugin_host::SharedMode::Leased(_) => "leased",
                sluice_plugin_host::SharedMode::Exact => "exact",
            };
            serde_json::json!({"backend": "redis", "mode": mode, "degraded": s.degraded(), "fallback": fallback})
        });
        let degraded =
            self.console.as_ref().is_some_and(|c| c.health.is_degraded()) || shared.is_some_and(|s| s.degraded());
        let status = match (ready, degraded) {
            (false, _) => "shutting_down",
            (true, true) => "degraded",
            (true, false) => "ready",
        };
        let body = serde_json::json!({"status": status, "pools": pools, "store": store, "limits": limits});
        let mut response = Response::new(Body::from(body.to_string()));
        *response.status_mut() = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        response
    }
}

impl Console {
    /// The live stream. Browsers' `EventSource` cannot send headers, so the dashboard opens it
    /// with a one-use ticket (`POST /admin/api/live/ticket`) in `?ticket=`; other clients may
    /// send the bearer token. The token itself is refused in the URL.
    fn live_handler<B>(&self, request: &Request<B>) -> Response<Body> {
        if request.method() != Method::GET {
            return api_error(StatusCode::METHOD_NOT_ALLOWED, "use GET", "method_not_allowed");
        }
        let query = request.uri().query();
        if query_param(query, "token").is_some() {
            return self.auth.refuse_token_in_url().into_response();
        }
        let client = sluice_admin::client_address(request.extensions());
        let allowed = match query_param(query, "ticket") {
            Some(ticket) if !request.headers().contains_key(header::AUTHORIZATION) => {
                self.auth.redeem_ticket(client, ticket)
            }
            _ => self.auth.authenticate(client, request.headers()),
        };
        match allowed {
            Ok(()) => sluice_live::sse_response(&self.live).map(Body::new),
            Err(error) => error.into_response(),
        }
    }
}

/// The admin plane's credentials check from `[admin]`, its refusal counter on the gateway's
/// `/metrics`.
pub(crate) fn auth(config: &sluice_config::AdminConfig, metrics: &sluice_metrics::Metrics) -> AdminAuth {
    let settings = AuthSettings {
        max_failures: config.max_failures,
        failure_window: config.failure_window,
        lockout: config.lockout,
    };
    let auth = AdminAuth::new(config.token.as_ref().map(sluice_config::Secret::expose), settings);
    if let Err(e) = auth.register(metrics.registry()) {
        tracing::warn!(error = %e, "cannot register sluice_admin_auth_refusals_total");
    }
    auth
}

fn dashboard_handler<B>(request: &Request<B>) -> Response<Body> {
    let Some(asset) = sluice_dashboard_assets::asset(request.uri().path()) else {
        return text(StatusCode::NOT_FOUND, "not found\n");
    };
    let accept = request.headers().get(header::ACCEPT_ENCODING).and_then(|v| v.to_str().ok());
    let (bytes, encoding) = asset.negotiate(accept);
    let mut response = Response::new(if request.method() == Method::HEAD { Body::empty() } else { Body::from(bytes) });
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(asset.cache_control));
    headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    headers.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    // The dashboard acts with the admin token: no other site may frame it (clickjacking), and
    // no URL of it leaks in a Referer.
    headers.insert("content-security-policy", HeaderValue::from_static("frame-ancestors 'none'"));
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    if let Some(encoding) = encoding {
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static(encoding));
    }
    response
}

fn api_error(status: StatusCode, message: &str, code: &str) -> Response<Body> {
    let body = serde_json::json!({"error": {"message": message, "type": "invalid_request_error", "param": null, "code": code}});
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}
