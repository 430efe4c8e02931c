//! The facts measured for one request.

use std::sync::Arc;
use std::time::Duration;

/// Label value for a tenant or model the gateway could not (or must not) name, such as the model
/// of a request for a model nobody serves: client strings never become labels.
pub const UNKNOWN_LABEL: &str = "unknown";

/// Which inference endpoint the request used: OpenAI's three, OpenAI's Responses API, or
/// Anthropic's Messages API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Api {
    ChatCompletions,
    Completions,
    Embeddings,
    /// `POST /v1/responses` (OpenAI's Responses API).
    Responses,
    /// `POST /v1/messages` (Anthropic's Messages API).
    Messages,
}

impl Api {
    pub fn label(self) -> &'static str {
        match self {
            Api::ChatCompletions => "chat",
            Api::Completions => "completions",
            Api::Embeddings => "embeddings",
            Api::Responses => "responses",
            Api::Messages => "messages",
        }
    }

    pub fn path(self) -> &'static str {
        match self {
            Api::ChatCompletions => "/v1/chat/completions",
            Api::Completions => "/v1/completions",
            Api::Embeddings => "/v1/embeddings",
            Api::Responses => "/v1/responses",
            Api::Messages => "/v1/messages",
        }
    }

    /// Every API, in a fixed order (metric label values are pre-initialised from it).
    pub const ALL: [Api; 5] = [Api::ChatCompletions, Api::Completions, Api::Embeddings, Api::Responses, Api::Messages];
}

/// How a request ended, as a low-cardinality label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The upstream answered 2xx and the response reached the client whole.
    Ok,
    /// Refused before reaching an upstream: bad request, auth, unknown model, too large.
    ClientError,
    /// The upstream answered with a 4xx of its own (e.g. context length exceeded).
    UpstreamRejected,
    /// No upstream could be reached or every attempt failed (connect errors, 5xx).
    UpstreamError,
    /// An upstream timeout fired (first byte, idle or total).
    UpstreamTimeout,
    /// No healthy endpoint was available.
    Unavailable,
    /// The client went away before the response finished.
    Cancelled,
    /// A bug or resource failure inside the gateway.
    InternalError,
    /// Refused by a rate limit, concurrency limit or quota (a `429` answered by the gateway).
    RateLimited,
}

impl Outcome {
    /// How many outcomes there are (the last variant's index plus one).
    pub const COUNT: usize = Outcome::RateLimited as usize + 1;

    /// Every outcome, in the order of their indices.
    pub const ALL: [Outcome; Outcome::COUNT] = [
        Outcome::Ok,
        Outcome::ClientError,
        Outcome::UpstreamRejected,
        Outcome::UpstreamError,
        Outcome::UpstreamTimeout,
        Outcome::Unavailable,
        Outcome::Cancelled,
        Outcome::InternalError,
        Outcome::RateLimited,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::ClientError => "client_error",
            Outcome::UpstreamRejected => "upstream_rejected",
            Outcome::UpstreamError => "upstream_error",
            Outcome::UpstreamTimeout => "upstream_timeout",
            Outcome::Unavailable => "unavailable",
            Outcome::Cancelled => "cancelled",
            Outcome::InternalError => "internal_error",
            Outcome::RateLimited => "rate_limited",
        }
    }
}

/// What the response cache did for a request (a request no cache policy looked at has none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CacheStatus {
    /// Answered from an exact entry.
    Hit,
    /// Answered from the entry of a similar earlier request.
    SemanticHit,
    /// Looked up, not found; sent to a worker (and stored if it qualifies).
    Miss,
    /// Not looked up: the policy, the client or an unavailable backend said so.
    Bypass,
}

impl CacheStatus {
    /// Also the `x-sluice-cache` header's value.
    pub fn as_str(self) -> &'static str {
        match self {
            CacheStatus::Hit => "hit",
            CacheStatus::SemanticHit => "semantic-hit",
            CacheStatus::Miss => "miss",
            CacheStatus::Bypass => "bypass",
        }
    }

    /// Answered without a worker.
    pub fn is_hit(self) -> bool {
        matches!(self, CacheStatus::Hit | CacheStatus::SemanticHit)
    }
}

/// Which of a record's token figures the gateway worked out itself because the worker reported
/// no usage (the stream ended before its usage chunk, or the answer carried none). A request
/// whose worker reported usage has neither set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Estimated {
    /// `prompt_tokens` is the gateway's estimate of the prompt (request body bytes / 4, the
    /// figure routing and rate limits reserve with), not the worker's tokenizer count.
    pub prompt: bool,
    /// `completion_tokens` counts the token-bearing events relayed to the client (one per
    /// event; a worker that packs several tokens into an event is undercounted).
    pub completion: bool,
}

impl Estimated {
    /// Both figures came from the gateway, not the worker.
    pub const BOTH: Estimated = Estimated { prompt: true, completion: true };

    pub fn any(self) -> bool {
        self.prompt || self.completion
    }
}

/// Everything measured about one request. Produced once, when the request ends (for a stream:
/// when the last byte was relayed or the client went away).
#[derive(Debug, Clone)]
pub struct RequestRecord {
    /// Tenant name, or [`UNKNOWN_LABEL`] before authentication succeeded.
    pub tenant: Arc<str>,
    /// A configured model name, or [`UNKNOWN_LABEL`].
    pub model: Arc<str>,
    pub api: Option<Api>,
    pub stream: bool,
    pub pool: Option<Arc<str>>,
    /// The endpoint that served the final attempt.
    pub endpoint: Option<Arc<str>>,
    pub status: u16,
    pub outcome: Outcome,
    /// Upstream attempts made (0 when refused before routing).
    pub attempts: u32,
    /// Request received → first generated token relayed (streams only).
    pub ttft: Option<Duration>,
    /// (e2e − TTFT) / (completion tokens − 1), streams with at least two output tokens.
    pub tpot: Option<Duration>,
    pub e2e: Duration,
    /// Time spent in the gateway itself, not waiting on the upstream or the client.
    pub overhead: Duration,
    pub prompt_tokens: u64,
    pub cached_tokens: u64,
    pub completion_tokens: u64,
    /// Which token figures are the gateway's own count rather than the worker's usage.
    pub estimated: Estimated,
    /// What the response cache did, when a cache policy is bound for the request.
    pub cache: Option<CacheStatus>,
}

impl RequestRecord {
    /// A record for a request refused before it reached any upstream.
    pub fn refused(
        tenant: Arc<str>,
        model: Arc<str>,
        api: Option<Api>,
        status: u16,
        outcome: Outcome,
        e2e: Duration,
    ) -> Self {
        Self {
            tenant,
            model,
            api,
            stream: false,
            pool: None,
            endpoint: None,
            status,
            outcome,
            attempts: 0,
            ttft: None,
            tpot: None,
            e2e,
            overhead: e2e,
            prompt_tokens: 0,
            cached_tokens: 0,
            completion_tokens: 0,
            estimated: Estimated::default(),
            cache: None,
        }
    }
}

/// A consumer of finished requests: Prometheus, and later the usage writer and the live view.
/// Called on the request's task, so implementations must be quick and must not block.
pub trait RecordSink: Send + Sync {
    fn record(&self, record: &RequestRecord);
}
