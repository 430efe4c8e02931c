//! Requests that cannot be parsed as HTTP/1.1 get an OpenAI error body.
//!
//! hyper answers such a request itself, before any handler runs: `431` for a header section
//! past the limits below, `414` for a request target too long, `400` for a malformed request
//! line or header or for conflicting framing (two `Content-Length`s, a `Transfer-Encoding`
//! that does not end in `chunked`). Its answer has an empty body, which OpenAI clients report
//! as an unknown error. Each connection's writes pass through [`ErrorBodies`], which gives
//! those answers a body in the OpenAI error shape and counts them.
//!
//! The rewrite is exact because of when hyper writes such an answer: only while no response
//! is in progress on the connection (the previous one has been flushed), as one head with
//! `content-length: 0` and nothing after it, and then it closes the connection. Every answer
//! the gateway's own handlers give with these statuses carries a body, so a write that is
//! exactly such a head is hyper's. HTTP/2 reports protocol errors in frames (`RST_STREAM`,
//! `GOAWAY`), which have no body to give.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use sluice_metrics::ConnectionMetrics;
use sluice_openai::ErrorBody;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The most header fields a request may have (hyper's default, set explicitly so the error
/// message states it).
pub const MAX_HEADER_FIELDS: usize = 100;

/// The most bytes a request's head (request line and headers) may take; hyper's default read
/// buffer cap, which is what bounds the head.
pub const MAX_HEAD_BYTES: usize = 8192 + 4096 * 100;

pin_project_lite::pin_project! {
    /// A connection's I/O, with hyper's own answers to unparseable requests given OpenAI error
    /// bodies.
    pub struct ErrorBodies<I> {
        #[pin]
        inner: I,
        metrics: ConnectionMetrics,
        // An answer rewritten and reported written to hyper, not yet all written to `inner`.
        pending: Vec<u8>,
        sent: usize,
    }
}

impl<I> ErrorBodies<I> {
    pub fn new(inner: I, metrics: ConnectionMetrics) -> Self {
        ErrorBodies { inner, metrics, pending: Vec::new(), sent: 0 }
    }
}

impl<I: AsyncWrite> ErrorBodies<I> {
    /// Writes what is left of a rewritten answer; ready once none is.
    fn poll_pending(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut this = self.project();
        while *this.sent < this.pending.len() {
            let n = ready!(this.inner.as_mut().poll_write(cx, &this.pending[*this.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *this.sent += n;
        }
        if !this.pending.is_empty() {
            this.pending.clear();
            *this.sent = 0;
        }
        Poll::Ready(Ok(()))
    }

    /// Takes `written` as hyper's answer to an unparseable request if it is one, and queues its
    /// rewrite in its place.
    fn intercept(self: Pin<&mut Self>, written: &[u8]) -> bool {
        let Some((status, rewritten)) = rewrite(written) else { return false };
        let this = self.project();
        this.metrics.protocol_error(status);
        *this.pending = rewritten;
        *this.sent = 0;
        true
    }
}

impl<I: AsyncRead> AsyncRead for ErrorBodies<I> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_read(cx, buf)
    }
}

impl<I: AsyncWrite> AsyncWrite for ErrorBodies<I> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        ready!(self.as_mut().poll_pending(cx))?;
        if might_be_error_head(buf) && self.as_mut().intercept(buf) {
            // Reported written; `poll_flush`, which hyper calls next, sends the rewrite.
            return Poll::Ready(Ok(buf.len()));
        }
        self.project().inner.poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        ready!(self.as_mut().poll_pending(cx))?;
        // hyper's answer is a head alone: it starts like one and ends the write with its blank
        // line. Anything else (the gateway's own 400 with its body) passes without a copy.
        let first = bufs.iter().find(|b| !b.is_empty());
        let last = bufs.iter().rev().find(|b| !b.is_empty());
        if first.is_some_and(|b| might_be_error_head(b)) && last.is_some_and(|b| b.ends_with(b"\r\n\r\n")) {
            let written: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
            if self.as_mut().intercept(&written) {
                return Poll::Ready(Ok(written.len()));
            }
        }
        self.project().inner.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.as_mut().poll_pending(cx))?;
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.as_mut().poll_pending(cx))?;
        self.project().inner.poll_shutdown(cx)
    }
}

/// The cheap test every write pays: could this be the start of hyper's answer?
fn might_be_error_head(buf: &[u8]) -> bool {
    [&b"HTTP/1.1 400 "[..], b"HTTP/1.1 414 ", b"HTTP/1.1 431 "].iter().any(|prefix| buf.starts_with(prefix))
}

