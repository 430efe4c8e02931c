//! Streaming through the gateway: events arrive as they are generated, in order, end with
//! `[DONE]`, and carry the same text as a whole answer.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests fail loudly")]

use std::time::Duration;

use serde_json::json;
use sluice_sim::{Faults, OutputLength, SimConfig};
use sluice_test_support::{GatewayOptions, TestGateway, chat_body, concat_content};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_arrive_incrementally_in_order_and_end_with_done() {
    let gw = TestGateway::start(1, GatewayOptions::default()).await;
    // 12 tokens, 60 ms apart: the stream lasts at least 0.6 s.
    gw.sims[0].set_faults(Faults { slow_token: Duration::from_millis(60), ..Faults::default() });
    let mut stream = gw.chat_stream(&chat_body("tell me a story", json!({"stream": true, "max_tokens": 12}))).await;

    let first = stream.next().await.expect("a first event");
    let first_json = first.json().expect("first event is a JSON chunk");
    assert_eq!(first_json["object"], "chat.completion.chunk");
    assert_eq!(first_json["choices"][0]["delta"]["role"], "assistant", "first chunk opens the assistant turn");
    let mut events = vec![first];
    events.extend(stream.rest().await);
    assert!(!stream.broke, "the stream ended cleanly");

    let last = events.last().unwrap();
    assert!(last.is_done(), "last event is [DONE], got {}", last.data);
    let chunks = &events[..events.len() - 1];
    assert_eq!(chunks.len(), 12, "one chunk per token: {events:?}");
    assert!(chunks.iter().all(|e| e.content().is_some_and(|c| !c.is_empty())), "every chunk carries a token");
    // Only the last token's chunk says why generation stopped.
    for (i, e) in chunks.iter().enumerate() {
        let finish = &e.json().unwrap()["choices"][0]["finish_reason"];
        if i + 1 == chunks.len() {
            assert_eq!(finish, "length");
        } else {
            assert!(finish.is_null(), "chunk {i} finished early: {}", e.data);
        }
    }
    // Incremental: the first token reached the client long before the last one was generated.
    let spread = last.at - events[0].at;
    assert!(spread >= Duration::from_millis(300), "events arrived together (spread {spread:?}): {events:?}");
    assert!(events.windows(2).all(|w| w[0].at <= w[1].at), "arrival order");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_text_equals_the_whole_answer() {
    // Outputs are a pure function of (seed, prompt), and every worker shares the seed, so it
    // does not matter which worker answers which request.
    let sim = SimConfig { output: OutputLength { min: 16, max: 16, fixed: Some(20) }, ..SimConfig::default() };
    let gw = TestGateway::start(2, GatewayOptions { sim, ..GatewayOptions::default() }).await;
    let prompt = "what is the capital of the moon?";

    let mut stream = gw.chat_stream(&chat_body(prompt, json!({"stream": true}))).await;
    let events = stream.rest().await;
    assert!(events.last().is_some_and(|e| e.is_done()));
    let streamed = concat_content(&events);

    let whole = gw.chat(&chat_body(prompt, json!({}))).await;
    assert_eq!(whole.status, 200, "{}", whole.text());
    let v = whole.json();
    assert_eq!(v["choices"][0]["message"]["content"].as_str().unwrap(), streamed);
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"]["completion_tokens"], 20);
    assert!(!streamed.is_empty());

    // The completions API streams the same way.
    let body = json!({"model": sluice_test_support::MODEL, "prompt": prompt, "stream": true, "max_tokens": 5});
    let mut stream = gw.client.post_stream(&gw.url("/v1/completions"), Some(gw.key), &body).await;
    let events = stream.rest().await;
    assert_eq!(events.len(), 6, "5 tokens and [DONE]: {events:?}");
    assert!(events[..5].iter().all(|e| e.json().unwrap()["object"] == "text_completion"));
    assert!(events[5].is_done());
    gw.shutdown().await;
}
