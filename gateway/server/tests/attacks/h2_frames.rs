//! Just enough HTTP/2 to attack with (RFC 9113 frames, RFC 7541 literal header fields): a
//! client library would refuse to send what the attacks need, or pace it.

use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedReadHalf;

pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

pub const DATA: u8 = 0x0;
pub const HEADERS: u8 = 0x1;
pub const RST_STREAM: u8 = 0x3;
pub const SETTINGS: u8 = 0x4;
pub const GOAWAY: u8 = 0x7;
pub const CONTINUATION: u8 = 0x9;

pub const END_STREAM: u8 = 0x1;
pub const ACK: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;

/// `RST_STREAM` and `GOAWAY` error codes.
pub const CANCEL: u32 = 0x8;
pub const ENHANCE_YOUR_CALM: u32 = 0xb;

/// The largest frame payload a peer must accept without asking (`SETTINGS_MAX_FRAME_SIZE`).
pub const MAX_FRAME: usize = 16_384;

/// Appends one frame: a 9-byte header (24-bit length, type, flags, 31-bit stream id), then the
/// payload.
pub fn frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    let len = u32::try_from(payload.len()).unwrap();
    assert!(len < 1 << 24, "frame payload too long");
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(payload);
}

/// Appends a header field as a literal without indexing with a new name and no Huffman coding
/// (RFC 7541 §6.2.2): it leaves the dynamic table alone, so a block can be sent again as is.
pub fn literal(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.push(0x00);
    integer7(out, name.len());
    out.extend_from_slice(name.as_bytes());
    integer7(out, value.len());
    out.extend_from_slice(value);
}

/// The header block of a chat completion request with `key`, in literals only.
pub fn chat_headers(authority: SocketAddr, key: &str) -> Vec<u8> {
    let mut block = Vec::new();
    for (name, value) in [
        (":method", "POST".to_owned()),
        (":scheme", "http".to_owned()),
        (":path", "/v1/chat/completions".to_owned()),
        (":authority", authority.to_string()),
        ("authorization", format!("Bearer {key}")),
        ("content-type", "application/json".to_owned()),
    ] {
        literal(&mut block, name, value.as_bytes());
    }
    block
}

/// An HPACK integer with a 7-bit prefix (RFC 7541 §5.1), the Huffman bit clear.
fn integer7(out: &mut Vec<u8>, n: usize) {
    if n < 127 {
        out.push(u8::try_from(n).unwrap());
        return;
    }
    out.push(127);
    let mut rest = n - 127;
    while rest >= 128 {
        out.push(u8::try_from(rest % 128).unwrap() | 0x80);
        rest /= 128;
    }
    out.push(u8::try_from(rest).unwrap());
}

/// Reads one frame: (type, flags, stream, payload).
pub async fn read_frame(r: &mut (impl AsyncRead + Unpin)) -> io::Result<(u8, u8, u32, Vec<u8>)> {
    let mut head = [0u8; 9];
    r.read_exact(&mut head).await?;
    let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
    let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload).await?;
    Ok((head[3], head[4], stream, payload))
}

/// Opens an h2c connection with prior knowledge the way a client does: preface, empty
/// SETTINGS, and an ACK for the server's SETTINGS once they arrive.
pub async fn connect(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut hello = PREFACE.to_vec();
    frame(&mut hello, SETTINGS, 0, 0, &[]);
    stream.write_all(&hello).await.unwrap();
    loop {
        let (kind, flags, _, _) = read_frame(&mut stream).await.unwrap();
        if kind == SETTINGS && flags & ACK == 0 {
            break;
        }
    }
    let mut ack = Vec::new();
    frame(&mut ack, SETTINGS, ACK, 0, &[]);
    stream.write_all(&ack).await.unwrap();
    stream
}

/// Reads until the response HEADERS of `stream` and returns their header block (the frames
/// before it are dropped).
pub async fn response_headers(connection: &mut TcpStream, stream: u32) -> Vec<u8> {
    loop {
        let (kind, _, id, payload) = read_frame(connection).await.unwrap();
        if kind == HEADERS && id == stream {
            return payload;
        }
    }
}

/// How the server ended a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// It sent `GOAWAY` with this error code.
    GoAway(u32),
    /// It closed (or reset) the connection without one.
    Closed,
}

/// Reads (and drops) what the server sends until it says `GOAWAY` or closes the connection.
pub async fn until_server_ends(mut read: OwnedReadHalf) -> Ending {
    loop {
        match read_frame(&mut read).await {
            Ok((GOAWAY, _, _, payload)) => {
                return Ending::GoAway(u32::from_be_bytes(payload[4..8].try_into().unwrap()));
            }
            Ok(_) => {}
            Err(_) => return Ending::Closed,
        }
    }
}
