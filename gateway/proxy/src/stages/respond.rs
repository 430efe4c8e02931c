//! The upstream's answer → the client's response, and the figures to record.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderValue, Response, header};
use sluice_metrics::{Api, Outcome};
use sluice_openai::Dialect;
use sluice_openai::agents::translate;
use sluice_openai::agents::usage::body_usage as agent_body_usage;
use sluice_openai::probe::body_usage;
use sluice_plugin_host::types::RequestInfo;
use sluice_plugin_host::{Chain, ChunkVerdict, Hook, RequestLimits};

use crate::body::ResponseBody;
use crate::error::GatewayError;
use crate::exchange::{Completion, Exchange, X_REQUEST_ID};
use crate::relay::{Relay, RelayLimits, RelayTaps};
use crate::stages::forward::{Forwarded, UpstreamReply};
use crate::upstream::wrap_error_body;

/// Headers an answer is made with room for: its own four and the rate limiter's six.
const ANSWER_HEADERS: usize = 12;

pub struct Reply {
    pub response: Response<ResponseBody>,
    /// For whole responses: what to record now. Streams record themselves when they end.
    pub completion: Option<(Exchange, Completion)>,
}

/// The chain, request info and limits holds the on-response-headers hooks are called with.
type Hooks = (Arc<Chain>, RequestInfo, Option<Arc<RequestLimits>>);

/// Runs the on-response-headers plugins on `response`'s headers. The response is already on
/// its way, so a failure is logged and counted (by the host) and the headers stay as they were.
async fn response_hooks(hooks: Option<Hooks>, response: &mut Response<ResponseBody>) {
    let Some((chain, info, limits)) = hooks else { return };
    let status = response.status().as_u16();
    let mut headers = Arc::new(std::mem::take(response.headers_mut()));
    if let Err(failure) = chain.on_response_headers(&info, status, &mut headers, limits.as_ref()).await {
        tracing::debug!(error = %failure, "on-response-headers failed; headers left unchanged");
    }
    *response.headers_mut() = Arc::unwrap_or_clone(headers);
}

/// The chain and request info when the chain has on-response-chunk hooks.
fn chunk_hooks(ex: &Exchange) -> Option<&(Arc<Chain>, RequestInfo)> {
    ex.plugins.as_ref().filter(|(chain, _)| chain.has(Hook::OnResponseChunk))
}

/// Runs the on-response-chunk plugins on a whole (successful, not streamed) body. A failure
/// of a fail-closed plugin withholds the answer: the plugin may be there to keep something
/// from reaching the client.
fn whole_body_hooks(ex: &Exchange, body: Bytes) -> Result<Bytes, GatewayError> {
    let Some((chain, info)) = chunk_hooks(ex) else { return Ok(body) };
    match chain.on_response_chunk(info, false, 0, &String::from_utf8_lossy(&body)) {
        Ok(ChunkVerdict::Forward | ChunkVerdict::Drop) => Ok(body),
        Ok(ChunkVerdict::Replace(text)) => Ok(Bytes::from(text)),
        Err(failure) => {
            Err(GatewayError::PluginFailed { plugin: failure.0.plugin().to_owned(), kind: failure.0.kind() })
        }
    }
}

/// A translated Messages request's whole answer, from the worker's chat completion. An answer
/// that cannot be translated is the worker's fault (`502`), like any other broken answer.
fn chat_to_messages(ex: &Exchange, body: &[u8]) -> Result<Bytes, GatewayError> {
    translate::chat_to_messages(body, &ex.model).map(Bytes::from).map_err(|e| GatewayError::Upstream {
        model: ex.model.to_string(),
        attempts: ex.attempts,
        reason: format!("its chat completion could not be translated to a message: {e}"),
    })
}

