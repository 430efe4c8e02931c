//! The SSE parser over a worker's stream. The first bytes choose where the stream is split into
//! reads; whatever the split, the events (data and name) are the same as when the whole stream
//! arrives in one read, and the raw bytes of the events put together are the stream.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_openai::sse::{SseError, SseEvent, SseParser};

const LIMIT: usize = 1024;

fn parse<'a>(reads: impl Iterator<Item = &'a [u8]>) -> (Vec<SseEvent>, Option<SseError>) {
    let mut parser = SseParser::new(LIMIT);
    let mut events = Vec::new();
    for read in reads {
        parser.push(read);
        loop {
            match parser.next_event() {
                Ok(Some(event)) => events.push(event),
                Ok(None) => break,
                Err(e) => return (events, Some(e)),
            }
        }
    }
    events.extend(parser.finish());
    (events, None)
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, stream)) = data.split_first() else { return };
    let (whole, whole_error) = parse(std::iter::once(stream));
    // Reads of 1 to 16 bytes, varying with the seed.
    let mut reads = Vec::new();
    let mut rest = stream;
    let mut step = seed;
    while !rest.is_empty() {
        let n = usize::from(step % 16 + 1).min(rest.len());
        let (read, tail) = rest.split_at(n);
        reads.push(read);
        rest = tail;
        step = step.wrapping_mul(31).wrapping_add(7);
    }
    let (split, split_error) = parse(reads.into_iter());
    // Smaller reads may find an oversize event sooner (the limit is on what an incomplete event
    // holds buffered), never later; until then they hand out the same events.
    if whole_error.is_some() {
        assert!(split_error.is_some(), "an oversize event went unnoticed in small reads");
    }
    let fields = |events: &[SseEvent]| events.iter().map(|e| (e.data.clone(), e.event.clone())).collect::<Vec<_>>();
    let (whole_fields, split_fields) = (fields(&whole), fields(&split));
    if split_error.is_some() {
        assert!(whole_fields.starts_with(&split_fields));
    } else {
        assert_eq!(whole_fields, split_fields);
        // The relay forwards the raw bytes: whatever the reads, it forwards the same bytes. A
        // blank line's CRLF split between two reads ends the event at the CR (an event is not
        // held back for a byte that may come with the next token), and the LF travels at the
        // head of the next event: the bytes are the same, the cut is not. At the end of the
        // stream such an LF is left over with no event to carry it; whitespace without an
        // event is never forwarded, so only whitespace may be missing.
        let raw = |events: &[SseEvent]| events.iter().flat_map(|e| e.raw.to_vec()).collect::<Vec<u8>>();
        let (whole_raw, split_raw) = (raw(&whole), raw(&split));
        assert!(stream.starts_with(&whole_raw), "the events' raw bytes are the stream");
        assert!(whole_raw.starts_with(&split_raw));
        assert!(whole_raw[split_raw.len()..].iter().all(u8::is_ascii_whitespace), "forwarded bytes differ");
    }
});
