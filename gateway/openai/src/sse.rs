//! An incremental server-sent-events parser that keeps each event's raw bytes.
//!
//! The relay forwards events byte-for-byte as the upstream framed them, so the parser hands out
//! the raw slice of every complete event alongside its decoded `data`. Bytes are pushed as they
//! arrive; an event split across reads is held until its blank line arrives. Line endings may be
//! LF, CRLF or CR (the SSE specification allows all three), including a CRLF split across reads.

use bytes::{Bytes, BytesMut};

/// One complete event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The event exactly as received, including its terminating blank line.
    pub raw: Bytes,
    /// The `data:` lines joined with `\n`, or `None` for an event without data (comments only).
    pub data: Option<Bytes>,
    /// The `event:` field, when present.
    pub event: Option<String>,
}

impl SseEvent {
    /// OpenAI's end-of-stream sentinel, `data: [DONE]`.
    pub fn is_done(&self) -> bool {
        self.data.as_deref() == Some(b"[DONE]")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    #[error("server-sent event exceeds {limit} bytes")]
    EventTooLarge { limit: usize },
}

/// Incremental parser; see the module docs.
#[derive(Debug)]
pub struct SseParser {
    buf: BytesMut,
    /// Where unscanned bytes start within `buf`.
    scanned: usize,
    /// The last consumed line ended with `\r` at the end of the buffer: a `\n` arriving next
    /// belongs to that line ending, not a new blank line.
    pending_cr: bool,
    data: Option<Vec<u8>>,
    event: Option<String>,
    max_event_bytes: usize,
}

impl SseParser {
    pub fn new(max_event_bytes: usize) -> Self {
        Self { buf: BytesMut::new(), scanned: 0, pending_cr: false, data: None, event: None, max_event_bytes }
    }

    /// Appends bytes read from the stream.
    pub fn push(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
    }

    /// Bytes held for an incomplete event.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next complete event, if the pushed bytes contain one.
    pub fn next_event(&mut self) -> Result<Option<SseEvent>, SseError> {
        loop {
            if self.pending_cr && self.scanned < self.buf.len() {
                self.pending_cr = false;
                if self.buf[self.scanned] == b'\n' {
                    self.scanned += 1;
                    continue;
                }
            }
            let rest = &self.buf[self.scanned..];
            let Some(eol) = memchr::memchr2(b'\n', b'\r', rest) else {
                if self.buf.len() > self.max_event_bytes {
                    return Err(SseError::EventTooLarge { limit: self.max_event_bytes });
                }
                return Ok(None);
            };
            let line_start = self.scanned;
            let line_end = line_start + eol;
            let mut next = line_end + 1;
            if self.buf[line_end] == b'\r' {
                match self.buf.get(next) {
                    Some(b'\n') => next += 1,
                    Some(_) => {}
                    None => self.pending_cr = true,
                }
            }
            self.scanned = next;
            if line_end == line_start {
                let raw = self.buf.split_to(next).freeze();
                self.scanned = 0;
                let data = self.data.take().map(Bytes::from);
                let event = self.event.take();
                return Ok(Some(SseEvent { raw, data, event }));
            }
            self.field(line_start, line_end);
        }
    }

    /// At end of stream: an event whose blank line never came (some servers omit the last one).
    pub fn finish(&mut self) -> Option<SseEvent> {
        if self.buf.is_empty() {
            return None;
        }
        // A trailing partial line is a field line too.
        if self.scanned < self.buf.len() {
            let (start, end) = (self.scanned, self.buf.len());
            self.field(start, end);
        }
        let raw = self.buf.split().freeze();
        self.scanned = 0;
        let data = self.data.take().map(Bytes::from);
        let event = self.event.take();
        if data.is_none() && event.is_none() && raw.iter().all(|b| b.is_ascii_whitespace()) {
            return None;
        }
        Some(SseEvent { raw, data, event })
    }