pub async fn run(mut ex: Exchange, forwarded: Forwarded, strip_usage: bool, limits: RelayLimits) -> Reply {
    let started = Instant::now();
    let hooks = ex
        .plugins
        .as_ref()
        .filter(|(chain, _)| chain.has(Hook::OnResponseHeaders))
        .map(|(chain, info)| (Arc::clone(chain), info.clone(), ex.limits.clone()));
    let Forwarded { reply, guard } = forwarded;
    let request_id = ex.request_id.clone();
    match reply {
        UpstreamReply::Full { status, content_type, body } => {
            let outcome = if status.is_success() { Outcome::Ok } else { Outcome::UpstreamRejected };
            let usage = match ex.api {
                _ if !status.is_success() => None,
                _ if ex.through_chat => body_usage(&body),
                Some(Api::Responses) => agent_body_usage(Dialect::Responses, &body),
                Some(Api::Messages) => agent_body_usage(Dialect::Messages, &body),
                _ => body_usage(&body),
            };
            // A stored Responses answer: its endpoint is recorded (in Redis too, before the
            // client can read the id and continue it through another replica).
            if let Some(pending) = ex.affinity.take()
                && status.is_success()
                && let Some(written) = pending.whole(&body, guard.endpoint())
            {
                let _ = written.await;
            }
            let (body, content_type) = if status.is_success() {
                // Plugins see the chat completion the worker gave; the client gets its answer.
                let body = whole_body_hooks(&ex, body)
                    .and_then(|body| if ex.through_chat { chat_to_messages(&ex, &body) } else { Ok(body) });
                (body, content_type)
            } else {
                // The client gets an OpenAI error whatever the worker's error looked like.
                match wrap_error_body(status, content_type.as_ref(), &body) {
                    Some(wrapped) => (Ok(Bytes::from(wrapped)), None),
                    None => (Ok(body), content_type),
                }
            };
            let body = match body {
                Ok(body) => body,
                Err(error) => {
                    // The worker did the work: its usage is recorded, though the client gets
                    // the error.
                    let error_outcome = error.outcome();
                    let mut response = error.into_response();
                    response.headers_mut().insert(X_REQUEST_ID, request_id);
                    drop(guard);
                    ex.overhead += started.elapsed();
                    let status = response.status().as_u16();
                    let completion =
                        Completion { status, outcome: Some(error_outcome), usage, ..Completion::default() };
                    return Reply { response, completion: Some((ex, completion)) };
                }
            };
            if status.is_success()
                && let Some(store) = ex.cache.as_mut().and_then(|c| c.store.take())
            {
                store.whole(&body, ex.start.elapsed());
            }
            let mut response = Response::new(ResponseBody::full(body));
            *response.status_mut() = status;
            let headers = response.headers_mut();
            // One allocation with room for what comes later (the rate limiter's six
            // `x-ratelimit-*`, the cache's), rather than a map grown and rehashed on the way.
            headers.reserve(ANSWER_HEADERS);
            headers.insert(header::CONTENT_TYPE, content_type.unwrap_or(HeaderValue::from_static("application/json")));
            headers.insert(X_REQUEST_ID, request_id);
            response_hooks(hooks, &mut response).await;
            drop(guard);
            ex.overhead += started.elapsed();
            let completion =
                Completion { status: status.as_u16(), outcome: Some(outcome), usage, ..Completion::default() };
            Reply { response, completion: Some((ex, completion)) }
        }
        UpstreamReply::Stream { content_type, incoming, first } => {
            ex.overhead += started.elapsed();
            let chunk_hooks = chunk_hooks(&ex).cloned();
            let through_chat = ex.through_chat;
            let capture =
                ex.cache.as_mut().and_then(|c| c.store.take()).map(|store| (store.capture(through_chat), store));
            let relay = Relay::new(ex, guard, incoming, first, strip_usage, limits, RelayTaps { chunk_hooks, capture });
            let mut response = Response::new(ResponseBody::Stream(Box::new(relay)));
            let headers = response.headers_mut();
            headers.reserve(ANSWER_HEADERS);
            headers.insert(header::CONTENT_TYPE, content_type.unwrap_or(HeaderValue::from_static("text/event-stream")));
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            headers.insert(X_REQUEST_ID, request_id);
            // Tells nginx-style proxies in front of Sluice not to buffer the stream.
            headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
            response_hooks(hooks, &mut response).await;
            Reply { response, completion: None }
        }
    }
}
