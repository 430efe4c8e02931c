//! The HTTP/1.1 message format (RFC 9112) of requests to workers and of their responses: the
//! request head, the response head, and the response body's framing.
//!
//! Of a response the gateway needs its status, content type, framing and whether the connection
//! may carry another request; the worker's other headers do not reach the client (the respond
//! stage writes its own), so they are checked for framing and otherwise skipped, never copied.

use std::mem::MaybeUninit;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};

/// Larger response heads mean a broken worker, not a big answer.
pub const MAX_HEAD: usize = 64 * 1024;
const MAX_HEADERS: usize = 128;
/// A chunk-size line or a trailer line longer than this is refused.
const MAX_LINE: usize = 4 * 1024;
const MAX_TRAILERS: usize = 16 * 1024;

/// Why a worker's response could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("malformed response head: {0}")]
    Head(httparse::Error),
    #[error("response head larger than {MAX_HEAD} bytes")]
    HeadTooLarge,
    #[error("unexpected informational response {0}")]
    Informational(u16),
    #[error("invalid content-length")]
    ContentLength,
    #[error("malformed chunked body: {0}")]
    Chunked(&'static str),
}

/// The head of a request to `uri` (absolute: its authority becomes `host`). Framing headers in
/// `headers` are dropped: the gateway frames the body it sends itself.
pub fn encode_request(method: &Method, uri: &Uri, headers: &HeaderMap, body_len: usize) -> Bytes {
    let mut head = BytesMut::with_capacity(256);
    head.put_slice(method.as_str().as_bytes());
    head.put_u8(b' ');
    head.put_slice(uri.path_and_query().map_or("/", |p| p.as_str()).as_bytes());
    head.put_slice(b" HTTP/1.1\r\n");
    if !headers.contains_key(header::HOST)
        && let Some(authority) = uri.authority()
    {
        line(&mut head, b"host", authority.as_str().as_bytes());
    }
    for (name, value) in headers {
        if name == header::CONTENT_LENGTH || name == header::TRANSFER_ENCODING || name == header::CONNECTION {
            continue;
        }
        line(&mut head, name.as_str().as_bytes(), value.as_bytes());
    }
    if body_len > 0 || !matches!(*method, Method::GET | Method::HEAD) {
        line(&mut head, b"content-length", itoa::Buffer::new().format(body_len).as_bytes());
    }
    head.put_slice(b"\r\n");
    head.freeze()
}

fn line(head: &mut BytesMut, name: &[u8], value: &[u8]) {
    head.put_slice(name);
    head.put_slice(b": ");
    head.put_slice(value);
    head.put_slice(b"\r\n");
}

/// How a response body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body (204, 304, a zero length).
    Empty,
    Length(u64),
    Chunked,
    /// The body is everything until the worker closes the connection.
    UntilClose,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    pub status: StatusCode,
    pub content_type: Option<HeaderValue>,
    pub framing: Framing,
    /// The connection may carry another request once this body has been read.
    pub reusable: bool,
}

