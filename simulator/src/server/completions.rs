//! `POST /v1/completions`.

use std::sync::Arc;

use http::Response;
use hyper::body::Incoming;
use sluice_openai::response::{CompletionChoice, CompletionResponse};
use sluice_openai::{CompletionRequest, Prompt, Usage};

use super::generate::{Collected, collect};
use super::http::{ApiError, Body, dropped_response, garbage_response, json_response, read_json};
use super::stream::{ChunkFormat, SseOptions, sse_response, to_json};
use super::{App, ResponseMeta};
use crate::sampling::FinishReason;

pub(crate) async fn completions_handler(app: Arc<App>, body: Incoming) -> Result<Response<Body>, ApiError> {
    let req: CompletionRequest = read_json(body).await?;
    app.check_model(&req.model)?;
    let faults = app.roll_faults()?;
    let prompt = match &req.prompt {
        Prompt::Text(text) => app.tokenizer.encode(text),
        Prompt::Tokens(ids) => app.token_prompt(ids)?,
        Prompt::Texts(texts) if texts.len() == 1 => app.tokenizer.encode(&texts[0]),
        Prompt::TokenBatches(batches) if batches.len() == 1 => app.token_prompt(&batches[0])?,
        Prompt::Texts(_) | Prompt::TokenBatches(_) => {
            return Err(ApiError::bad_request("the simulator accepts exactly one prompt per request", Some("prompt")));
        }
    };
    let plan = app.plan(&req.model, prompt, req.max_tokens, faults)?;
    let meta = app.meta("cmpl", &req.model);
    let options = SseOptions::for_plan(&plan, req.wants_usage_chunk());
    let source = app.start(plan)?;
    if req.is_stream() {
        return Ok(sse_response(source, CompletionFormat(meta), app.tokenizer, options));
    }
    if faults.garbage_body {
        return Ok(garbage_response());
    }
    match collect(source, faults.drop_after_tokens).await {
        Collected::Done(tokens, finish) => Ok(json_response(&CompletionResponse {
            id: meta.id,
            object: "text_completion".to_owned(),
            created: meta.created,
            model: meta.model,
            choices: vec![CompletionChoice {
                index: 0,
                text: app.tokenizer.decode(&tokens),
                finish_reason: Some(finish.reason.as_str().to_owned()),
            }],
            usage: Some(finish.usage),
        })),
        Collected::Dropped(n) => Ok(dropped_response(n)),
        Collected::EngineGone => Err(ApiError::EngineUnavailable),
    }
}

impl App {
    fn token_prompt(&self, ids: &[u32]) -> Result<Vec<u32>, ApiError> {
        match ids.iter().find(|&&id| !self.tokenizer.is_valid(id)) {
            Some(bad) => Err(ApiError::bad_request(format!("token id {bad} is out of vocabulary"), Some("prompt"))),
            None => Ok(ids.to_vec()),
        }
    }
}

struct CompletionFormat(ResponseMeta);

impl CompletionFormat {
    fn chunk(&self, choices: Vec<CompletionChoice>, usage: Option<Usage>) -> Vec<u8> {
        to_json(&CompletionResponse {
            id: self.0.id.clone(),
            object: "text_completion".to_owned(),
            created: self.0.created,
            model: self.0.model.clone(),
            choices,
            usage,
        })
    }
}

impl ChunkFormat for CompletionFormat {
    fn token(&self, text: String, _first: bool, finish: Option<FinishReason>) -> Vec<u8> {
        let choice = CompletionChoice { index: 0, text, finish_reason: finish.map(|f| f.as_str().to_owned()) };
        self.chunk(vec![choice], None)
    }

    fn usage(&self, usage: Usage) -> Vec<u8> {
        self.chunk(Vec::new(), Some(usage))
    }
}
