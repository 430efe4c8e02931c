//! `POST /v1/chat/completions`.

use std::sync::Arc;

use http::Response;
use hyper::body::Incoming;
use sluice_openai::ChatCompletionRequest;
use sluice_openai::Usage;
use sluice_openai::response::{
    AssistantMessage, ChatChoice, ChatCompletionChunk, ChatCompletionResponse, ChunkChoice, Delta,
};

use super::generate::{Collected, collect};
use super::http::{ApiError, Body, dropped_response, garbage_response, json_response, read_json};
use super::stream::{ChunkFormat, SseOptions, sse_response, to_json};
use super::{App, ResponseMeta};
use crate::sampling::FinishReason;

pub(crate) async fn chat_handler(app: Arc<App>, body: Incoming) -> Result<Response<Body>, ApiError> {
    let req: ChatCompletionRequest = read_json(body).await?;
    app.check_model(&req.model)?;
    let faults = app.roll_faults()?;
    let prompt = app.tokenizer.encode_chat(&req.messages);
    let plan = app.plan(&req.model, prompt, req.output_limit(), faults)?;
    let meta = app.meta("chatcmpl", &req.model);
    let options = SseOptions::for_plan(&plan, req.wants_usage_chunk());
    let source = app.start(plan)?;
    if req.is_stream() {
        return Ok(sse_response(source, ChatFormat(meta), app.tokenizer, options));
    }
    if faults.garbage_body {
        return Ok(garbage_response());
    }
    match collect(source, faults.drop_after_tokens).await {
        Collected::Done(tokens, finish) => Ok(json_response(&ChatCompletionResponse {
            id: meta.id,
            object: "chat.completion".to_owned(),
            created: meta.created,
            model: meta.model,
            choices: vec![ChatChoice {
                index: 0,
                message: AssistantMessage {
                    role: "assistant".to_owned(),
                    content: Some(app.tokenizer.decode(&tokens)),
                },
                finish_reason: Some(finish.reason.as_str().to_owned()),
            }],
            usage: finish.usage,
        })),
        Collected::Dropped(n) => Ok(dropped_response(n)),
        Collected::EngineGone => Err(ApiError::EngineUnavailable),
    }
}

struct ChatFormat(ResponseMeta);

impl ChatFormat {
    fn chunk(&self, choices: Vec<ChunkChoice>, usage: Option<Usage>) -> Vec<u8> {
        to_json(&ChatCompletionChunk {
            id: self.0.id.clone(),
            object: "chat.completion.chunk".to_owned(),
            created: self.0.created,
            model: self.0.model.clone(),
            choices,
            usage,
        })
    }
}

impl ChunkFormat for ChatFormat {
    fn token(&self, text: String, first: bool, finish: Option<FinishReason>) -> Vec<u8> {
        let choice = ChunkChoice {
            index: 0,
            delta: Delta { role: first.then(|| "assistant".to_owned()), content: Some(text) },
            finish_reason: finish.map(|f| f.as_str().to_owned()),
        };
        self.chunk(vec![choice], None)
    }

    fn usage(&self, usage: Usage) -> Vec<u8> {
        self.chunk(Vec::new(), Some(usage))
    }
}
