//! The request parser: any bytes a client sends as a body. Beyond not panicking, what the
//! gateway forwards must mean what it parsed: a parsed request, serialised and parsed again,
//! is the same request (unknown members included, which the gateway passes to the worker).

#![no_main]

use libfuzzer_sys::fuzz_target;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sluice_openai::{ChatCompletionRequest, CompletionRequest, EmbeddingRequest};

fn round_trips<T: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug>(text: &str) {
    let Ok(parsed) = serde_json::from_str::<T>(text) else { return };
    let forwarded = serde_json::to_vec(&parsed).expect("a parsed request serialises");
    let again: T = serde_json::from_slice(&forwarded).expect("what the gateway forwards parses");
    assert_eq!(parsed, again);
}

fuzz_target!(|data: &[u8]| {
    // The parse stage refuses a body that is not UTF-8 before parsing it.
    let Ok(text) = std::str::from_utf8(data) else { return };
    round_trips::<ChatCompletionRequest>(text);
    round_trips::<CompletionRequest>(text);
    round_trips::<EmbeddingRequest>(text);
});
