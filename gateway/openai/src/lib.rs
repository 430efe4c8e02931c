//! The OpenAI-compatible wire format as Sluice speaks it.
//!
//! Requests are parsed into typed structs that keep every field they do not name in an `extra`
//! map, so a request passes through the gateway untouched apart from what the gateway means to
//! change. Responses are typed for the simulator, which must produce them; the gateway itself
//! only probes responses for usage and token events (see [`probe`]).

pub mod error;
pub mod probe;
pub mod request;
mod request_parse;
pub mod response;
pub mod sse;

pub use error::{ErrorBody, ErrorDetail};
pub use request::{
    ChatCompletionRequest, ChatMessage, CompletionRequest, ContentPart, EmbeddingInput, EmbeddingRequest,
    MessageContent, Prompt, StreamOptions,
};
pub use response::{PromptTokensDetails, Usage};
