//! The reader of a worker's HTTP/1.1 responses: the head, then a chunked body decoded from
//! reads split anywhere. Whatever the split, the decoded body and the outcome are those of one
//! read; a head's length never runs past the bytes it was read from.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use sluice_wire::{ChunkedDecoder, Decoded, Framing, parse_response};

/// The body of a chunked response read in reads of `sizes` bytes (cycled): the data, and whether
/// it ended cleanly (`Some(true)`), failed (`Some(false)`) or wanted more (`None`).
fn decode(body: &[u8], sizes: &[usize]) -> (Vec<u8>, Option<bool>) {
    let mut decoder = ChunkedDecoder::default();
    let mut buf = BytesMut::new();
    let mut data = Vec::new();
    let mut rest = body;
    let mut i = 0;
    loop {
        match decoder.decode(&mut buf) {
            Ok(Decoded::Data(piece)) => data.extend_from_slice(&piece),
            Ok(Decoded::End) => return (data, Some(true)),
            Err(_) => return (data, Some(false)),
            Ok(Decoded::NeedMore) if rest.is_empty() => return (data, None),
            Ok(Decoded::NeedMore) => {
                let n = sizes[i % sizes.len()].clamp(1, rest.len());
                buf.extend_from_slice(&rest[..n]);
                rest = &rest[n..];
                i += 1;
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, input)) = data.split_first() else { return };
    let Ok(Some((len, head))) = parse_response(input) else { return };
    assert!(len <= input.len());
    // A longer buffer never changes how the head reads.
    let mut longer = input.to_vec();
    longer.extend_from_slice(b"\r\n0\r\n\r\n");
    assert_eq!(parse_response(&longer).ok().flatten(), Some((len, head.clone())));
    if head.framing != Framing::Chunked {
        return;
    }
    let body = &input[len..];
    let whole = decode(body, &[body.len().max(1)]);
    let sizes = [usize::from(seed % 7) + 1, usize::from(seed / 7 % 5) + 1, 1];
    let split = decode(body, &sizes);
    // Data is handed out as it arrives, so a body that fails or is cut short may have handed
    // out more in small reads before the failure was seen; a clean end is the same either way.
    match (whole.1, split.1) {
        (Some(true), _) | (_, Some(true)) => assert_eq!(whole, split),
        _ => assert_eq!(whole.1, split.1),
    }
});
