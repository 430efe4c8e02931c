//! The admin plane: `/metrics`, `/healthz`, `/readyz`. It listens separately from the data
//! plane so that it can stay private.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use sluice_proxy::Gateway;

pub struct Admin {
    pub gateway: Arc<Gateway>,
    /// Cleared when shutdown starts, so load balancers stop sending traffic first.
    pub ready: AtomicBool,
}

pub type AdminBody = Full<Bytes>;

impl Admin {
    pub async fn handle<B>(self: Arc<Self>, request: Request<B>) -> Result<Response<AdminBody>, Infallible> {
        let response = match (request.method(), request.uri().path()) {
            (&Method::GET, "/metrics") => self.metrics_handler(),
            (&Method::GET, "/healthz") => text(StatusCode::OK, "ok\n"),
            (&Method::GET, "/readyz") => self.readyz_handler(),
            (_, "/metrics" | "/healthz" | "/readyz") => text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n"),
            _ => text(StatusCode::NOT_FOUND, "not found\n"),
        };
        Ok(response)
    }

    fn metrics_handler(&self) -> Response<AdminBody> {
        let mut response = Response::new(Full::new(Bytes::from(self.gateway.metrics.render())));
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
        response
    }

    /// Ready while serving. Upstream health is reported but does not make the gateway unready:
    /// taking every replica out of a load balancer because the workers are sick would turn a
    /// degraded service into an outage.
    fn readyz_handler(&self) -> Response<AdminBody> {
        let ready = self.ready.load(Ordering::Relaxed);
        let pools: Vec<serde_json::Value> = self
            .gateway
            .upstreams
            .pools
            .iter()
            .map(|p| {
                let available = p.endpoints.iter().filter(|e| e.is_available()).count();
                serde_json::json!({"pool": &*p.name, "endpoints": p.endpoints.len(), "available": available})
            })
            .collect();
        let body = serde_json::json!({"status": if ready { "ready" } else { "shutting_down" }, "pools": pools});
        let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
        let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
        *response.status_mut() = status;
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        response
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<AdminBody> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}