/// Parses the response head at the start of `buf`: its length and what it says, or `None` when
/// more bytes are needed. Interim (1xx) responses are returned like any other; the caller skips
/// them.
pub fn parse_response(buf: &[u8]) -> Result<Option<(usize, ResponseHead)>, WireError> {
    // Left uninitialised: httparse writes the headers it finds, and zeroing room for 128 of them
    // (4 KiB) cost more than parsing a short head.
    let mut headers = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut []);
    let len =
        match httparse::ParserConfig::default().parse_response_with_uninit_headers(&mut response, buf, &mut headers) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => return Err(WireError::HeadTooLarge),
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(e) => return Err(WireError::Head(e)),
        };
    let code = response.code.unwrap_or_default();
    let status = StatusCode::from_u16(code).map_err(|_| WireError::Head(httparse::Error::Status))?;
    let http11 = response.version == Some(1);
    let mut content_type = None;
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut other_coding = false;
    let mut close = !http11;
    for h in response.headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("content-type") {
            content_type = content_type_value(h.value);
        } else if name.eq_ignore_ascii_case("content-length") {
            // `5, 5` is one length said twice; two different ones make the body's end unknowable.
            for part in h.value.split(|&b| b == b',') {
                let n = parse_decimal(part.trim_ascii()).ok_or(WireError::ContentLength)?;
                if length.is_some_and(|l| l != n) {
                    return Err(WireError::ContentLength);
                }
                length = Some(n);
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            // Only the last coding frames the body; `chunked` must be it.
            for coding in h.value.split(|&b| b == b',').map(<[u8]>::trim_ascii).filter(|c| !c.is_empty()) {
                chunked = coding.eq_ignore_ascii_case(b"chunked");
                other_coding |= !chunked;
            }
        } else if name.eq_ignore_ascii_case("connection") {
            for token in h.value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                if token.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") && !http11 {
                    close = false;
                }
            }
        }
    }
    let informational = status.is_informational();
    let framing = if informational || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
        Framing::Empty
    } else if chunked || other_coding {
        // A transfer coding overrides any length (RFC 9112 §6.3); a body with both, or with a
        // coding that is not chunked last, ends only with the connection.
        close |= length.is_some() || !chunked;
        if chunked { Framing::Chunked } else { Framing::UntilClose }
    } else {
        match length {
            Some(0) => Framing::Empty,
            Some(n) => Framing::Length(n),
            None => {
                close = true;
                Framing::UntilClose
            }
        }
    };
    Ok(Some((len, ResponseHead { status, content_type, framing, reusable: !close })))
}

/// Workers answer with one of a few content types; those need no copy.
fn content_type_value(value: &[u8]) -> Option<HeaderValue> {
    const COMMON: [&str; 4] = [
        "application/json",
        "text/event-stream",
        "text/event-stream; charset=utf-8",
        "application/json; charset=utf-8",
    ];
    match COMMON.iter().find(|known| known.as_bytes() == value) {
        Some(known) => Some(HeaderValue::from_static(known)),
        None => HeaderValue::from_bytes(value).ok(),
    }
}

fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &d| d.is_ascii_digit().then(|| n * 10 + u64::from(d - b'0')))
}

/// What the next step of reading a body gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    Data(Bytes),
    /// Nothing more can be decoded from what has been read so far.
    NeedMore,
    End,
}

/// Decodes a chunked body incrementally from a read buffer, handing out each chunk's data as
/// it arrives (a token event is usually one chunk) without copying it.
#[derive(Debug, Default)]
pub struct ChunkedDecoder {
    state: ChunkState,
    trailer_bytes: usize,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    #[default]
    Size,
    Data(u64),
    /// The CRLF after a chunk's data.
    DataEnd,
    Trailers,
    Done,
}

impl ChunkedDecoder {
    /// Consumes from `buf` up to the next piece of data, or up to the end of the body.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, WireError> {
        loop {
            match self.state {
                ChunkState::Size => {
                    let Some((len, used)) = first_line(buf)? else { return Ok(Decoded::NeedMore) };
                    let size = parse_chunk_size(&buf[..len])?;
                    buf.advance(used);
                    self.state = if size == 0 { ChunkState::Trailers } else { ChunkState::Data(size) };
                }
                ChunkState::Data(remaining) => {
                    if buf.is_empty() {
                        return Ok(Decoded::NeedMore);
                    }
                    let n = usize::try_from(remaining).unwrap_or(usize::MAX).min(buf.len());
                    let left = remaining - n as u64;
                    self.state = if left == 0 { ChunkState::DataEnd } else { ChunkState::Data(left) };
                    return Ok(Decoded::Data(take(buf, n)));
                }
                ChunkState::DataEnd => {
                    if buf.len() < 2 {
                        return Ok(Decoded::NeedMore);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(WireError::Chunked("chunk data not followed by CRLF"));
                    }
                    buf.advance(2);
                    self.state = ChunkState::Size;
                }
                ChunkState::Trailers => {
                    let Some((len, used)) = first_line(buf)? else { return Ok(Decoded::NeedMore) };
                    buf.advance(used);
                    if len == 0 {
                        self.state = ChunkState::Done;
                    } else {
                        self.trailer_bytes += len;
                        if self.trailer_bytes > MAX_TRAILERS {
                            return Err(WireError::Chunked("trailers too large"));
                        }
                    }
                }
                ChunkState::Done => return Ok(Decoded::End),
            }
        }
    }
}

