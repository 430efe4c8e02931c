//! Reads the request body, refusing bodies over the configured limit before buffering them,
//! bodies the tenant's share of the body budget or the budget itself has no room for (see
//! [`crate::body_budget`]), and clients that take longer than the body timeout to send it.

use std::pin::{Pin, pin};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http::HeaderMap;
use http::header::CONTENT_LENGTH;
use http_body::Body;
use http_body_util::BodyExt;

use crate::body_budget::{BodyBudget, BodyReservation, Refusal};
use crate::error::GatewayError;

/// After refusing a body as too large, up to this much more of it is read and discarded, for at
/// most [`DRAIN_TIME`], before the 413 is sent. hyper closes a connection whose request body was
/// left unread, and closing a socket with unread bytes makes the kernel send a reset, which can
/// destroy the 413 before the client has read it: the client sees "connection reset" instead of
/// the error. Bodies beyond the bound are not worth reading; their clients may still see that.
const DRAIN_MAX_BYTES: u64 = 1024 * 1024;
const DRAIN_TIME: Duration = Duration::from_secs(1);

/// What a body may take: its own limit, the shared budget it is reserved against (under its
/// tenant's share), and how long its client may take to send it.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits<'a> {
    pub max_bytes: usize,
    pub budget: &'a BodyBudget,
    pub tenant: &'a Arc<str>,
    pub timeout: Duration,
}

fn refused(refusal: Refusal) -> GatewayError {
    match refusal {
        Refusal::TenantShare { share_bytes } => GatewayError::TenantBodyShareExhausted { share_bytes },
        Refusal::Budget { budget_bytes } => GatewayError::BodyBudgetExhausted { budget_bytes },
    }
}

/// The body, with the budget reservation that holds its bytes until the request ends.
pub async fn run<B>(
    headers: &HeaderMap,
    body: B,
    limits: BodyLimits<'_>,
) -> Result<(Bytes, BodyReservation), GatewayError>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let limit = limits.max_bytes;
    let mut body = pin!(body);
    let mut reservation = limits.budget.reservation(limits.tenant);
    let declared = headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if let Some(declared) = declared.filter(|&n| n > limit as u64) {
        if declared <= DRAIN_MAX_BYTES {
            drain(body.as_mut()).await;
        }
        return Err(GatewayError::BodyTooLarge { limit });
    }
    // A declared length is reserved before a byte is read; `declared <= limit` here.
    if let Some(declared) = declared
        && let Err(refusal) = reservation.grow(usize::try_from(declared).unwrap_or(usize::MAX))
    {
        // Read past, within the drain's bounds, so the client reads the 503 (see DRAIN_MAX_BYTES).
        if declared <= DRAIN_MAX_BYTES {
            drain(body.as_mut()).await;
        }
        return Err(refused(refusal));
    }
    // `declared <= limit` when set: a buffer sized for it is within the body limit.
    let expected = declared.and_then(|n| usize::try_from(n).ok()).unwrap_or(0);
    let read = async {
        let mut gathered = Gathered::Empty;
        let mut total = 0usize;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| {
                let e: Box<dyn std::error::Error + Send + Sync> = e.into();
                GatewayError::BodyRead(e.to_string())
            })?;
            let Ok(data) = frame.into_data() else { continue };
            total += data.len();
            if total > limit {
                return Err(GatewayError::BodyTooLarge { limit });
            }
            // A body without a declared length (or longer than declared) is reserved as it
            // arrives, before it is kept.
            if total > reservation.bytes() {
                reservation.grow(total - reservation.bytes()).map_err(refused)?;
            }
            gathered.push(data, expected);
        }
        Ok(gathered.into_bytes())
    };
    match tokio::time::timeout(limits.timeout, read).await {
        Err(_) => Err(GatewayError::BodyTimeout { after: limits.timeout }),
        Ok(Ok(bytes)) => Ok((bytes, reservation)),
        Ok(Err(
            e @ (GatewayError::BodyTooLarge { .. }
            | GatewayError::BodyBudgetExhausted { .. }
            | GatewayError::TenantBodyShareExhausted { .. }),
        )) => {
            drain(body.as_mut()).await;
            Err(e)
        }
        Ok(Err(e)) => Err(e),
    }
}

/// A body's bytes as they arrive. A body in one frame is kept as it is (no copy); from the
/// second frame on, frames are copied into one buffer as they arrive and dropped, so a body is
/// held once, not once in frames and again joined.
enum Gathered {
    Empty,
    One(Bytes),
    Many(BytesMut),
}

impl Gathered {
    /// Adds a frame; `expected` is the declared length (0 when unknown), to size the buffer once.
    fn push(&mut self, data: Bytes, expected: usize) {
        *self = match std::mem::replace(self, Gathered::Empty) {
            Gathered::Empty => Gathered::One(data),
            Gathered::One(first) => {
                let mut joined = BytesMut::with_capacity(expected.max(first.len() + data.len()));
                joined.extend_from_slice(&first);
                joined.extend_from_slice(&data);
                Gathered::Many(joined)
            }
            Gathered::Many(mut joined) => {
                joined.extend_from_slice(&data);
                Gathered::Many(joined)
            }
        };
    }

    fn into_bytes(self) -> Bytes {
        match self {
            Gathered::Empty => Bytes::new(),
            Gathered::One(body) => body,
            Gathered::Many(joined) => joined.freeze(),
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_frame_is_kept_as_it_is_and_several_are_joined_in_order() {
        let single = Bytes::from_static(b"{\"model\":\"m\"}");
        let mut gathered = Gathered::Empty;
        gathered.push(single.clone(), single.len());
        let body = gathered.into_bytes();
        assert_eq!(body.as_ptr(), single.as_ptr(), "no copy of a body in one frame");

        let mut gathered = Gathered::Empty;
        for part in ["{\"mo", "del\":", "\"m\"}"] {
            gathered.push(Bytes::from_static(part.as_bytes()), 13);
        }
        let Gathered::Many(ref joined) = gathered else { panic!("several frames are joined") };
        assert_eq!(joined.capacity(), 13, "sized once for the declared length");
        assert_eq!(gathered.into_bytes(), single);
        assert!(Gathered::Empty.into_bytes().is_empty());
    }
}
