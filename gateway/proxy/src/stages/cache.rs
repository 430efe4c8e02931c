//! The response cache, as the on-request plugins asked for it: after the request was resolved
//! and admitted (a cached answer is never a way around the tenant's model allow-list), look it
//! up, answer a hit here, or note where a miss's answer is to be stored.
//!
//! Every API is answered in its own shape (the key holds the API). A Responses request that
//! leans on state a worker keeps is never cached, whatever the plugins asked: one continuing a
//! stored response (`previous_response_id`) or a conversation, since its answer depends on more
//! than its body; and one whose answer is to be stored (`store` unset or `true`), since a
//! replay would hand out a response id that no worker holds, and a follow-up to it would fail.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Response, header};
use serde::Deserialize;
use serde::de::IgnoredAny;
use sluice_metrics::Api;
use sluice_openai::Usage;
use sluice_plugin_host::resources::prompt_text;
use sluice_plugin_host::{BypassReason, CacheIntent, CacheUse, PluginIo, SemanticAsk};

use crate::body::ResponseBody;
use crate::exchange::{Completion, Exchange, X_REQUEST_ID};
use crate::response_cache::answer::{AnswerKind, CachedAnswer, StreamCapture, now_ms};
use crate::response_cache::key::{EntryKey, digest};
use crate::response_cache::metrics::STORED_STATE;
use crate::response_cache::{CacheStatus, Lookup, ResponseCache};
use crate::stages::parse::ParsedRequest;

/// How long a near-match lookup waits for the request's embedding.
const EMBED_TIMEOUT: Duration = Duration::from_secs(1);

/// Where a miss's answer goes once it completed.
pub struct PendingStore {
    pub cache: Arc<ResponseCache>,
    pub key: EntryKey,
    pub ttl: Duration,
    pub kind: AnswerKind,
    /// The prompt and its embedding, when the plugin asked for near matches.
    pub semantic: Option<(Vec<f32>, String)>,
}

impl PendingStore {
    /// What gathers the answer from the stream the client is sent. A Messages request answered
    /// by a chat-completions worker (`through_chat`) is gathered from the worker's chunks,
    /// translated as they are for the client.
    pub fn capture(&self, through_chat: bool) -> StreamCapture {
        let max = self.cache.max_entry_bytes();
        match self.kind {
            AnswerKind::Message if through_chat => StreamCapture::messages_through_chat(&self.key.model, max),
            kind => StreamCapture::new(kind, max),
        }
    }

    /// Stores a whole answer's body (for a Messages request through chat, the message the
    /// client was sent), if the cache can tell it again.
    pub fn whole(self, body: &[u8], worker: Duration) {
        match CachedAnswer::from_whole(self.kind, body, worker) {
            Some(answer) => self.keep(answer),
            None => self.cache.metrics.stored("not_cacheable"),
        }
    }