/// The first line of `buf`: its length without the line ending, and with it.
fn first_line(buf: &[u8]) -> Result<Option<(usize, usize)>, WireError> {
    let Some(end) = memchr::memchr(b'\n', buf) else {
        return if buf.len() > MAX_LINE { Err(WireError::Chunked("line too long")) } else { Ok(None) };
    };
    if end > MAX_LINE {
        return Err(WireError::Chunked("line too long"));
    }
    let len = if end > 0 && buf[end - 1] == b'\r' { end - 1 } else { end };
    Ok(Some((len, end + 1)))
}

/// Pieces up to this size are copied out of the connection's read buffer rather than split off.
const COPY_UP_TO: usize = 16 * 1024;

/// The first `n` bytes of `buf`, taken off it. Splitting them off would share the buffer with
/// the piece, so the connection's next read would need a new buffer; a small piece (a token
/// event, a whole short answer) is cheaper to copy.
pub fn take(buf: &mut BytesMut, n: usize) -> Bytes {
    if n > COPY_UP_TO {
        return buf.split_to(n).freeze();
    }
    let piece = Bytes::copy_from_slice(&buf[..n]);
    buf.advance(n);
    piece
}

/// A chunk-size line: hex digits, then optional extensions (ignored).
fn parse_chunk_size(line: &[u8]) -> Result<u64, WireError> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    let rest = line[digits..].trim_ascii_start();
    if digits == 0 || digits > 15 || !(rest.is_empty() || rest.starts_with(b";")) {
        return Err(WireError::Chunked("invalid chunk size"));
    }
    line[..digits].iter().try_fold(0u64, |n, &d| {
        let v = (d as char).to_digit(16).ok_or(WireError::Chunked("invalid chunk size"))?;
        Ok(n * 16 + u64::from(v))
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

    use super::*;

    #[test]
    fn content_types_common_or_not_are_kept_as_sent() {
        for value in ["application/json", "text/event-stream; charset=utf-8", "application/x-ndjson", "Text/Plain"] {
            let h = head(&format!("HTTP/1.1 200 OK\r\ncontent-type: {value}\r\ncontent-length: 0\r\n\r\n"));
            assert_eq!(h.content_type.unwrap(), value);
        }
        assert_eq!(content_type_value(b"bad\x7fvalue"), None);
    }

    #[test]
    fn take_copies_small_pieces_and_splits_large_ones_leaving_the_rest() {
        for size in [1, COPY_UP_TO, COPY_UP_TO + 1, 3 * COPY_UP_TO] {
            let data: Vec<u8> = (0..size + 5).map(|i| (i % 251) as u8).collect();
            let mut buf = BytesMut::from(&data[..]);
            let piece = take(&mut buf, size);
            assert_eq!((&piece[..], &buf[..]), (&data[..size], &data[size..]), "{size}");
        }
    }

    fn head(text: &str) -> ResponseHead {
        let (len, head) = parse_response(text.as_bytes()).unwrap().expect("a complete head");
        assert_eq!(len, text.len());
        head
    }

    #[test]
    fn the_request_head_names_the_path_and_the_host_and_frames_the_body() {
        let uri: Uri = "http://127.0.0.1:8000/v1/chat/completions?x=1".parse().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("999"));
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        let head = encode_request(&Method::POST, &uri, &headers, 12);
        assert_eq!(
            std::str::from_utf8(&head).unwrap(),
            "POST /v1/chat/completions?x=1 HTTP/1.1\r\nhost: 127.0.0.1:8000\r\ncontent-type: application/json\r\n\
             content-length: 12\r\n\r\n"
        );
        let get = encode_request(&Method::GET, &"http://w/health".parse().unwrap(), &HeaderMap::new(), 0);
        assert_eq!(&get[..], b"GET /health HTTP/1.1\r\nhost: w\r\n\r\n");
    }

    #[test]
    fn framing_follows_rfc_9112() {
        let h = head("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\ncontent-length: 5\r\n\r\n");
        assert_eq!(h.status, StatusCode::OK);
        assert_eq!(h.content_type.unwrap(), "application/json");
        assert_eq!((h.framing, h.reusable), (Framing::Length(5), true));
        assert_eq!(head("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n").framing, Framing::Chunked);
        // A coding overrides a length, and the connection cannot be trusted afterwards.
        let both = head("HTTP/1.1 200 OK\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n");
        assert_eq!((both.framing, both.reusable), (Framing::Chunked, false));
        let gzip = head("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked, gzip\r\n\r\n");
        assert_eq!((gzip.framing, gzip.reusable), (Framing::UntilClose, false));
        let unframed = head("HTTP/1.1 200 OK\r\n\r\n");
        assert_eq!((unframed.framing, unframed.reusable), (Framing::UntilClose, false));
        assert_eq!(head("HTTP/1.1 204 No Content\r\n\r\n").framing, Framing::Empty);
        assert_eq!(head("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").framing, Framing::Empty);
        assert_eq!(head("HTTP/1.1 100 Continue\r\n\r\n").framing, Framing::Empty);
        assert_eq!(head("HTTP/1.1 200 OK\r\ncontent-length: 7, 7\r\n\r\n").framing, Framing::Length(7));
    }

    #[test]
    fn connection_reuse_follows_the_version_and_the_connection_header() {
        assert!(!head("HTTP/1.1 200 OK\r\ncontent-length: 1\r\nConnection: close\r\n\r\n").reusable);
        assert!(!head("HTTP/1.0 200 OK\r\ncontent-length: 1\r\n\r\n").reusable);
        assert!(head("HTTP/1.0 200 OK\r\ncontent-length: 1\r\nconnection: keep-alive\r\n\r\n").reusable);
    }

    #[test]
    fn bad_heads_are_errors_and_partial_heads_ask_for_more() {
        assert_eq!(parse_response(b"HTTP/1.1 200 OK\r\ncontent-le").unwrap(), None);
        for bad in [
            "HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: 99999999999999999999\r\n\r\n",
        ] {
            assert_eq!(parse_response(bad.as_bytes()), Err(WireError::ContentLength), "{bad}");
        }
        assert!(matches!(parse_response(b"SSH-2.0-OpenSSH\r\n\r\n"), Err(WireError::Head(_))));
        let huge = format!("HTTP/1.1 200 OK\r\nx: {}", "a".repeat(MAX_HEAD));
        assert_eq!(parse_response(huge.as_bytes()), Err(WireError::HeadTooLarge));
    }

    /// Feeds `wire` to a decoder in pieces of `step` bytes; returns the data and whether it ended.
    fn decode_in_steps(wire: &[u8], step: usize) -> Result<(Vec<u8>, bool), WireError> {
        let mut decoder = ChunkedDecoder::default();
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for piece in wire.chunks(step) {
            buf.extend_from_slice(piece);
            loop {
                match decoder.decode(&mut buf)? {
                    Decoded::Data(data) => out.extend_from_slice(&data),
                    Decoded::NeedMore => break,
                    Decoded::End => return Ok((out, true)),
                }
            }
        }
        Ok((out, false))
    }

    #[test]
    fn chunked_bodies_decode_however_the_bytes_arrive() {
        let wire = b"5\r\nhello\r\n1;ext=1\r\n \r\nA\r\n0123456789\r\n0\r\nx-trailer: 1\r\n\r\n";
        for step in 1..=wire.len() {
            let (data, ended) = decode_in_steps(wire, step).unwrap();
            assert_eq!(data, b"hello 0123456789", "step {step}");
            assert!(ended);
        }
        let (data, ended) = decode_in_steps(b"3\r\nabc\r\n", 64).unwrap();
        assert_eq!((data.as_slice(), ended), (&b"abc"[..], false));
    }

    #[test]
    fn malformed_chunked_bodies_are_errors() {
        for bad in [&b"zz\r\n"[..], b"5\r\nhelloXX", b"-1\r\n", b"1ffffffffffffffff\r\n", b"5 x\r\n"] {
            assert!(decode_in_steps(bad, 64).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        let long = vec![b'1'; MAX_LINE + 1];
        assert!(decode_in_steps(&long, 64).is_err());
    }
}
