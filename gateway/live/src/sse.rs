//! The live stream as server-sent events: `event: frame` with the frame's JSON in `data:`, a
//! comment line as heartbeat when nothing else was sent for a while, and `retry:` so browsers
//! reconnect after two seconds.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use http::{HeaderValue, Response, header};
use http_body_util::StreamBody;
use http_body_util::combinators::UnsyncBoxBody;
use tokio::sync::broadcast::error::RecvError;

use crate::frame::LiveFrame;
use crate::hub::LiveHub;

/// Quiet time after which a comment is sent, so proxies and the browser see the connection is
/// alive even when the hub stalls.
pub const HEARTBEAT: Duration = Duration::from_secs(15);
/// What the browser waits before reconnecting after the stream drops.
const RETRY: &[u8] = b"retry: 2000\n\n";
const HEARTBEAT_EVENT: &[u8] = b": heartbeat\n\n";

/// One frame as an SSE event. The JSON is compact, so it fits one `data:` line.
pub fn encode(frame: &LiveFrame) -> Bytes {
    let json = serde_json::to_string(frame).unwrap_or_else(|_| "{}".to_owned());
    Bytes::from(format!("event: frame\nid: {}\ndata: {json}\n\n", frame.at_ms))
}

enum State {
    Start,
    Streaming,
}

/// The event stream for one subscriber: the latest frame at once, then every new one. It ends
/// when the hub stops.
pub fn sse_stream(hub: &Arc<LiveHub>) -> impl Stream<Item = Result<Bytes, Infallible>> + Send + 'static {
    let receiver = hub.subscribe();
    let hub = Arc::clone(hub);
    futures_util::stream::unfold((State::Start, receiver, hub), |(state, mut receiver, hub)| async move {
        if let State::Start = state {
            let mut first = RETRY.to_vec();
            if let Some(frame) = hub.latest() {
                first.extend_from_slice(&encode(&frame));
            }
            return Some((Ok(Bytes::from(first)), (State::Streaming, receiver, hub)));
        }
        loop {
            let next = tokio::select! {
                () = hub.stopped().cancelled() => return None,
                next = tokio::time::timeout(HEARTBEAT, receiver.recv()) => next,
            };
            let bytes = match next {
                Ok(Ok(frame)) => encode(&frame),
                // Behind by more than the channel holds: skip to the newest frames.
                Ok(Err(RecvError::Lagged(_))) => continue,
                Ok(Err(RecvError::Closed)) => return None,
                Err(_) => Bytes::from_static(HEARTBEAT_EVENT),
            };
            return Some((Ok(bytes), (State::Streaming, receiver, hub)));
        }
    })
}

/// [`sse_stream`] as an HTTP body (hyper's or axum's: `axum::body::Body::new(sse_body(&hub))`).
pub fn sse_body(hub: &Arc<LiveHub>) -> UnsyncBoxBody<Bytes, Infallible> {
    UnsyncBoxBody::new(StreamBody::new(sse_stream(hub).map(|chunk| chunk.map(http_body::Frame::data))))
}

/// A complete `200 OK` response with the stream and the headers it needs: `text/event-stream`,
/// no caching, and no buffering by reverse proxies.
pub fn sse_response(hub: &Arc<LiveHub>) -> Response<UnsyncBoxBody<Bytes, Infallible>> {
    let mut response = Response::new(sse_body(hub));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}
