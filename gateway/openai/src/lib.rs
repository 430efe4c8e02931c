//! The OpenAI-compatible wire format as Sluice speaks it.
//!
//! Requests are parsed into typed structs that keep every field they do not name in an `extra`
//! map (and a chat's messages as their text), so a request passes through the gateway untouched
//! apart from what the gateway means to change. Responses are typed for the simulator, which must produce them; the gateway itself
//! only probes responses for usage and token events (see [`probe`]).

#![forbid(unsafe_code)]

pub mod agents;
pub mod error;
mod from_body;
pub mod messages;
pub mod probe;
pub mod request;
mod request_parse;
pub mod response;
pub mod sse;

pub use agents::{AgentRequest, Dialect};
pub use error::{ErrorBody, ErrorDetail};
pub use from_body::BodyError;
pub use messages::Messages;
pub use request::{
    ChatCompletionRequest, ChatMessage, CompletionRequest, ContentPart, EmbeddingInput, EmbeddingRequest,
    MessageContent, Prompt, StreamOptions,
};
pub use response::{PromptTokensDetails, Usage};

/// Reproducible draws for tests that assemble many inputs: `next(n)` is in `0..n`.
#[cfg(test)]
fn draws(seed: u64) -> impl FnMut(usize) -> usize {
    let mut state = seed;
    move |n| {
        // xorshift64: enough to vary inputs, and the same on every run.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n as u64) as usize
    }
}