    /// Stores `answer`. A prompt for near matches is indexed first, off the request's path
    /// (an insertion costs about a millisecond), so that a near match never finds an entry
    /// that is not there yet for long.
    pub fn keep(self, answer: CachedAnswer) {
        let PendingStore { cache, key, ttl, semantic, .. } = self;
        let Some((vector, text)) = semantic else {
            cache.store(key, answer, ttl);
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        runtime.spawn_blocking(move || {
            cache.remember(&key, answer.kind, &vector, &text);
            cache.store(key, answer, ttl);
        });
    }
}

/// What the cache did for one request.
pub struct CacheState {
    pub status: CacheStatus,
    /// The entry's digest, hex.
    pub key: Option<HeaderValue>,
    /// Seconds since a hit's entry was stored.
    pub age: Option<u64>,
    /// A semantic hit's cosine similarity to the request it answered first.
    pub similarity: Option<f32>,
    pub store: Option<PendingStore>,
}

impl CacheState {
    /// `x-sluice-cache` (and `age`, `x-sluice-cache-key`) on the answer.
    pub fn apply_headers(&self, headers: &mut http::HeaderMap) {
        headers.insert(crate::response_cache::X_SLUICE_CACHE, HeaderValue::from_static(self.status.as_str()));
        if let Some(key) = &self.key {
            headers.insert(crate::response_cache::X_SLUICE_CACHE_KEY, key.clone());
        }
        if let Some(age) = self.age {
            headers.insert(header::AGE, HeaderValue::from(age));
        }
        if let Some(similarity) = self.similarity
            && let Ok(value) = HeaderValue::from_str(&format!("{similarity:.4}"))
        {
            headers.insert(crate::response_cache::X_SLUICE_CACHE_SIMILARITY, value);
        }
    }
}

/// A hit's answer and what to record for it.
pub struct Hit {
    pub response: Response<ResponseBody>,
    pub completion: Completion,
}

pub async fn run(
    cache: &Arc<ResponseCache>,
    io: Option<Arc<dyn PluginIo>>,
    intent: CacheIntent,
    ex: &mut Exchange,
    api: Api,
    parsed: &ParsedRequest,
    body: &Bytes,
) -> Option<Hit> {
    let tenant = ex.key.as_ref().map(|k| Arc::clone(&k.tenant.name)).unwrap_or_else(|| Arc::from(""));
    let model = Arc::clone(&ex.model);
    let wanted = match intent {
        CacheIntent::Bypass { reason, .. } => {
            cache.metrics.bypassed(reason.as_str());
            return bypass(cache, ex, &tenant, &model);
        }
        CacheIntent::Use(wanted) => wanted,
    };
    if api == Api::Responses && keeps_state(body) {
        cache.metrics.bypassed(STORED_STATE);
        return bypass(cache, ex, &tenant, &model);
    }
    let kind = AnswerKind::of(api);
    let CacheUse { namespace, store_only, ignore_fields, extra_key, ttl, semantic, .. } = wanted;
    let Some(digest) = digest(api, body, &ignore_fields, &extra_key) else {
        cache.metrics.bypassed(BypassReason::Other.as_str());
        return bypass(cache, ex, &tenant, &model);
    };
    let key = EntryKey {
        namespace: Arc::from(namespace.as_str()),
        tenant: Arc::clone(&tenant),
        model: Arc::clone(&model),
        digest,
    };
    let hex = HeaderValue::from_str(&key.hex()).ok();
    let found = if store_only { Lookup::Miss } else { cache.lookup(&key).await };
    let answer = match found {
        Lookup::Hit(answer) => answer,
        Lookup::Miss => {
            let near = match (semantic, io) {
                (Some(ask), Some(io)) => embed(&*io, &ask, body).await.map(|e| (ask.threshold, e)),
                _ => None,
            };
            if let Some((threshold, (vector, text))) = &near
                && !store_only
                && let Some(found) = cache.near_match(&key, kind, vector, text, *threshold).await
            {
                cache.metrics.request(&tenant, &model, CacheStatus::SemanticHit.as_str());
                let usage = found.answer.usage;
                cache.metrics.saved(
                    &tenant,
                    &model,
                    usage.prompt,
                    usage.completion,
                    found.answer.worker_ms as f64 / 1e3,
                );
                ex.cache = Some(CacheState {
                    status: CacheStatus::SemanticHit,
                    key: HeaderValue::from_str(&hex::encode(found.digest)).ok(),
                    age: Some(now_ms().saturating_sub(found.answer.stored_at_ms) / 1000),
                    similarity: Some(found.similarity),
                    store: None,
                });
                return Some(hit(&found.answer, ex, parsed, body, &ignore_fields));
            }
            cache.metrics.request(&tenant, &model, CacheStatus::Miss.as_str());
            let semantic = near.map(|(_, embedded)| embedded);
            let store = PendingStore { cache: Arc::clone(cache), key, ttl, kind, semantic };
            ex.cache = Some(CacheState {
                status: CacheStatus::Miss,
                key: hex,
                age: None,
                similarity: None,
                store: Some(store),
            });
            return None;
        }
        Lookup::Unavailable => {
            cache.metrics.bypassed(BypassReason::Unavailable.as_str());
            return bypass(cache, ex, &tenant, &model);
        }
    };
    cache.metrics.request(&tenant, &model, CacheStatus::Hit.as_str());
    let usage = answer.usage;
    cache.metrics.saved(&tenant, &model, usage.prompt, usage.completion, answer.worker_ms as f64 / 1e3);
    let age = now_ms().saturating_sub(answer.stored_at_ms) / 1000;
    ex.cache = Some(CacheState { status: CacheStatus::Hit, key: hex, age: Some(age), similarity: None, store: None });
    Some(hit(&answer, ex, parsed, body, &ignore_fields))
}

/// What a Responses request says of the state its worker keeps.
#[derive(Deserialize)]
struct StateProbe {
    #[serde(default)]
    store: Option<bool>,
    #[serde(default)]
    previous_response_id: Option<IgnoredAny>,
    #[serde(default)]
    conversation: Option<IgnoredAny>,
}

/// Whether a Responses request continues stored state or asks for its answer to be stored
/// (`store` defaults to `true`). A body that cannot be read is treated as doing so.
fn keeps_state(body: &[u8]) -> bool {
    serde_json::from_slice::<StateProbe>(body).map_or(true, |probe| {
        probe.store != Some(false) || probe.previous_response_id.is_some() || probe.conversation.is_some()
    })
}

/// The request's prompt text and its embedding by the plugin's embedding model; `None` (an exact
/// lookup only) when there is no text or the embedding fails.
async fn embed(io: &dyn PluginIo, ask: &SemanticAsk, body: &Bytes) -> Option<(Vec<f32>, String)> {
    let text = prompt_text(body);
    if text.is_empty() {
        return None;
    }
    match io.embed(ask.embedding_model.clone(), text.clone(), EMBED_TIMEOUT).await {
        Ok(vector) => Some((vector, text)),
        Err(error) => {
            tracing::debug!(%error, model = %ask.embedding_model, "embedding for a near-match lookup failed");
            None
        }
    }
}

fn bypass(cache: &ResponseCache, ex: &mut Exchange, tenant: &str, model: &str) -> Option<Hit> {
    cache.metrics.request(tenant, model, CacheStatus::Bypass.as_str());
    ex.cache = Some(CacheState { status: CacheStatus::Bypass, key: None, age: None, similarity: None, store: None });
    None
}

/// The response to a hit on `answer`, told in the request's own API and form. Members of the
/// request left out of the key (`ignore_fields`) that a Responses answer echoes are this
/// request's.
fn hit(answer: &CachedAnswer, ex: &Exchange, parsed: &ParsedRequest, body: &Bytes, ignore_fields: &[String]) -> Hit {
    let echoed = answer.echoing(body, ignore_fields);
    let answer = echoed.as_ref().unwrap_or(answer);
    let usage = answer.usage;
    let id = ex.request_id.to_str().unwrap_or("cached");
    let (stream, include_usage) = match parsed {
        ParsedRequest::Chat(r) => (r.is_stream(), r.wants_usage_chunk()),
        ParsedRequest::Completion(r) => (r.is_stream(), r.wants_usage_chunk()),
        ParsedRequest::Embedding(_) => (false, false),
        // Their streams always carry the usage.
        ParsedRequest::Agent(r) => (r.stream, true),
    };
    let mut response = if stream && answer.kind != AnswerKind::Embedding {
        let mut r = Response::new(ResponseBody::full(answer.event_stream(id, include_usage)));
        r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
        r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        r
    } else {
        let mut r = Response::new(ResponseBody::full(answer.whole_body(id)));
        r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        r
    };
    response.headers_mut().insert(X_REQUEST_ID, ex.request_id.clone());
    let completion = Completion {
        status: 200,
        outcome: Some(sluice_metrics::Outcome::Ok),
        // The whole prompt was served from the cache, and no worker produced the output.
        usage: Some(Usage::new(usage.prompt, usage.prompt, usage.completion)),
        token_events: usage.completion,
        first_token_at: stream.then(Instant::now),
    };
    Hit { response, completion }
}

#[cfg(test)]
mod tests {
    use super::keeps_state;

    #[test]
    fn only_responses_that_keep_no_state_are_cacheable() {
        assert!(!keeps_state(br#"{"model":"m","input":"hi","store":false}"#));
        assert!(!keeps_state(br#"{"model":"m","input":"hi","store":false,"previous_response_id":null}"#));
        assert!(keeps_state(br#"{"model":"m","input":"hi"}"#), "store defaults to true");
        assert!(keeps_state(br#"{"model":"m","input":"hi","store":true}"#));
        assert!(keeps_state(br#"{"model":"m","input":"hi","store":false,"previous_response_id":"resp_1"}"#));
        assert!(keeps_state(br#"{"model":"m","input":"hi","store":false,"conversation":"conv_1"}"#));
        assert!(keeps_state(br#"{"model":"m","store":"no"}"#), "unreadable: not cached");
    }
}
