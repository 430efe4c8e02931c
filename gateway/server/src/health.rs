//! `GET /health` on the data port, as vLLM and SGLang serve it: clients from that ecosystem
//! (benchmark clients, routers' health checks) validate a backend there before sending it
//! traffic, and refuse one that answers 404. The answer is the admin plane's readiness
//! (`/readyz`) without its details: the data port may face the internet, and pool and store
//! state is for operators. No key is needed, so it is answered before the pipeline runs and is
//! not counted as a request.

use http::{HeaderValue, Method, Response, StatusCode, header};
use sluice_proxy::ResponseBody;

pub const PATH: &str = "/health";

/// The whole answer: `200` while ready, `503` once shutdown has begun, an empty body either way.
pub fn response(method: &Method, ready: bool) -> Response<ResponseBody> {
    let mut response = Response::new(ResponseBody::empty());
    *response.status_mut() = match *method {
        Method::GET | Method::HEAD if ready => StatusCode::OK,
        Method::GET | Method::HEAD => StatusCode::SERVICE_UNAVAILABLE,
        _ => {
            response.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            StatusCode::METHOD_NOT_ALLOWED
        }
    };
    // Load balancers and clients poll this; a cached answer would outlive a shutdown.
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use http_body::Body as _;

    use super::*;

    #[test]
    fn ready_is_200_shutting_down_is_503_and_only_get_and_head_are_served() {
        for method in [Method::GET, Method::HEAD] {
            assert_eq!(response(&method, true).status(), StatusCode::OK);
            assert_eq!(response(&method, false).status(), StatusCode::SERVICE_UNAVAILABLE);
        }
        for ready in [true, false] {
            let refused = response(&Method::POST, ready);
            assert_eq!(refused.status(), StatusCode::METHOD_NOT_ALLOWED);
            assert_eq!(refused.headers()[header::ALLOW], "GET, HEAD");
        }
    }

    #[test]
    fn says_nothing_beyond_the_status() {
        for ready in [true, false] {
            let response = response(&Method::GET, ready);
            assert!(response.body().is_end_stream(), "no body");
            assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
            assert!(response.headers().get(header::CONTENT_TYPE).is_none());
        }
    }
}
