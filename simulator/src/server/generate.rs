//! Shared by chat and completions: turning a tokenized prompt into a generation, from the engine
//! or (zero-delay mode) at once, and collecting it for non-streaming answers.

use std::sync::Arc;
use std::time::Duration;

use sluice_openai::Usage;

use super::App;
use super::http::ApiError;
use crate::driver::{GenEvent, Generation, Submission};
use crate::faults::Faults;
use crate::sampling::{self, FinishReason};
use crate::stats::bump;

/// What one request will generate, decided before anything runs.
#[derive(Debug)]
pub(crate) struct Plan {
    pub model: Arc<str>,
    pub prompt: Vec<u32>,
    pub output: Vec<u32>,
    pub finish_reason: FinishReason,
    pub faults: Faults,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Finish {
    pub reason: FinishReason,
    pub usage: Usage,
}

#[derive(Debug)]
pub(crate) enum SourceEvent {
    Token(u32),
    Finished(Finish),
}

/// Where a request's tokens come from.
#[derive(Debug)]
pub(crate) enum TokenSource {
    Engine(Generation),
    /// Zero-delay mode: everything is known; only fault delays are applied.
    Instant {
        app: Arc<App>,
        model: Arc<str>,
        prompt_tokens: u32,
        tokens: std::vec::IntoIter<u32>,
        finish: Option<FinishReason>,
        stall: Duration,
        slow: Duration,
        sent: u32,
    },
}

impl App {
    pub(crate) fn plan(
        &self,
        model: &str,
        prompt: Vec<u32>,
        client_limit: Option<u32>,
        faults: Faults,
    ) -> Result<Plan, ApiError> {
        if prompt.is_empty() {
            return Err(ApiError::bad_request("the prompt must not be empty", Some("prompt")));
        }
        if client_limit == Some(0) {
            return Err(ApiError::bad_request("max_tokens must be at least 1", Some("max_tokens")));
        }
        let (len, finish_reason) = sampling::output_plan(self.config.seed, &prompt, client_limit, self.config.output);
        let total = prompt.len() as u64 + u64::from(len);
        let max_len = u64::from(self.config.max_model_len);
        if total > max_len {
            return Err(ApiError::bad_request(
                format!(
                    "This model's maximum context length is {max_len} tokens. However, you \
                     requested {total} tokens ({} in the messages, {len} in the completion).",
                    prompt.len()
                ),
                Some("max_tokens"),
            ));
        }
        let e = &self.config.engine;
        if !self.config.zero_delay && total.div_ceil(u64::from(e.block_size)) > u64::from(e.kv_blocks) {
            return Err(ApiError::bad_request(
                format!(
                    "the request needs {total} tokens of KV cache but the worker holds {}",
                    u64::from(e.kv_blocks) * u64::from(e.block_size)
                ),
                Some("max_tokens"),
            ));
        }
        let output = sampling::output_tokens(&self.tokenizer, self.config.seed, &prompt, len);
        Ok(Plan { model: self.model_name(model), prompt, output, finish_reason, faults })
    }

    /// Starts generating. In engine mode the sequence is queued at once.
    pub(crate) fn start(self: &Arc<Self>, plan: Plan) -> Result<TokenSource, ApiError> {
        // Injected delays are in simulated time, like step times: `--speedup` compresses both.
        let stall = self.config.compress(plan.faults.stall_first_token);
        let slow = self.config.compress(plan.faults.slow_token);
        if self.config.zero_delay {
            return Ok(TokenSource::Instant {
                app: Arc::clone(self),
                model: plan.model,
                prompt_tokens: plan.prompt.len() as u32,
                tokens: plan.output.into_iter(),
                finish: Some(plan.finish_reason),
                stall,
                slow,
                sent: 0,
            });
        }
        let engine = self.engine.as_ref().ok_or(ApiError::EngineUnavailable)?;
        Ok(TokenSource::Engine(engine.submit(Submission {
            model: plan.model,
            prompt: plan.prompt,
            output: plan.output,
            finish_reason: plan.finish_reason,
            stall,
            token_interval: slow,
        })))
    }
}

impl TokenSource {
    /// The next token or the end; `None` if the engine went away mid-request.
    pub async fn next(&mut self) -> Option<SourceEvent> {
        match self {
            TokenSource::Engine(generation) => match generation.next().await? {
                GenEvent::Token(t) => Some(SourceEvent::Token(t)),
                GenEvent::Finished { reason, usage } => Some(SourceEvent::Finished(Finish { reason, usage })),
                GenEvent::Rejected(e) => {
                    tracing::warn!(error = %e, "engine refused a request that passed validation");
                    None
                }
            },
            TokenSource::Instant { app, model, prompt_tokens, tokens, finish, stall, slow, sent } => {
                let delay = if *sent == 0 { *stall } else { *slow };
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                if let Some(t) = tokens.next() {
                    *sent += 1;
                    return Some(SourceEvent::Token(t));
                }
                let reason = finish.take()?;
                app.metrics.instant(model, *prompt_tokens, *sent, reason.as_str());
                bump(&app.stats.requests_completed, 1);
                bump(&app.stats.prompt_tokens, u64::from(*prompt_tokens));
                bump(&app.stats.generation_tokens, u64::from(*sent));
                Some(SourceEvent::Finished(Finish {
                    reason,
                    usage: Usage::new(u64::from(*prompt_tokens), 0, u64::from(*sent)),
                }))
            }
        }
    }
}

/// A whole generation, or where it was cut.
pub(crate) enum Collected {
    Done(Vec<u32>, Finish),
    /// `drop_after_tokens` fired after this many tokens.
    Dropped(u32),
    EngineGone,
}

pub(crate) async fn collect(mut source: TokenSource, drop_after: Option<u32>) -> Collected {
    let mut tokens = Vec::new();
    loop {
        if drop_after.is_some_and(|n| tokens.len() as u32 >= n) {
            return Collected::Dropped(tokens.len() as u32);
        }
        match source.next().await {
            Some(SourceEvent::Token(t)) => tokens.push(t),
            Some(SourceEvent::Finished(f)) => return Collected::Done(tokens, f),
            None => return Collected::EngineGone,
        }
    }
}
