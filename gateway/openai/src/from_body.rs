//! Reading a request from a body held as `Bytes`, which the gateway keeps while the request
//! lives: the bulky members (a chat's messages) are kept as slices of it instead of copies.
//! The `Deserialize` impls read the same requests from any other input, copying those members.

use std::marker::PhantomData;

use bytes::Bytes;
use serde::de::DeserializeSeed;

/// Why a body is not a request.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// JSON is UTF-8 (RFC 8259).
    #[error("the request body is not valid UTF-8 (at byte {valid_up_to})")]
    NotUtf8 { valid_up_to: usize },
    /// Not JSON, or not a request of the kind: serde's message, naming the member.
    #[error(transparent)]
    Invalid(#[from] serde_json::Error),
}

/// What a request is read from.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Source<'b> {
    /// The body the deserializer reads: what is kept is sliced from it.
    Body(&'b Bytes),
    /// Anything else: what is kept is copied.
    Other,
}

/// Reads a `T` from `source` (the `DeserializeSeed` of each request type and kept member).
pub(crate) struct In<'b, T> {
    pub(crate) source: Source<'b>,
    read: PhantomData<fn() -> T>,
}

impl<'b, T> In<'b, T> {
    pub(crate) fn new(source: Source<'b>) -> Self {
        In { source, read: PhantomData }
    }
}

/// Reads a `T` from `body`. The body is checked for UTF-8 once, so that the parser need not
/// check each string it meets.
pub(crate) fn read<T>(body: &Bytes) -> Result<T, BodyError>
where
    for<'b, 'de> In<'b, T>: DeserializeSeed<'de, Value = T>,
{
    let text = std::str::from_utf8(body).map_err(|e| BodyError::NotUtf8 { valid_up_to: e.valid_up_to() })?;
    let mut input = serde_json::Deserializer::from_str(text);
    let request = In::<T>::new(Source::Body(body)).deserialize(&mut input)?;
    input.end()?;
    Ok(request)
}
