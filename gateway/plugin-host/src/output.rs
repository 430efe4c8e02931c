//! Limits on what a plugin hands back: a rewritten body, headers to set, a local response, a
//! replaced stream chunk. They are held to the limits client input is held to, and checked
//! before anything is forwarded or sent; a violation is a failure of its own kind
//! (`output_limit`) under the binding's failure policy.

use http::header::{HeaderName, HeaderValue};

use crate::bindings::types::{Header, LocalResponse, RequestChanges, ResponseChanges};

/// What a plugin's output may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputLimits {
    /// A rewritten request body (the gateway's `server.max_body_bytes`).
    pub max_body_bytes: usize,
    /// A local response's body, or a replaced chunk.
    pub max_response_bytes: usize,
    /// Headers one decision may set.
    pub max_headers: usize,
    pub max_header_name_bytes: usize,
    pub max_header_value_bytes: usize,
    /// All set headers' names and values together.
    pub max_header_bytes: usize,
}

impl Default for OutputLimits {
    fn default() -> Self {
        OutputLimits {
            max_body_bytes: 1 << 20,
            max_response_bytes: 8 << 20,
            max_headers: 64,
            max_header_name_bytes: 256,
            max_header_value_bytes: 8 << 10,
            max_header_bytes: 32 << 10,
        }
    }
}

/// Headers a plugin may not set: they decide how a message is framed or routed, which is the
/// gateway's to say (a plugin's `transfer-encoding` could smuggle a second request to a worker).
const RESERVED: &[&str] = &[
    "connection",
    "content-length",
    "host",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

impl OutputLimits {
    pub fn request_changes(&self, changes: &RequestChanges) -> Result<(), String> {
        self.headers(&changes.set_headers)?;
        for name in &changes.remove_headers {
            self.name(name)?;
        }
        if let Some(body) = &changes.body
            && body.len() > self.max_body_bytes
        {
            return Err(format!(
                "a rewritten body of {} bytes is over the {}-byte limit",
                body.len(),
                self.max_body_bytes
            ));
        }
        if let Some(model) = &changes.model
            && (model.is_empty() || model.len() > 256)
        {
            return Err(format!("a model name of {} bytes (1 to 256 allowed)", model.len()));
        }
        Ok(())
    }

    pub fn response_changes(&self, changes: &ResponseChanges) -> Result<(), String> {
        self.headers(&changes.set_headers)?;
        changes.remove_headers.iter().try_for_each(|name| self.name(name))
    }

    pub fn local_response(&self, response: &LocalResponse) -> Result<(), String> {
        if !(200..=599).contains(&response.status) {
            return Err(format!("a local response with status {} (200 to 599 allowed)", response.status));
        }
        self.headers(&response.headers)?;
        if response.body.len() > self.max_response_bytes {
            return Err(format!(
                "a local response body of {} bytes is over the {}-byte limit",
                response.body.len(),
                self.max_response_bytes
            ));
        }
        Ok(())
    }

    pub fn denial_status(status: u16) -> Result<(), String> {
        if (400..=599).contains(&status) {
            Ok(())
        } else {
            Err(format!("a denial with status {status} (400 to 599 allowed)"))
        }
    }

    pub fn chunk(&self, replacement: &str) -> Result<(), String> {
        if replacement.len() > self.max_response_bytes {
            return Err(format!(
                "a replaced chunk of {} bytes is over the {}-byte limit",
                replacement.len(),
                self.max_response_bytes
            ));
        }
        Ok(())
    }

    fn name(&self, name: &str) -> Result<(), String> {
        if name.len() > self.max_header_name_bytes {
            return Err(format!(
                "a header name of {} bytes is over the {}-byte limit",
                name.len(),
                self.max_header_name_bytes
            ));
        }
        let valid = HeaderName::from_bytes(name.as_bytes()).map_err(|_| format!("an invalid header name {name:?}"))?;
        if RESERVED.contains(&valid.as_str()) {
            return Err(format!("header {valid} is the gateway's to set"));
        }
        Ok(())
    }

    pub fn headers(&self, headers: &[Header]) -> Result<(), String> {
        if headers.len() > self.max_headers {
            return Err(format!("{} headers set, over the limit of {}", headers.len(), self.max_headers));
        }
        let mut total = 0usize;
        for h in headers {
            self.name(&h.name)?;
            if h.value.len() > self.max_header_value_bytes {
                return Err(format!(
                    "header {} has a value of {} bytes, over the {}-byte limit",
                    h.name,
                    h.value.len(),
                    self.max_header_value_bytes
                ));
            }
            HeaderValue::from_str(&h.value).map_err(|_| format!("header {} has an invalid value", h.name))?;
            total += h.name.len() + h.value.len();
        }
        if total > self.max_header_bytes {
            return Err(format!("{total} bytes of headers set, over the {}-byte limit", self.max_header_bytes));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(name: &str, value: &str) -> Header {
        Header { name: name.to_owned(), value: value.to_owned() }
    }

    fn changes(set_headers: Vec<Header>, body: Option<Vec<u8>>) -> RequestChanges {
        RequestChanges { set_headers, remove_headers: Vec::new(), model: None, body }
    }

    #[test]
    fn ordinary_output_passes() {
        let limits = OutputLimits::default();
        assert!(limits.request_changes(&changes(vec![header("x-tag", "blue")], Some(b"{}".to_vec()))).is_ok());
        let local =
            LocalResponse { status: 200, headers: vec![header("content-type", "application/json")], body: vec![] };
        assert!(limits.local_response(&local).is_ok());
    }

    #[test]
    fn oversize_and_invalid_output_is_refused() {
        let limits = OutputLimits::default();
        let big_body = vec![b' '; limits.max_body_bytes + 1];
        assert!(limits.request_changes(&changes(vec![], Some(big_body))).unwrap_err().contains("rewritten body"));
        let big_value = "v".repeat(limits.max_header_value_bytes + 1);
        assert!(limits.request_changes(&changes(vec![header("x-big", &big_value)], None)).is_err());
        let many = (0..=limits.max_headers).map(|i| header(&format!("x-{i}"), "v")).collect();
        assert!(limits.request_changes(&changes(many, None)).is_err());
        let spread = (0..8).map(|i| header(&format!("x-{i}"), &"v".repeat(5 << 10))).collect();
        assert!(limits.request_changes(&changes(spread, None)).unwrap_err().contains("bytes of headers"));
        assert!(limits.request_changes(&changes(vec![header("bad name", "v")], None)).is_err());
        assert!(limits.request_changes(&changes(vec![header("x-ok", "line\nbreak")], None)).is_err());
        for reserved in ["transfer-encoding", "Content-Length", "host"] {
            assert!(limits.request_changes(&changes(vec![header(reserved, "1")], None)).is_err(), "{reserved}");
        }
        let local = LocalResponse { status: 200, headers: vec![], body: vec![0; limits.max_response_bytes + 1] };
        assert!(limits.local_response(&local).is_err());
        let informational = LocalResponse { status: 101, headers: vec![], body: vec![] };
        assert!(limits.local_response(&informational).is_err());
        assert!(OutputLimits::denial_status(200).is_err());
        assert!(OutputLimits::denial_status(429).is_ok());
    }
}
