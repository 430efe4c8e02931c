//! `POST /v1/chat/completions`.

use std::sync::Arc;

use http::Response;
use hyper::body::Incoming;
use sluice_openai::ChatCompletionRequest;
use sluice_openai::Usage;
use sluice_openai::response::{
    AssistantMessage, ChatChoice, ChatCompletionChunk, ChatCompletionResponse, ChunkChoice, Delta, FunctionCall,
    FunctionCallDelta, ToolCall, ToolCallDelta,
};

use super::generate::{Collected, collect};
use super::http::{ApiError, Body, dropped_response, garbage_response, json_response, read_json};
use super::stream::{ChunkFormat, SseOptions, sse_response, to_json};
use super::tool_call::ForcedCall;
use super::{App, ResponseMeta};
use crate::sampling::FinishReason;

pub(crate) async fn chat_handler(app: Arc<App>, body: Incoming) -> Result<Response<Body>, ApiError> {
    let req: ChatCompletionRequest = read_json(body).await?;
    app.check_model(&req.model)?;
    let faults = app.roll_faults()?;
    let prompt = app.tokenizer.encode_chat(&req.messages);
    let plan = app.plan(&req.model, prompt, req.output_limit(), faults)?;
    let meta = app.meta("chatcmpl", &req.model);
    let call = ForcedCall::of(&req.extra, &meta.id);
    let options = SseOptions::for_plan(&plan, req.wants_usage_chunk());
    let source = app.start(plan)?;
    if req.is_stream() {
        return Ok(sse_response(source, ChatFormat { meta, call }, app.tokenizer, options));
    }
    if faults.garbage_body {
        return Ok(garbage_response());
    }
    match collect(source, faults.drop_after_tokens).await {
        Collected::Done(tokens, finish) => {
            let text = app.tokenizer.decode(&tokens);
            let (message, finish_reason) = match call {
                None => (
                    AssistantMessage { role: "assistant".to_owned(), content: Some(text), tool_calls: None },
                    finish.reason.as_str(),
                ),
                Some(call) => {
                    let arguments = call.arguments(&text);
                    let function = FunctionCall { name: call.name, arguments };
                    let tool_calls = vec![ToolCall { id: call.id, kind: "function".to_owned(), function }];
                    let message =
                        AssistantMessage { role: "assistant".to_owned(), content: None, tool_calls: Some(tool_calls) };
                    (message, ForcedCall::finish_reason(finish.reason))
                }
            };
            Ok(json_response(&ChatCompletionResponse {
                id: meta.id,
                object: "chat.completion".to_owned(),
                created: meta.created,
                model: meta.model,
                choices: vec![ChatChoice { index: 0, message, finish_reason: Some(finish_reason.to_owned()) }],
                usage: finish.usage,
            }))
        }
        Collected::Dropped(n) => Ok(dropped_response(n)),
        Collected::EngineGone => Err(ApiError::EngineUnavailable),
    }
}

struct ChatFormat {
    meta: ResponseMeta,
    /// The function the answer calls, when the request forced one.
    call: Option<ForcedCall>,
}

impl ChatFormat {
    fn chunk(&self, choices: Vec<ChunkChoice>, usage: Option<Usage>) -> Vec<u8> {
        to_json(&ChatCompletionChunk {
            id: self.meta.id.clone(),
            object: "chat.completion.chunk".to_owned(),
            created: self.meta.created,
            model: self.meta.model.clone(),
            choices,
            usage,
        })
    }
}

impl ChunkFormat for ChatFormat {
    fn token(&self, text: String, first: bool, finish: Option<FinishReason>) -> Vec<u8> {
        let role = first.then(|| "assistant".to_owned());
        let (delta, finish_reason) = match &self.call {
            None => (Delta { role, content: Some(text), tool_calls: None }, finish.map(FinishReason::as_str)),
            Some(call) => {
                let function = FunctionCallDelta {
                    name: first.then(|| call.name.clone()),
                    arguments: call.fragment(&text, first, finish.is_some()),
                };
                let piece = ToolCallDelta {
                    index: 0,
                    id: first.then(|| call.id.clone()),
                    kind: first.then(|| "function".to_owned()),
                    function,
                };
                (Delta { role, content: None, tool_calls: Some(vec![piece]) }, finish.map(ForcedCall::finish_reason))
            }
        };
        let choice = ChunkChoice { index: 0, delta, finish_reason: finish_reason.map(str::to_owned) };
        self.chunk(vec![choice], None)
    }

    fn usage(&self, usage: Usage) -> Vec<u8> {
        self.chunk(Vec::new(), Some(usage))
    }
}