/// hyper's answer to an unparseable request (a 400, 414 or 431 head with `content-length: 0`
/// and nothing after it) → its status and the same head with an OpenAI error body.
fn rewrite(written: &[u8]) -> Option<(u16, Vec<u8>)> {
    let head = written.strip_suffix(b"\r\n\r\n")?;
    let text = std::str::from_utf8(head).ok()?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next()?;
    let status: u16 = status_line.get(9..12)?.parse().ok()?;
    let (mut kept, mut empty_body) = (Vec::new(), false);
    for line in lines {
        let (name, value) = line.split_once(':')?;
        if name.eq_ignore_ascii_case("content-length") {
            empty_body = value.trim() == "0";
            if !empty_body {
                return None;
            }
        } else if name.eq_ignore_ascii_case("connection") || name.eq_ignore_ascii_case("content-type") {
            // Replaced below.
        } else {
            kept.push(line);
        }
    }
    if !empty_body {
        return None;
    }
    let body = error_body(status)?;
    let mut out = Vec::with_capacity(written.len() + body.len() + 96);
    out.extend_from_slice(status_line.as_bytes());
    out.extend_from_slice(b"\r\n");
    for line in kept {
        out.extend_from_slice(line.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    // hyper closes the connection after this answer; say so, so a client does not reuse it.
    out.extend_from_slice(b"content-type: application/json\r\nconnection: close\r\n");
    out.extend_from_slice(format!("content-length: {}\r\n\r\n", body.len()).as_bytes());
    out.extend_from_slice(&body);
    Some((status, out))
}

fn error_body(status: u16) -> Option<Vec<u8>> {
    let (message, code) = match status {
        400 => (
            "the request could not be parsed as HTTP/1.1: its request line, a header or its framing \
             (Content-Length, Transfer-Encoding) is malformed"
                .to_owned(),
            "malformed_request",
        ),
        414 => ("the request target (URI) is too long".to_owned(), "uri_too_long"),
        431 => (
            format!(
                "the request's header section is too large: at most {MAX_HEADER_FIELDS} header fields and \
                 {} KiB for the request line and headers together",
                MAX_HEAD_BYTES / 1024
            ),
            "request_header_fields_too_large",
        ),
        _ => return None,
    };
    Some(ErrorBody::new(message, "invalid_request_error", None, Some(code)).to_json())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body_of(rewritten: &[u8]) -> serde_json::Value {
        let at = rewritten.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        serde_json::from_slice(&rewritten[at..]).unwrap()
    }

    #[test]
    fn hypers_empty_answers_get_an_openai_body() {
        let written = b"HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\ncontent-length: 0\r\ndate: Sun, 06 Dec 2026 22:00:00 GMT\r\n\r\n";
        let (status, out) = rewrite(written).unwrap();
        assert_eq!(status, 431);
        let text = String::from_utf8_lossy(&out);
        assert!(text.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"), "{text}");
        assert!(text.contains("\r\ndate: Sun, 06 Dec 2026 22:00:00 GMT\r\n"), "{text}");
        assert_eq!(text.matches("connection: close").count(), 1, "{text}");
        let body = body_of(&out);
        let length = format!("content-length: {}\r\n", body.to_string().len());
        assert!(text.contains(&length), "{text}");
        assert_eq!(body["error"]["type"], "invalid_request_error");
        assert_eq!(body["error"]["code"], "request_header_fields_too_large");
        assert!(body["error"]["message"].as_str().unwrap().contains("100 header fields"));

        for (written, code) in [
            (&b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n"[..], "malformed_request"),
            (b"HTTP/1.1 414 URI Too Long\r\ncontent-length: 0\r\n\r\n", "uri_too_long"),
        ] {
            let (_, out) = rewrite(written).unwrap();
            assert_eq!(body_of(&out)["error"]["code"], code);
        }
    }

    #[test]
    fn answers_with_a_body_or_other_statuses_pass_untouched() {
        for written in [
            // The gateway's own 400: it has a body.
            &b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"[..],
            // A head whose body follows in another write.
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 12\r\n\r\n",
            b"HTTP/1.1 400 Bad Request\r\ntransfer-encoding: chunked\r\n\r\n",
            b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n",
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\nHTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n",
        ] {
            assert!(rewrite(written).is_none(), "{}", String::from_utf8_lossy(written));
        }
    }
}
