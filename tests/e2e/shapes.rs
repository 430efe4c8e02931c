//! What an OpenAI client expects a chat completion to look like, streamed or not.

use serde_json::{Value, json};
use sluice_e2e::MODEL;

pub fn chat_request(stream: bool, max_tokens: u32) -> Value {
    json!({
        "model": MODEL,
        "stream": stream,
        "max_tokens": max_tokens,
        "messages": [
            {"role": "system", "content": "You are a terse assistant."},
            {"role": "user", "content": "Say hello to the end-to-end tests."},
        ],
    })
}

/// Checks a non-streamed `chat.completion` that stopped at `max_tokens`.
pub fn assert_completion(body: &Value, max_tokens: u64) {
    assert_eq!(body["object"], "chat.completion", "{body}");
    assert_eq!(body["model"], MODEL, "{body}");
    assert!(body["id"].as_str().is_some_and(|id| !id.is_empty()), "{body}");
    let choice = &body["choices"][0];
    assert_eq!(choice["index"], 0, "{body}");
    assert_eq!(choice["message"]["role"], "assistant", "{body}");
    assert!(choice["message"]["content"].as_str().is_some_and(|c| !c.is_empty()), "{body}");
    assert_eq!(choice["finish_reason"], "length", "{body}");
    let usage = &body["usage"];
    assert_eq!(usage["completion_tokens"], max_tokens, "{body}");
    let prompt = usage["prompt_tokens"].as_u64().unwrap_or(0);
    assert!(prompt > 0, "{body}");
    assert_eq!(usage["total_tokens"], prompt + max_tokens, "{body}");
}

/// What a checked stream contained.
pub struct StreamSummary {
    pub text: String,
    pub content_chunks: usize,
    pub usage: Option<Value>,
}

/// Checks the `data` payloads of a streamed chat completion, `[DONE]` included: every chunk is
/// a `chat.completion.chunk` of one id, the first carries the assistant role, exactly one
/// carries a finish reason, and a usage chunk (if any) has no choices and comes last.
pub fn assert_stream(events: &[String]) -> StreamSummary {
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"), "stream must end with [DONE]: {events:?}");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap_or_else(|err| panic!("chunk is not JSON ({err}): {e}")))
        .collect();
    assert!(!chunks.is_empty(), "no chunks before [DONE]");
    let id = chunks[0]["id"].clone();
    let mut text = String::new();
    let mut content_chunks = 0;
    let mut finishes = 0;
    let mut usage = None;
    for (i, chunk) in chunks.iter().enumerate() {
        assert_eq!(chunk["object"], "chat.completion.chunk", "{chunk}");
        assert_eq!(chunk["model"], MODEL, "{chunk}");
        assert_eq!(chunk["id"], id, "one id per stream: {chunk}");
        let choices = chunk["choices"].as_array().unwrap_or_else(|| panic!("no choices array: {chunk}"));
        if choices.is_empty() {
            assert!(chunk["usage"].is_object(), "a chunk without choices carries usage: {chunk}");
            assert_eq!(i, chunks.len() - 1, "the usage chunk comes last");
            usage = Some(chunk["usage"].clone());
            continue;
        }
        let choice = &choices[0];
        if i == 0 {
            assert_eq!(choice["delta"]["role"], "assistant", "first chunk: {chunk}");
        }
        if let Some(piece) = choice["delta"]["content"].as_str() {
            text.push_str(piece);
            content_chunks += 1;
        }
        if !choice["finish_reason"].is_null() {
            finishes += 1;
        }
    }
    assert_eq!(finishes, 1, "exactly one chunk carries finish_reason: {events:?}");
    assert!(!text.is_empty(), "the stream carried no text");
    StreamSummary { text, content_chunks, usage }
}
