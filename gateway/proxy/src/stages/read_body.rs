//! Reads the request body, refusing bodies over the configured limit before buffering them and
//! clients that take longer than the body timeout to send it.

use std::pin::{Pin, pin};
use std::time::Duration;

use bytes::{Buf, Bytes};
use http::HeaderMap;
use http::header::CONTENT_LENGTH;
use http_body::Body;
use http_body_util::{BodyExt, LengthLimitError, Limited};

use crate::error::GatewayError;

/// After refusing a body as too large, up to this much more of it is read and discarded, for at
/// most [`DRAIN_TIME`], before the 413 is sent. hyper closes a connection whose request body was
/// left unread, and closing a socket with unread bytes makes the kernel send a reset, which can
/// destroy the 413 before the client has read it: the client sees "connection reset" instead of
/// the error. Bodies beyond the bound are not worth reading; their clients may still see that.
const DRAIN_MAX_BYTES: u64 = 1024 * 1024;
const DRAIN_TIME: Duration = Duration::from_secs(1);

pub async fn run<B>(headers: &HeaderMap, body: B, limit: usize, timeout: Duration) -> Result<Bytes, GatewayError>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut body = pin!(body);
    let declared = headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if let Some(declared) = declared.filter(|&n| n > limit as u64) {
        if declared <= DRAIN_MAX_BYTES {
            drain(body.as_mut()).await;
        }
        return Err(GatewayError::BodyTooLarge { limit });
    }
    let collected = tokio::time::timeout(timeout, Limited::new(body.as_mut(), limit).collect())
        .await
        .map_err(|_| GatewayError::BodyTimeout { after: timeout })?;
    match collected {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            drain(body.as_mut()).await;
            Err(GatewayError::BodyTooLarge { limit })
        }
        Err(e) => Err(GatewayError::BodyRead(e.to_string())),
    }
}

/// Reads and discards the rest of a refused body, within [`DRAIN_MAX_BYTES`] and [`DRAIN_TIME`].
async fn drain<B: Body>(mut body: Pin<&mut B>) {
    let mut left = DRAIN_MAX_BYTES;
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        while let Some(Ok(frame)) = body.frame().await {
            let n = frame.data_ref().map_or(0, |d| d.remaining() as u64);
            match left.checked_sub(n) {
                Some(rest) => left = rest,
                None => break,
            }
        }
    })
    .await;
}
