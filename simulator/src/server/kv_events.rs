//! `GET /kv_events`: the worker's KV cache events as server-sent events.
//!
//! Each batch is `id: SEQ` + `data: {"seq","ts","events":[…]}`. `?since=SEQ` (or the standard
//! `Last-Event-ID` header a reconnecting SSE client sends) replays the batches after SEQ from
//! the ring buffer; without either the stream starts with the next batch. If the batches wanted
//! are gone, an `event: gap` frame says where the stream resumes.

use futures_util::stream;
use http::request::Parts;
use http::{HeaderValue, Response, header};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};

use super::App;
use super::http::{ApiError, Body, BodyError};

pub(crate) fn kv_events_handler(app: &App, parts: &Parts) -> Result<Response<Body>, ApiError> {
    let log = app.kv_events.as_ref().ok_or(ApiError::RouteNotFound)?;
    let after = since(parts)?;
    let subscription = log.subscribe(after);
    let frames = stream::unfold(subscription, |mut sub| async move {
        let chunk = sub.next_chunk().await?;
        Some((Ok::<_, BodyError>(Frame::data(chunk)), sub))
    });
    let mut resp = Response::new(StreamBody::new(frames).boxed_unsync());
    let headers = resp.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(resp)
}

/// The last sequence number the subscriber has, from `?since=` or `Last-Event-ID`.
fn since(parts: &Parts) -> Result<Option<u64>, ApiError> {
    let bad = || ApiError::bad_request("`since` must be a sequence number (an unsigned integer)", Some("since"));
    let query = parts.uri.query().unwrap_or("");
    if let Some(v) = query.split('&').find_map(|kv| kv.strip_prefix("since=")) {
        return v.parse().map(Some).map_err(|_| bad());
    }
    match parts.headers.get("last-event-id") {
        Some(v) => v.to_str().ok().and_then(|s| s.trim().parse().ok()).map(Some).ok_or_else(bad),
        None => Ok(None),
    }
}
