//! The capabilities that wait on the network, outbound HTTP and embeddings, and the policy
//! around them.
//!
//! The host owns the policy: the binding's allow-list, the deadline, the size caps. The
//! transport is the embedder's [`PluginIo`] (the gateway sends outbound requests with its
//! own HTTP client and embeds through its configured pools), set once with
//! [`crate::services::HostServices::set_io`]. Without one, both capabilities answer with an
//! error the plugin can handle.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use http::Uri;

/// What a [`PluginIo`] call resolves to: the value, or a message for the plugin.
pub type IoFuture<T> = Pin<Box<dyn Future<Output = Result<T, String>> + Send>>;

/// The most of a response body a plugin receives; a longer body is an error.
pub const MAX_RESPONSE_BYTES: usize = 4 << 20;
/// The most a plugin may send in one outbound request body.
pub const MAX_REQUEST_BYTES: usize = 1 << 20;

/// Sends what the `http` and `embeddings` capabilities ask for. Implementations must honour
/// `timeout` and `max_body`; the host has already checked the allow-list.
pub trait PluginIo: Send + Sync + std::fmt::Debug {
    /// One HTTP exchange. Redirects are not followed (a redirect is the plugin's business, and
    /// following one would step around the allow-list).
    fn send(
        &self,
        request: http::Request<Bytes>,
        timeout: Duration,
        max_body: usize,
    ) -> IoFuture<http::Response<Bytes>>;

    /// The embedding of `input` by `model`, from a pool serving that model.
    fn embed(&self, model: String, input: String, timeout: Duration) -> IoFuture<Vec<f32>>;
}

/// One allowed destination: a host, and a port when the entry names one.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Allowed {
    host: String,
    port: Option<u16>,
}

/// The hosts a binding's plugin may reach with the `http` capability. Entries are `host` (any
/// port) or `host:port`; hosts compare case-insensitively and exactly (no wildcards: a plugin
/// should not be able to reach a host nobody named).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList(Vec<Allowed>);

impl AllowList {
    /// Parses the entries; the error names the first bad one.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<AllowList, String> {
        let mut allowed = Vec::with_capacity(entries.len());
        for entry in entries {
            let entry = entry.as_ref();
            let bad = |why: &str| format!("http_allow entry {entry:?}: {why}");
            if entry.contains("://") || entry.contains('/') {
                return Err(bad("give a host or host:port, without scheme or path"));
            }
            let authority: http::uri::Authority = entry.parse().map_err(|_| bad("not a host or host:port"))?;
            // Accepted only if it is exactly `host` or `host:port` as parsed (a port that is not
            // a number, say, does not round-trip).
            let exact = match authority.port_u16() {
                Some(port) => format!("{}:{port}", authority.host()),
                None => authority.host().to_owned(),
            };
            if authority.host().is_empty() || !exact.eq_ignore_ascii_case(entry) {
                return Err(bad("not a host or host:port"));
            }
            allowed.push(Allowed { host: authority.host().to_ascii_lowercase(), port: authority.port_u16() });
        }
        Ok(AllowList(allowed))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `uri` (absolute, http or https) may be requested.
    pub fn permits(&self, uri: &Uri) -> bool {
        let Some(host) = uri.host() else { return false };
        let port = uri.port_u16().or(match uri.scheme_str() {
            Some("http") => Some(80),
            Some("https") => Some(443),
            _ => None,
        });
        self.0.iter().any(|a| a.host.eq_ignore_ascii_case(host) && (a.port.is_none() || a.port == port))
    }
}

/// Checks a plugin's outbound request against `allow` and builds it. The error is what the
/// plugin is told.
pub fn outbound_request(
    allow: &AllowList,
    method: &str,
    url: &str,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
) -> Result<http::Request<Bytes>, String> {
    let uri: Uri = url.parse().map_err(|e| format!("invalid URL {url:?}: {e}"))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(format!("URL {url:?} must be absolute http:// or https://"));
    }
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err(format!("URL {url:?} must not carry credentials"));
    }
    if !allow.permits(&uri) {
        return Err(format!(
            "{} is not in this binding's http_allow list",
            uri.authority().map_or("(no host)", |a| a.as_str())
        ));
    }
    if body.len() > MAX_REQUEST_BYTES {
        return Err(format!("request body of {} bytes is over the {MAX_REQUEST_BYTES}-byte limit", body.len()));
    }
    let method = http::Method::from_bytes(method.as_bytes()).map_err(|_| format!("invalid method {method:?}"))?;
    let mut builder = http::Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        let name = http::HeaderName::try_from(name.as_str()).map_err(|_| format!("invalid header name {name:?}"))?;
        // Hop-by-hop and routing headers are the client's business, not the plugin's.
        if name == http::header::HOST || name == http::header::CONNECTION || name == http::header::TRANSFER_ENCODING {
            continue;
        }
        let value = http::HeaderValue::try_from(value).map_err(|_| format!("invalid value for header {name}"))?;
        builder = builder.header(name, value);
    }
    builder.body(Bytes::from(body)).map_err(|e| format!("invalid request: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri(s: &str) -> Uri {
        s.parse().unwrap()
    }

    #[test]
    fn allow_list_matches_host_and_port() {
        let allow = AllowList::parse(&["api.example.com", "127.0.0.1:8080", "Secure.Example.com:443"]).unwrap();
        assert!(allow.permits(&uri("https://api.example.com/v1")));
        assert!(allow.permits(&uri("http://API.example.com:9000/")));
        assert!(allow.permits(&uri("http://127.0.0.1:8080/x")));
        assert!(!allow.permits(&uri("http://127.0.0.1:8081/x")));
        assert!(!allow.permits(&uri("http://127.0.0.1/x")));
        assert!(allow.permits(&uri("https://secure.example.com/")));
        assert!(!allow.permits(&uri("http://secure.example.com/")), "port 80 is not 443");
        assert!(!allow.permits(&uri("https://evil.api.example.com/")));
        assert!(!AllowList::default().permits(&uri("http://api.example.com/")));
    }

    #[test]
    fn bad_entries_are_refused() {
        for bad in ["http://x.com", "x.com/path", "user@x.com", ":80", "x.com:port", ""] {
            assert!(AllowList::parse(&[bad]).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn outbound_requests_are_checked() {
        let allow = AllowList::parse(&["127.0.0.1:9"]).unwrap();
        let ok =
            outbound_request(&allow, "POST", "http://127.0.0.1:9/a", vec![("x-a".into(), "1".into())], b"{}".to_vec());
        assert!(ok.is_ok());
        let cases = [
            ("GET", "http://127.0.0.1:10/a", "http_allow"),
            ("GET", "ftp://127.0.0.1:9/a", "http://"),
            ("GET", "/relative", "http://"),
            ("GET", "http://u:p@127.0.0.1:9/", "credentials"),
            ("G E T", "http://127.0.0.1:9/", "method"),
        ];
        for (method, url, needle) in cases {
            match outbound_request(&allow, method, url, Vec::new(), Vec::new()) {
                Err(e) => assert!(e.contains(needle), "{url}: {e}"),
                Ok(_) => panic!("{method} {url} was allowed"),
            }
        }
        let big = vec![0; MAX_REQUEST_BYTES + 1];
        assert!(outbound_request(&allow, "POST", "http://127.0.0.1:9/", Vec::new(), big).is_err());
    }
}
