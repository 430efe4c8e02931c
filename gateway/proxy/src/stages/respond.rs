//! The upstream's answer → the client's response, and the figures to record.

use std::sync::Arc;
use std::time::Instant;

use http::{HeaderValue, Response, header};
use sluice_metrics::Outcome;
use sluice_openai::probe::body_usage;
use sluice_plugin_host::types::RequestInfo;
use sluice_plugin_host::{Chain, Hook};

use crate::body::ResponseBody;
use crate::exchange::{Completion, Exchange};
use crate::relay::{Relay, RelayLimits};
use crate::stages::forward::{Forwarded, UpstreamReply};

pub struct Reply {
    pub response: Response<ResponseBody>,
    /// For whole responses: what to record now. Streams record themselves when they end.
    pub completion: Option<(Exchange, Completion)>,
}

/// Runs the on-response-headers plugins on `response`'s headers. The response is already on
/// its way, so a failure is logged and counted (by the host) and the headers stay as they were.
async fn response_hooks(hooks: Option<(Arc<Chain>, RequestInfo)>, response: &mut Response<ResponseBody>) {
    let Some((chain, info)) = hooks else { return };
    let status = response.status().as_u16();
    let mut headers = Arc::new(std::mem::take(response.headers_mut()));
    if let Err(failure) = chain.on_response_headers(&info, status, &mut headers).await {
        tracing::debug!(error = %failure, "on-response-headers failed; headers left unchanged");
    }
    *response.headers_mut() = Arc::unwrap_or_clone(headers);
}

pub async fn run(mut ex: Exchange, forwarded: Forwarded, strip_usage: bool, limits: RelayLimits) -> Reply {
    let started = Instant::now();
    let hooks = ex
        .plugins
        .as_ref()
        .filter(|(chain, _)| chain.has(Hook::OnResponseHeaders))
        .map(|(chain, info)| (Arc::clone(chain), info.clone()));
    let Forwarded { reply, guard } = forwarded;
    let request_id = ex.request_id.clone();
    match reply {
        UpstreamReply::Full { status, content_type, body } => {
            let outcome = if status.is_success() { Outcome::Ok } else { Outcome::UpstreamRejected };
            let usage = if status.is_success() { body_usage(&body) } else { None };
            let mut response = Response::new(ResponseBody::full(body));
            *response.status_mut() = status;
            let headers = response.headers_mut();
            headers.insert(header::CONTENT_TYPE, content_type.unwrap_or(HeaderValue::from_static("application/json")));
            headers.insert("x-request-id", request_id);
            response_hooks(hooks, &mut response).await;
            drop(guard);
            ex.overhead += started.elapsed();
            let completion =
                Completion { status: status.as_u16(), outcome: Some(outcome), usage, ..Completion::default() };
            Reply { response, completion: Some((ex, completion)) }
        }
        UpstreamReply::Stream { content_type, incoming, first } => {
            ex.overhead += started.elapsed();
            let relay = Relay::new(ex, guard, incoming, first, strip_usage, limits);
            let mut response = Response::new(ResponseBody::Stream(Box::new(relay)));
            let headers = response.headers_mut();
            headers.insert(header::CONTENT_TYPE, content_type.unwrap_or(HeaderValue::from_static("text/event-stream")));
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            headers.insert("x-request-id", request_id);
            // Tells nginx-style proxies in front of Sluice not to buffer the stream.
            headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
            response_hooks(hooks, &mut response).await;
            Reply { response, completion: None }
        }
    }
}
