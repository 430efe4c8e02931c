//! The APIs agents speak, as the simulator serves them: OpenAI's Responses API and Anthropic's
//! Messages API, whole and streamed, with their events in order and usage that adds up.

#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

mod support;

use serde_json::{Value, json};
use sluice_sim::SimConfig;
use support::*;

fn types(events: &[String]) -> Vec<String> {
    events.iter().map(|e| serde_json::from_str::<Value>(e).unwrap()["type"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn responses_whole_and_streamed() {
    let sim = start(SimConfig::default()).await;
    let url = format!("{}/v1/responses", sim.base_url());
    let body =
        json!({"model": "llama-3-8b", "instructions": "be brief", "input": "hello there", "max_output_tokens": 7});
    let (status, whole) = post(&client(), url.clone(), &body).await;
    assert_eq!(status, 200);
    let whole: Value = serde_json::from_slice(&whole).unwrap();
    assert_eq!((whole["object"].as_str(), whole["status"].as_str()), (Some("response"), Some("incomplete")));
    assert_eq!(whole["usage"]["output_tokens"], 7);
    let text = whole["output"][0]["content"][0]["text"].as_str().unwrap().to_owned();

    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let resp = send(&client(), url, &streamed.to_string()).await;
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let (events, failed) = read_events(resp).await;
    assert!(!failed);
    let t = types(&events);
    assert_eq!(
        &t[..4],
        ["response.created", "response.in_progress", "response.output_item.added", "response.content_part.added"]
    );
    assert_eq!(t.iter().filter(|t| *t == "response.output_text.delta").count(), 7);
    assert_eq!(t.last().unwrap(), "response.incomplete");
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert_eq!(last["response"]["usage"], whole["usage"], "the same usage either way");
    assert_eq!(last["response"]["output"][0]["content"][0]["text"], text.as_str(), "the same text either way");
    let sequence: Vec<u64> =
        events.iter().map(|e| serde_json::from_str::<Value>(e).unwrap()["sequence_number"].as_u64().unwrap()).collect();
    assert!(sequence.windows(2).all(|w| w[1] == w[0] + 1), "{sequence:?}");
    sim.shutdown().await;
}

#[tokio::test]
async fn messages_whole_and_streamed() {
    let sim = start(SimConfig::default()).await;
    let url = format!("{}/v1/messages", sim.base_url());
    let body = json!({"model": "llama-3-8b", "max_tokens": 6, "system": "be brief",
                      "messages": [{"role": "user", "content": [{"type": "text", "text": "hello there"}]}]});
    let (status, whole) = post(&client(), url.clone(), &body).await;
    assert_eq!(status, 200);
    let whole: Value = serde_json::from_slice(&whole).unwrap();
    assert_eq!((whole["type"].as_str(), whole["stop_reason"].as_str()), (Some("message"), Some("max_tokens")));
    assert_eq!(whole["usage"]["output_tokens"], 6);

    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let (events, failed) = read_events(send(&client(), url.clone(), &streamed.to_string()).await).await;
    assert!(!failed);
    let t = types(&events);
    assert_eq!(&t[..3], ["message_start", "content_block_start", "ping"]);
    assert_eq!(t.iter().filter(|t| *t == "content_block_delta").count(), 6);
    assert_eq!(&t[t.len() - 3..], ["content_block_stop", "message_delta", "message_stop"]);
    let start: Value = serde_json::from_str(&events[0]).unwrap();
    let prompt = start["message"]["usage"]["input_tokens"].as_u64().unwrap();
    let whole_prompt =
        whole["usage"]["input_tokens"].as_u64().unwrap() + whole["usage"]["cache_read_input_tokens"].as_u64().unwrap();
    assert_eq!(prompt, whole_prompt);
    let delta: Value = serde_json::from_str(&events[t.len() - 2]).unwrap();
    assert_eq!(delta["usage"]["output_tokens"], 6);

    // A request the Messages API would refuse: no `max_tokens`.
    let (status, _) = post(&client(), url, &json!({"model": "llama-3-8b", "messages": []})).await;
    assert_eq!(status, 400);
    sim.shutdown().await;
}

#[tokio::test]
async fn stored_responses_are_continued_on_their_own_worker_only() {
    let (one, two) = (start(SimConfig::default()).await, start(SimConfig::default()).await);
    let url = |sim: &sluice_sim::SimHandle| format!("{}/v1/responses", sim.base_url());
    let body = json!({"model": "llama-3-8b", "input": "hello there", "max_output_tokens": 4});
    let (status, whole) = post(&client(), url(&one), &body).await;
    assert_eq!(status, 200);
    let first: Value = serde_json::from_slice(&whole).unwrap();
    let id = first["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("resp_") && id.len() == 37, "vLLM's shape: {id}");

    // The worker that stored it continues it; another worker (same seed) does not know it.
    let follow =
        json!({"model": "llama-3-8b", "input": "and then?", "previous_response_id": id, "max_output_tokens": 4});
    let (status, whole) = post(&client(), url(&one), &follow).await;
    assert_eq!(status, 200);
    let second: Value = serde_json::from_slice(&whole).unwrap();
    assert_ne!(second["id"], first["id"]);
    let (status, error) = post(&client(), url(&two), &follow).await;
    assert_eq!(status, 404);
    let error: Value = serde_json::from_slice(&error).unwrap();
    assert_eq!(
        error,
        json!({"error": {"message": format!("Response with id '{id}' not found."), "type": "invalid_request_error",
                         "param": "response_id", "code": 404}})
    );

    // A streamed answer is stored when it completes; `store: false` is not stored at all.
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let (events, failed) = read_events(send(&client(), url(&two), &streamed.to_string()).await).await;
    assert!(!failed);
    let created: Value = serde_json::from_str(&events[0]).unwrap();
    let streamed_id = created["response"]["id"].as_str().unwrap();
    let follow = json!({"model": "llama-3-8b", "input": "more", "previous_response_id": streamed_id, "stream": true});
    let (events, failed) = read_events(send(&client(), url(&two), &follow.to_string()).await).await;
    assert!(!failed && types(&events).last().is_some_and(|t| t == "response.completed"), "{events:?}");
    let mut unstored = body.clone();
    unstored["store"] = json!(false);
    let (_, whole) = post(&client(), url(&one), &unstored).await;
    let unstored_id = serde_json::from_slice::<Value>(&whole).unwrap()["id"].as_str().unwrap().to_owned();
    let follow = json!({"model": "llama-3-8b", "input": "x", "previous_response_id": unstored_id});
    assert_eq!(post(&client(), url(&one), &follow).await.0, 404);
    one.shutdown().await;
    two.shutdown().await;
}
