//! The upstream's answer → the client's response, and the figures to record.

use std::time::Instant;

use http::{HeaderValue, Response, header};
use sluice_metrics::Outcome;
use sluice_openai::probe::body_usage;

use crate::body::ResponseBody;
use crate::exchange::{Completion, Exchange};
use crate::relay::{Relay, RelayLimits};
use crate::stages::forward::{Forwarded, UpstreamReply};

pub struct Reply {
    pub response: Response<ResponseBody>,
    /// For whole responses: what to record now. Streams record themselves when they end.
    pub completion: Option<(Exchange, Completion)>,
}

pub fn run(mut ex: Exchange, forwarded: Forwarded, strip_usage: bool, limits: RelayLimits) -> Reply {
    let started = Instant::now();
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
            Reply { response, completion: None }
        }
    }
}
