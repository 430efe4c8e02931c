//! Just enough HTTP/1.1 for the tests: one connection per request (hyper's low-level client),
//! a deadline on everything, and an incremental SSE reader.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::{TcpSocket, TcpStream};

/// Deadline for connecting plus receiving response headers, and for each body read.
pub const IO_TIMEOUT: Duration = Duration::from_secs(15);

/// A fully read response.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("response body is not JSON ({e}): {}", self.text()))
    }

    pub fn content_type(&self) -> &str {
        content_type(&self.headers)
    }
}

fn content_type(headers: &HeaderMap) -> &str {
    headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("")
}

/// Sends one request on a fresh connection and returns the response head with its body unread.
pub async fn send(
    method: Method,
    url: &str,
    bearer: Option<&str>,
    body: Option<&Value>,
) -> Result<Response<Incoming>, String> {
    send_from(None, method, url, bearer, body).await
}

/// [`send`] from the local address `from` (any of 127/8 on Linux), so that a server sees
/// another client address; `None` lets the system choose.
pub async fn send_from(
    from: Option<IpAddr>,
    method: Method,
    url: &str,
    bearer: Option<&str>,
    body: Option<&Value>,
) -> Result<Response<Incoming>, String> {
    let uri: Uri = url.parse().map_err(|e| format!("bad URL {url}: {e}"))?;
    let authority = uri.authority().ok_or_else(|| format!("no host in {url}"))?.clone();
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let exchange = async {
        let tcp = connect(from, authority.as_str()).await.map_err(|e| format!("connect {authority}: {e}"))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(tcp))
            .await
            .map_err(|e| format!("handshake with {authority}: {e}"))?;
        tokio::spawn(conn);
        let mut request = Request::builder().method(method).uri(path).header(header::HOST, authority.as_str());
        if let Some(key) = bearer {
            request = request.header(header::AUTHORIZATION, format!("Bearer {key}"));
        }
        let payload = match body {
            Some(v) => {
                request = request.header(header::CONTENT_TYPE, "application/json");
                Bytes::from(v.to_string())
            }
            None => Bytes::new(),
        };
        let request = request.body(Full::new(payload)).map_err(|e| format!("building request: {e}"))?;
        sender.send_request(request).await.map_err(|e| format!("request to {url}: {e}"))
    };
    tokio::time::timeout(IO_TIMEOUT, exchange).await.map_err(|_| format!("no response from {url} in {IO_TIMEOUT:?}"))?
}

/// A TCP connection to `authority` (`host:port`), from the local address `from` if given.
pub async fn connect(from: Option<IpAddr>, authority: &str) -> std::io::Result<TcpStream> {
    let Some(from) = from else { return TcpStream::connect(authority).await };
    let to = tokio::net::lookup_host(authority)
        .await?
        .find(|a| a.is_ipv4() == from.is_ipv4())
        .ok_or_else(|| std::io::Error::other(format!("no {from:?}-family address for {authority}")))?;
    let socket = if from.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.bind(SocketAddr::new(from, 0))?;
    socket.connect(to).await
}

async fn read(response: Response<Incoming>, url: &str) -> Result<Reply, String> {
    let (parts, body) = response.into_parts();
    let body = tokio::time::timeout(IO_TIMEOUT, body.collect())
        .await
        .map_err(|_| format!("body of {url} not complete in {IO_TIMEOUT:?}"))?
        .map_err(|e| format!("reading body of {url}: {e}"))?
        .to_bytes();
    Ok(Reply { status: parts.status, headers: parts.headers, body })
}

/// GET that reports transport errors instead of panicking (readiness probes).
pub async fn try_get(url: &str) -> Result<Reply, String> {
    read(send(Method::GET, url, None, None).await?, url).await
}

pub async fn get(url: &str, bearer: Option<&str>) -> Reply {
    let response = send(Method::GET, url, bearer, None).await.unwrap_or_else(|e| panic!("GET {url}: {e}"));
    read(response, url).await.unwrap_or_else(|e| panic!("GET {url}: {e}"))
}

/// [`get`] from the local address `from` (see [`send_from`]).
pub async fn get_from(from: IpAddr, url: &str, bearer: Option<&str>) -> Reply {
    let response =
        send_from(Some(from), Method::GET, url, bearer, None).await.unwrap_or_else(|e| panic!("GET {url}: {e}"));
    read(response, url).await.unwrap_or_else(|e| panic!("GET {url}: {e}"))
}

pub async fn post(url: &str, bearer: Option<&str>, body: &Value) -> Reply {
    let response = send(Method::POST, url, bearer, Some(body)).await.unwrap_or_else(|e| panic!("POST {url}: {e}"));
    read(response, url).await.unwrap_or_else(|e| panic!("POST {url}: {e}"))
}

/// A response read as Server-Sent Events, one `data` payload at a time.
pub struct SseStream {
    pub status: StatusCode,
    pub headers: HeaderMap,
    body: Incoming,
    buf: BytesMut,
}

impl SseStream {
    /// POSTs `body` and returns the stream once the response headers have arrived.
    pub async fn open(url: &str, bearer: Option<&str>, body: &Value) -> SseStream {
        let response = send(Method::POST, url, bearer, Some(body)).await.unwrap_or_else(|e| panic!("POST {url}: {e}"));
        let (parts, body) = response.into_parts();
        SseStream { status: parts.status, headers: parts.headers, body, buf: BytesMut::new() }
    }

    pub fn content_type(&self) -> &str {
        content_type(&self.headers)
    }

    /// The next event's `data` (lines joined by `\n`), or `None` when the body has ended.
    /// Events without data (comments, keep-alives) are skipped.
    pub async fn next_data(&mut self) -> Option<String> {
        loop {
            if let Some(end) = find(&self.buf, b"\n\n") {
                let event = self.buf.split_to(end + 2);
                let text = String::from_utf8_lossy(&event).replace('\r', "");
                let data: Vec<&str> = text
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(|d| d.strip_prefix(' ').unwrap_or(d))
                    .collect();
                if data.is_empty() {
                    continue;
                }
                return Some(data.join("\n"));
            }
            let frame = tokio::time::timeout(IO_TIMEOUT, self.body.frame())
                .await
                .unwrap_or_else(|_| panic!("no stream data for {IO_TIMEOUT:?}"));
            match frame {
                None => {
                    assert!(
                        self.buf.iter().all(u8::is_ascii_whitespace),
                        "stream ended inside an event: {:?}",
                        String::from_utf8_lossy(&self.buf)
                    );
                    return None;
                }
                Some(Err(e)) => panic!("stream broke: {e}"),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.buf.extend_from_slice(&data);
                    }
                }
            }
        }
    }

    /// Every remaining `data` payload until the body ends.
    pub async fn rest(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(data) = self.next_data().await {
            out.push(data);
        }
        out
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
