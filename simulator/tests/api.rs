//! The OpenAI surface: response shapes, SSE framing, errors, HTTP/2, embeddings, metrics.

mod support;

use serde_json::{Value, json};
use sluice_openai::ErrorBody;
use sluice_openai::response::{
    ChatCompletionChunk, ChatCompletionResponse, CompletionResponse, EmbeddingResponse, ModelList,
};
use sluice_sim::SimConfig;
use support::*;

#[tokio::test]
async fn chat_without_stream_returns_the_whole_answer_with_usage() {
    let sim = start(SimConfig::default()).await;
    let url = format!("{}/v1/chat/completions", sim.base_url());
    let (status, body) = post(&client(), url, &chat("hello there", json!({"max_tokens": 12}))).await;
    assert_eq!(status, 200);
    let r: ChatCompletionResponse = serde_json::from_slice(&body).unwrap();
    assert_eq!(r.object, "chat.completion");
    assert_eq!(r.choices[0].message.role, "assistant");
    assert_eq!(r.choices[0].finish_reason.as_deref(), Some("length"));
    assert!(!r.choices[0].message.content.as_deref().unwrap().is_empty());
    assert_eq!(r.usage.completion_tokens, 12);
    assert_eq!(r.usage.total_tokens, r.usage.prompt_tokens + 12);
    let raw: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(raw["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
    assert_eq!(sim.stats().requests_received, 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn outputs_are_deterministic_for_seed_and_prompt() {
    let sim = start(SimConfig::default()).await;
    let c = client();
    let url = format!("{}/v1/chat/completions", sim.base_url());
    let a = post(&c, url.clone(), &chat("same prompt", json!({"max_tokens": 8}))).await.1;
    let b = post(&c, url, &chat("same prompt", json!({"max_tokens": 8}))).await.1;
    let text = |b: &[u8]| {
        let r: ChatCompletionResponse = serde_json::from_slice(b).unwrap();
        r.choices[0].message.content.clone()
    };
    assert_eq!(text(&a), text(&b));
    sim.shutdown().await;
}

#[tokio::test]
async fn chat_stream_is_framed_like_vllm() {
    let sim = start(SimConfig::default()).await;
    let url = format!("{}/v1/chat/completions", sim.base_url());
    let body =
        chat("stream please", json!({"max_tokens": 5, "stream": true, "stream_options": {"include_usage": true}}));
    let resp = send(&client(), url.clone(), &body.to_string()).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let (events, failed) = read_events(resp).await;
    assert!(!failed);
    assert_eq!(events.len(), 5 + 1 + 1, "{events:?}");
    assert_eq!(events.last().unwrap(), "[DONE]");
    let chunks: Vec<ChatCompletionChunk> = events[..6].iter().map(|e| serde_json::from_str(e).unwrap()).collect();
    assert_eq!(chunks[0].object, "chat.completion.chunk");
    assert_eq!(chunks[0].choices[0].delta.role.as_deref(), Some("assistant"));
    assert!(chunks[0].choices[0].delta.content.is_some(), "first chunk carries a token");
    assert!(chunks[1..5].iter().all(|c| c.choices[0].delta.role.is_none()));
    assert!(chunks[..4].iter().all(|c| c.choices[0].finish_reason.is_none()));
    assert_eq!(chunks[4].choices[0].finish_reason.as_deref(), Some("length"));
    assert!(chunks[..5].iter().all(|c| c.usage.is_none()));
    let usage = chunks[5].usage.unwrap();
    assert!(chunks[5].choices.is_empty());
    assert_eq!(usage.completion_tokens, 5);
    assert!(usage.prompt_tokens_details.is_some());

    // Without include_usage there is no usage chunk.
    let body = chat("stream please", json!({"max_tokens": 3, "stream": true}));
    let (events, _) = read_events(send(&client(), url, &body.to_string()).await).await;
    assert_eq!(events.len(), 4);
    assert!(events.iter().all(|e| !e.contains("\"usage\"")));
    sim.shutdown().await;
}

#[tokio::test]
async fn completions_stream_text_completion_chunks() {
    let sim = start(SimConfig::default()).await;
    let url = format!("{}/v1/completions", sim.base_url());
    let body = json!({"model": "llama-3-8b", "prompt": "once upon a time", "max_tokens": 4,
        "stream": true, "stream_options": {"include_usage": true}});
    let (events, failed) = read_events(send(&client(), url.clone(), &body.to_string()).await).await;
    assert!(!failed);
    assert_eq!(events.len(), 6);
    let chunks: Vec<CompletionResponse> = events[..5].iter().map(|e| serde_json::from_str(e).unwrap()).collect();
    assert!(chunks.iter().all(|c| c.object == "text_completion"));
    assert_eq!(chunks[4].usage.unwrap().completion_tokens, 4);
    let streamed: String = chunks[..4].iter().map(|c| c.choices[0].text.clone()).collect();

    // Non-streaming gives the same text as the stream's pieces.
    let mut body = body;
    body["stream"] = json!(false);
    let (status, bytes) = post(&client(), url, &body).await;
    assert_eq!(status, 200);
    let r: CompletionResponse = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(r.choices[0].text, streamed);
    sim.shutdown().await;
}

#[tokio::test]
async fn repeated_prompt_reports_cached_tokens() {
    let sim = start(SimConfig::default()).await;
    let c = client();
    let url = format!("{}/v1/chat/completions", sim.base_url());
    let long = "the quick brown fox jumps over the lazy dog ".repeat(10);
    let usage = |b: &[u8]| serde_json::from_slice::<ChatCompletionResponse>(b).unwrap().usage;
    let first = post(&c, url.clone(), &chat(&long, json!({"max_tokens": 2}))).await.1;
    assert_eq!(usage(&first).cached_tokens(), 0);
    let second = post(&c, url, &chat(&long, json!({"max_tokens": 2}))).await.1;
    let u = usage(&second);
    assert!(u.cached_tokens() > 0, "{u:?}");
    assert!(u.cached_tokens() < u.prompt_tokens);
    assert_eq!(u.cached_tokens() % 16, 0, "whole blocks");
    assert_eq!(sim.stats().cached_tokens, u.cached_tokens());
    sim.shutdown().await;
}

#[tokio::test]
async fn errors_use_the_openai_shape() {
    let sim = start(SimConfig::default()).await;
    let c = client();
    let base = sim.base_url();
    let (status, body) = post(
        &c,
        format!("{base}/v1/chat/completions"),
        &json!({
            "model": "gpt-nope", "messages": []
        }),
    )
    .await;
    assert_eq!(status, 404);
    let e: ErrorBody = serde_json::from_slice(&body).unwrap();
    assert_eq!(e.error.code.as_deref(), Some("model_not_found"));
    assert_eq!(e.error.param.as_deref(), Some("model"));

    let resp = send(&c, format!("{base}/v1/completions"), "{not json").await;
    assert_eq!(resp.status(), 400);
    let body = http_body_util::BodyExt::collect(resp.into_body()).await.unwrap().to_bytes();
    let e: ErrorBody = serde_json::from_slice(&body).unwrap();
    assert_eq!(e.error.kind, "invalid_request_error");

    let (status, _) = post(&c, format!("{base}/v1/chat/completions"), &chat("x", json!({"max_tokens": 0}))).await;
    assert_eq!(status, 400);
    let (status, _) = post(&c, format!("{base}/v1/chat/completions"), &chat("x", json!({"max_tokens": 40000}))).await;
    assert_eq!(status, 400, "beyond max_model_len");
    let (status, body) = get(&c, format!("{base}/v2/nothing")).await;
    assert_eq!(status, 404);
    serde_json::from_slice::<ErrorBody>(&body).unwrap();
    let (status, _) = get(&c, format!("{base}/v1/chat/completions")).await;
    assert_eq!(status, 405);

    let s = sim.stats();
    assert_eq!((s.requests_received, s.requests_failed), (5, 5));
    sim.shutdown().await;
}

#[tokio::test]
async fn http2_prior_knowledge_on_the_same_port() {
    let sim = start(SimConfig::default()).await;
    let url = format!("{}/v1/chat/completions", sim.base_url());
    let body = chat("over h2", json!({"max_tokens": 3, "stream": true}));
    let resp = send(&h2_client(), url, &body.to_string()).await;
    assert_eq!(resp.version(), http::Version::HTTP_2);
    let (events, failed) = read_events(resp).await;
    assert!(!failed);
    assert_eq!(events.last().unwrap(), "[DONE]");
    sim.shutdown().await;
}

#[tokio::test]
async fn models_health_and_metrics() {
    let config = SimConfig { models: vec!["llama-3-8b".into(), "alias".into()], ..SimConfig::default() };
    let sim = start(config).await;
    let c = client();
    let base = sim.base_url();
    let (status, body) = get(&c, format!("{base}/v1/models")).await;
    assert_eq!(status, 200);
    let models: ModelList = serde_json::from_slice(&body).unwrap();
    let ids: Vec<_> = models.data.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, ["llama-3-8b", "alias"]);
    assert_eq!(get(&c, format!("{base}/health")).await.0, 200);

    let (status, _) = post(
        &c,
        format!("{base}/v1/chat/completions"),
        &json!({
            "model": "alias", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3
        }),
    )
    .await;
    assert_eq!(status, 200);
    let (_, body) = get(&c, format!("{base}/metrics")).await;
    let text = String::from_utf8(body.to_vec()).unwrap();
    for name in [
        "vllm:num_requests_running{model_name=\"llama-3-8b\"}",
        "vllm:num_requests_waiting",
        "vllm:kv_cache_usage_perc",
        "vllm:prefix_cache_queries_total",
        "vllm:prefix_cache_hits_total",
        "vllm:time_to_first_token_seconds_bucket",
        "vllm:inter_token_latency_seconds_bucket",
        "vllm:e2e_request_latency_seconds_bucket",
        "vllm:prompt_tokens_total{model_name=\"alias\"}",
        "vllm:generation_tokens_total{model_name=\"alias\"} 3",
    ] {
        assert!(text.contains(name), "missing {name} in\n{text}");
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn embeddings_are_unit_vectors_of_the_requested_size() {
    let sim = start(SimConfig::default()).await;
    let url = format!("{}/v1/embeddings", sim.base_url());
    let c = client();
    let (status, body) = post(
        &c,
        url.clone(),
        &json!({
            "model": "llama-3-8b", "input": ["alpha beta", "gamma"], "dimensions": 64
        }),
    )
    .await;
    assert_eq!(status, 200);
    let r: EmbeddingResponse = serde_json::from_slice(&body).unwrap();
    assert_eq!(r.data.len(), 2);
    assert_eq!(r.usage.prompt_tokens, 3);
    for d in &r.data {
        assert_eq!(d.embedding.len(), 64);
        let norm: f32 = d.embedding.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-3);
    }
    let (_, body) = post(&c, url.clone(), &json!({"model": "llama-3-8b", "input": "alpha beta"})).await;
    let one: EmbeddingResponse = serde_json::from_slice(&body).unwrap();
    assert_eq!(one.data[0].embedding.len(), 384);
    assert_eq!(one.data[0].embedding[..64].len(), 64);

    let (status, body) = post(
        &c,
        url,
        &json!({
            "model": "llama-3-8b", "input": "alpha", "encoding_format": "base64", "dimensions": 3
        }),
    )
    .await;
    assert_eq!(status, 200);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["data"][0]["embedding"].as_str().unwrap().len(), 16, "12 bytes in base64");
    sim.shutdown().await;
}
