//! The two APIs agents speak beside chat completions: OpenAI's Responses API
//! (`POST /v1/responses`) and Anthropic's Messages API (`POST /v1/messages`).
//!
//! The gateway forwards their bodies untouched, so it reads only what it needs from them
//! ([`AgentRequest`]): the model, whether the answer is streamed, the output-token limit, how
//! many input items or messages there are, whether tools are declared, and whether the request
//! leans on state a worker keeps (`previous_response_id`, `store`). Everything else is skipped
//! by the parser without being built. Their answers are measured by [`events`] (a stream's
//! events) and [`usage`] (a whole body's usage); [`response_id`] reads a Responses answer's id
//! (which worker holds it is the gateway's business); [`anthropic_error`] is the Messages API's
//! error shape. [`translate`] carries the Messages API to workers that speak only chat completions.

pub mod anthropic_error;
pub mod events;
mod request;
pub mod response_id;
pub mod translate;
pub mod usage;

pub use request::AgentRequest;

/// Which of the two APIs a request or an answer belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// OpenAI's Responses API.
    Responses,
    /// Anthropic's Messages API.
    Messages,
}
