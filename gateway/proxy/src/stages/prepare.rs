//! The body sent upstream. Untouched when nothing needs changing; otherwise re-serialised from
//! the typed request (which keeps every unknown field).

use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use sluice_openai::request::force_include_usage;

use crate::error::GatewayError;
use crate::stages::parse::ParsedRequest;

pub struct UpstreamBody {
    pub bytes: Bytes,
    /// Headers plugins asked to send to the worker.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// The gateway asked for the usage chunk the client did not: strip it from the stream.
    pub strip_usage: bool,
}

pub fn run(parsed: ParsedRequest, original: Bytes) -> Result<UpstreamBody, GatewayError> {
    // Every streamed request must be accounted, so usage is requested even if the client did not.
    let rewritten = match parsed {
        ParsedRequest::Chat(mut r) if r.is_stream() && !r.wants_usage_chunk() => {
            force_include_usage(&mut r.stream_options);
            Some(serde_json::to_vec(&r))
        }
        ParsedRequest::Completion(mut r) if r.is_stream() && !r.wants_usage_chunk() => {
            force_include_usage(&mut r.stream_options);
            Some(serde_json::to_vec(&r))
        }
        ParsedRequest::Chat(_) | ParsedRequest::Completion(_) | ParsedRequest::Embedding(_) => None,
    };
    match rewritten {
        None => Ok(UpstreamBody { bytes: original, headers: Vec::new(), strip_usage: false }),
        Some(Ok(bytes)) => Ok(UpstreamBody { bytes: Bytes::from(bytes), headers: Vec::new(), strip_usage: true }),
        Some(Err(e)) => Err(GatewayError::Internal(format!("re-serialising request: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use sluice_metrics::Api;

    use super::*;
    use crate::stages::parse;

    fn prepare(body: &'static str) -> UpstreamBody {
        let bytes = Bytes::from_static(body.as_bytes());
        run(parse::run(Api::ChatCompletions, &bytes).unwrap(), bytes).unwrap()
    }

    #[test]
    fn untouched_unless_usage_must_be_requested() {
        let body = r#"{"model":"m", "messages":[], "top_k": 3}"#;
        let out = prepare(body);
        assert_eq!(out.bytes, body.as_bytes(), "non-streaming bodies pass byte-for-byte");
        assert!(!out.strip_usage);

        let out = prepare(r#"{"model":"m","messages":[],"stream":true,"stream_options":{"include_usage":true}}"#);
        assert!(!out.strip_usage, "client asked for usage itself");

        let out = prepare(r#"{"model":"m","messages":[],"stream":true,"top_k":3}"#);
        assert!(out.strip_usage);
        let v: serde_json::Value = serde_json::from_slice(&out.bytes).unwrap();
        assert_eq!(v["stream_options"]["include_usage"], true);
        assert_eq!(v["top_k"], 3);
    }
}