    fn field(&mut self, start: usize, end: usize) {
        let line = &self.buf[start..end];
        if line.first() == Some(&b':') {
            return; // comment, e.g. a keep-alive `: ping`
        }
        let (name, value) = match line.iter().position(|&b| b == b':') {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        match name {
            b"data" => match &mut self.data {
                Some(d) => {
                    d.push(b'\n');
                    d.extend_from_slice(value);
                }
                None => self.data = Some(value.to_vec()),
            },
            b"event" => self.event = Some(String::from_utf8_lossy(value).into_owned()),
            _ => {} // id, retry and unknown fields are forwarded in `raw` but not interpreted
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(p: &mut SseParser) -> Vec<SseEvent> {
        let mut out = Vec::new();
        while let Some(e) = p.next_event().unwrap() {
            out.push(e);
        }
        out
    }

    fn data(e: &SseEvent) -> &str {
        std::str::from_utf8(e.data.as_deref().unwrap()).unwrap()
    }

    #[test]
    fn events_split_across_reads_at_every_byte() {
        let stream = b"data: {\"a\":1}\n\n: keep-alive\n\ndata: line1\ndata: line2\n\ndata: [DONE]\n\n";
        for split in 0..stream.len() {
            let mut p = SseParser::new(1 << 20);
            p.push(&stream[..split]);
            let mut events = all(&mut p);
            p.push(&stream[split..]);
            events.extend(all(&mut p));
            assert_eq!(events.len(), 4, "split at {split}");
            assert_eq!(data(&events[0]), "{\"a\":1}");
            assert!(events[1].data.is_none(), "comment-only event has no data");
            assert_eq!(data(&events[2]), "line1\nline2");
            assert!(events[3].is_done());
            let raw: Vec<u8> = events.iter().flat_map(|e| e.raw.iter().copied()).collect();
            assert_eq!(raw, stream, "raw bytes are preserved exactly");
        }
    }

    #[test]
    fn crlf_and_cr_line_endings() {
        for stream in [&b"data: x\r\n\r\ndata: y\r\n\r\n"[..], b"data: x\r\rdata: y\r\r", b"data: x\n\r\ndata: y\r\n\n"]
        {
            for split in 0..stream.len() {
                let mut p = SseParser::new(1 << 20);
                p.push(&stream[..split]);
                let mut events = all(&mut p);
                p.push(&stream[split..]);
                events.extend(all(&mut p));
                let datas: Vec<&str> = events.iter().filter(|e| e.data.is_some()).map(data).collect();
                assert_eq!(datas, ["x", "y"], "stream {:?} split at {split}", String::from_utf8_lossy(stream));
            }
        }
    }

    #[test]
    fn a_blank_lines_crlf_split_across_reads_ends_the_event_at_the_cr() {
        // Found by fuzz/sse_stream. An event is not held back for an LF that may come only with
        // the next token: it ends at the CR, and the LF travels at the head of the next event,
        // so the bytes forwarded are the stream's, in order. At the end of the stream the LF
        // has no event to carry it and is not forwarded (a CR alone ends a line in SSE).
        let stream = b"data: x\r\n\r\ndata: y\r\n\r\n";
        let mut p = SseParser::new(1 << 20);
        p.push(&stream[..10]);
        let mut events = all(&mut p);
        assert_eq!(&events[0].raw[..], b"data: x\r\n\r");
        p.push(&stream[10..]);
        events.extend(all(&mut p));
        assert_eq!(events.iter().map(data).collect::<Vec<_>>(), ["x", "y"]);
        let raw: Vec<u8> = events.iter().flat_map(|e| e.raw.iter().copied()).collect();
        assert_eq!(raw, stream);

        let mut p = SseParser::new(1 << 20);
        p.push(&stream[..10]);
        assert_eq!(all(&mut p).len(), 1);
        p.push(b"\n");
        assert!(all(&mut p).is_empty());
        assert_eq!(p.finish(), None, "a lone LF left at the end is no event");
    }

    #[test]
    fn field_without_space_and_event_name() {
        let mut p = SseParser::new(1024);
        p.push(b"event: error\ndata:{\"e\":1}\nid: 7\n\n");
        let e = p.next_event().unwrap().unwrap();
        assert_eq!(e.event.as_deref(), Some("error"));
        assert_eq!(data(&e), "{\"e\":1}");
    }

    #[test]
    fn finish_returns_unterminated_last_event() {
        let mut p = SseParser::new(1024);
        p.push(b"data: a\n\ndata: b");
        assert_eq!(data(&p.next_event().unwrap().unwrap()), "a");
        assert!(p.next_event().unwrap().is_none());
        assert_eq!(data(&p.finish().unwrap()), "b");
        assert!(p.finish().is_none());
    }

    #[test]
    fn oversized_event_is_an_error() {
        let mut p = SseParser::new(8);
        p.push(b"data: 0123456789");
        assert_eq!(p.next_event(), Err(SseError::EventTooLarge { limit: 8 }));
    }
}
