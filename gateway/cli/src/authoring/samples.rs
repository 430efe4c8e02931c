//! Sample requests for `sluice plugin test`: a JSON file holding one sample or an array of them.
//! A sample is `{"body": {...}}` with optional `name`, `api`, `tenant`, `key_id`, `request_id`,
//! `headers`, `candidates` (for `route`) and `response` (for the response hooks: `status`,
//! `headers`, `usage`, and `chunks`, the answer's JSON objects for `on-response-chunk`: each
//! event of a streamed answer, or one whole body; a default answer when absent); a bare
//! OpenAI request body is a sample with every default.
//!
//! The body goes through the gateway's own parser and the gateway's own summary, so a plugin
//! sees what it would see behind the gateway.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;
use sluice_metrics::Api;
use sluice_plugin_host::BodyResource;
use sluice_plugin_host::types::{
    Candidate, CandidateStats, Health, PrefixOverlap, RequestInfo, ResponseDone, RouteRequest, Usage,
};
use sluice_proxy::exchange::{Exchange, Sinks};
use sluice_proxy::stages::{parse, policy};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSample {
    name: Option<String>,
    #[serde(default)]
    api: ApiName,
    #[serde(default = "default_tenant")]
    tenant: String,
    #[serde(default)]
    key_id: String,
    request_id: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, OneOrMany>,
    body: serde_json::Value,
    candidates: Option<Vec<RawCandidate>>,
    #[serde(default)]
    response: RawResponse,
}

fn default_tenant() -> String {
    "default".to_owned()
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum ApiName {
    #[default]
    ChatCompletions,
    Completions,
    Embeddings,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCandidate {
    id: Option<u32>,
    #[serde(default)]
    in_flight: u32,
    #[serde(default)]
    prefill_tokens: u64,
    #[serde(default)]
    health: HealthName,
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum HealthName {
    #[default]
    Healthy,
    Degraded,
    Unhealthy,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawResponse {
    #[serde(default = "ok")]
    status: u16,
    #[serde(default)]
    headers: BTreeMap<String, OneOrMany>,
    usage: Option<RawUsage>,
    chunks: Option<Vec<serde_json::Value>>,
}

fn ok() -> u16 {
    200
}

impl Default for RawResponse {
    fn default() -> Self {
        RawResponse { status: 200, headers: BTreeMap::new(), usage: None, chunks: None }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    cached_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
}

/// One sample, as the hooks receive it.
#[derive(Debug)]
pub struct Sample {
    pub label: String,
    pub info: RequestInfo,
    pub headers: Arc<HeaderMap>,
    pub body: BodyResource,
    pub route: RouteRequest,
    pub candidates: Vec<Candidate>,
    pub response_status: u16,
    pub response_headers: Arc<HeaderMap>,
    /// What on-response-chunk is offered: the events of a streamed answer, or one whole body.
    pub response_chunks: Vec<String>,
    usage: Option<Usage>,
}

impl Sample {
    /// What `on-response-done` is told: the sample's response, or `status` when the request
    /// was answered without a worker (a denial or a local response).
    pub fn done(&self, status: u16, from_worker: bool) -> ResponseDone {
        use sluice_plugin_host::types::Outcome;
        let outcome = match status {
            ..400 => Outcome::Ok,
            400..500 => Outcome::ClientError,
            _ => Outcome::UpstreamError,
        };
        ResponseDone {
            status,
            outcome,
            usage: if from_worker { self.usage } else { None },
            ttft_ns: None,
            tpot_ns: None,
            e2e_ns: 0,
            endpoint: from_worker.then(|| "sample-worker".to_owned()),
        }
    }
}

/// Reads and checks every sample in `path`.
pub fn load(path: &Path) -> anyhow::Result<Vec<Sample>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", path.display()))?;
    let raw = match value {
        serde_json::Value::Array(items) => items,
        one => vec![one],
    };
    if raw.is_empty() {
        bail!("{} holds no sample requests", path.display());
    }
    raw.into_iter()
        .enumerate()
        .map(|(i, item)| {
            let n = i + 1;
            let is_bare_body = item.as_object().is_some_and(|o| !o.contains_key("body"));
            let sample = if is_bare_body {
                RawSample {
                    name: None,
                    api: ApiName::default(),
                    tenant: default_tenant(),
                    key_id: String::new(),
                    request_id: None,
                    headers: BTreeMap::new(),
                    body: item,
                    candidates: None,
                    response: RawResponse::default(),
                }
            } else {
                serde_json::from_value(item).map_err(|e| anyhow!("{} sample {n}: {e}", path.display()))?
            };
            prepare(n, sample).with_context(|| format!("{} sample {n}", path.display()))
        })
        .collect()
}

fn prepare(n: usize, raw: RawSample) -> anyhow::Result<Sample> {
    let api = match raw.api {
        ApiName::ChatCompletions => Api::ChatCompletions,
        ApiName::Completions => Api::Completions,
        ApiName::Embeddings => Api::Embeddings,
    };
    let body = Bytes::from(serde_json::to_vec(&raw.body)?);
    let parsed = parse::run(api, &body).map_err(|e| anyhow!("the gateway would refuse this body: {e}"))?;
    let headers = header_map(&raw.headers)?;
    // The gateway's own summary of the request; the tenant and key come from the sample
    // rather than from an API key.
    let gauge = prometheus::IntGauge::new("sluice_plugin_test_in_flight", "unused")?;
    let exchange = Exchange::begin(Instant::now(), &headers, Sinks::default(), &gauge);
    let mut info = policy::request_info(&exchange, api, &parsed, body.len());
    info.tenant = raw.tenant;
    info.key_id = raw.key_id;
    info.request_id = raw.request_id.unwrap_or_else(|| format!("sample-{n}"));
    // As the gateway tells a router: the prompt's block hashes included.
    let asker = policy::Asker { tenant: &info.tenant, api, headers: &headers };
    let route = policy::route_request(&parsed, body.len(), &sluice_proxy::prompt_blocks::hashes(&parsed), Some(asker));
    let candidates = match raw.candidates {
        Some(list) => list.iter().enumerate().map(|(i, c)| candidate(i, c)).collect(),
        None => default_candidates(),
    };
    let usage = raw.response.usage.map(|u| Usage {
        prompt_tokens: u.prompt_tokens,
        cached_tokens: u.cached_tokens,
        completion_tokens: u.completion_tokens,
    });
    let response_chunks = match raw.response.chunks {
        Some(chunks) => chunks.iter().map(serde_json::Value::to_string).collect(),
        None => default_answer(api, info.summary.stream),
    };
    Ok(Sample {
        label: raw.name.unwrap_or_else(|| format!("sample {n}")),
        info,
        // The gateway never shows plugins the API key.
        headers: Arc::new({
            let mut h = headers;
            h.remove(http::header::AUTHORIZATION);
            h
        }),
        body: BodyResource::new(body),
        route,
        candidates,
        response_status: raw.response.status,
        response_headers: Arc::new(header_map(&raw.response.headers)?),
        response_chunks,
        usage,
    })
}

/// A short answer in the API's shape: two events and a last one with the finish reason when
/// streamed, else one whole body.
fn default_answer(api: Api, stream: bool) -> Vec<String> {
    let words = ["Hello", " from the sample worker."];
    let chat = |delta: serde_json::Value, finish: serde_json::Value| {
        let choice = serde_json::json!({"index": 0, "delta": delta, "finish_reason": finish});
        serde_json::json!({"id": "sample", "object": "chat.completion.chunk", "model": "sample", "choices": [choice]})
    };
    let text = |text: &str, finish: serde_json::Value| {
        let choice = serde_json::json!({"index": 0, "text": text, "finish_reason": finish});
        serde_json::json!({"id": "sample", "object": "text_completion", "model": "sample", "choices": [choice]})
    };
    let null = serde_json::Value::Null;
    let answer: Vec<serde_json::Value> = match (api, stream) {
        (Api::Embeddings, _) => vec![serde_json::json!({
            "object": "list", "model": "sample",
            "data": [{"object": "embedding", "index": 0, "embedding": [0.0, 0.5, 1.0]}]
        })],
        (Api::ChatCompletions, true) => {
            let mut events: Vec<_> =
                words.iter().map(|w| chat(serde_json::json!({"content": w}), null.clone())).collect();
            events.push(chat(serde_json::json!({}), "stop".into()));
            events
        }
        (Api::Completions, true) => {
            let mut events: Vec<_> = words.iter().map(|w| text(w, null.clone())).collect();
            events.push(text("", "stop".into()));
            events
        }
        (Api::ChatCompletions, false) => vec![serde_json::json!({
            "id": "sample", "object": "chat.completion", "model": "sample",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": words.concat()}, "finish_reason": "stop"}]
        })],
        (Api::Completions, false) => vec![text(&words.concat(), "stop".into())],
        // A sample names one of the WIT's three APIs (`ApiName`): these two never get here.
        (Api::Responses | Api::Messages, _) => Vec::new(),
    };
    answer.iter().map(serde_json::Value::to_string).collect()
}

fn header_map(raw: &BTreeMap<String, OneOrMany>) -> anyhow::Result<HeaderMap> {
    let mut map = HeaderMap::new();
    for (name, values) in raw {
        let name = HeaderName::try_from(name.as_str()).map_err(|_| anyhow!("{name:?} is not a header name"))?;
        let values = match values {
            OneOrMany::One(v) => std::slice::from_ref(v),
            OneOrMany::Many(v) => v.as_slice(),
        };
        for value in values {
            let value = HeaderValue::try_from(value.as_str())
                .map_err(|_| anyhow!("{value:?} is not a valid value for header {name}"))?;
            map.append(name.clone(), value);
        }
    }
    Ok(map)
}

fn candidate(index: usize, raw: &RawCandidate) -> Candidate {
    Candidate {
        id: raw.id.unwrap_or_else(|| u32::try_from(index).unwrap_or(u32::MAX)),
        stats: CandidateStats {
            in_flight_requests: raw.in_flight,
            in_flight_prefill_tokens: raw.prefill_tokens,
            metrics: None,
            health: match raw.health {
                HealthName::Healthy => Health::Healthy,
                HealthName::Degraded => Health::Degraded,
                HealthName::Unhealthy => Health::Unhealthy,
            },
        },
        overlap: PrefixOverlap { blocks: 0, tokens: 0 },
    }
}

/// Three healthy workers with 2, 0 and 1 requests in flight.
fn default_candidates() -> Vec<Candidate> {
    [2, 0, 1]
        .iter()
        .enumerate()
        .map(|(i, &in_flight)| {
            candidate(i, &RawCandidate { id: None, in_flight, prefill_tokens: 0, health: HealthName::Healthy })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use super::*;

    fn write(text: &str) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut file, text.as_bytes()).unwrap();
        file
    }

    #[test]
    fn a_bare_body_is_a_sample_with_defaults() {
        let file = write(r#"{"model": "m", "max_tokens": 7, "messages": [{"role": "user", "content": "hi"}]}"#);
        let samples = load(file.path()).unwrap();
        let s = &samples[0];
        assert_eq!((s.label.as_str(), s.info.tenant.as_str(), s.info.model.as_str()), ("sample 1", "default", "m"));
        assert_eq!(s.info.summary.max_tokens, Some(7));
        assert_eq!(s.candidates.len(), 3);
        assert_eq!(s.response_chunks.len(), 1, "a whole body for a request that is not streamed");
        assert!(s.response_chunks[0].contains("chat.completion"));
    }

    #[test]
    fn streamed_samples_get_events_unless_they_bring_their_own() {
        let file = write(
            r#"[{"body": {"model": "m", "stream": true, "messages": [{"role": "user", "content": "hi"}]}},
                {"body": {"model": "m", "prompt": "p"}, "api": "completions", "response": {"chunks": [{"a": 1}]}}]"#,
        );
        let samples = load(file.path()).unwrap();
        assert_eq!(samples[0].response_chunks.len(), 3);
        assert!(samples[0].response_chunks[0].contains("chat.completion.chunk"));
        assert_eq!(samples[1].response_chunks, [r#"{"a":1}"#]);
    }

    #[test]
    fn samples_with_headers_candidates_and_responses() {
        let file = write(
            r#"[{"name": "n", "api": "completions", "tenant": "acme", "headers": {"x-a": ["1", "2"], "authorization": "Bearer k"},
                "body": {"model": "m", "prompt": "p"}, "candidates": [{"id": 9, "health": "degraded"}],
                "response": {"status": 201, "usage": {"completion_tokens": 3}}}]"#,
        );
        let s = &load(file.path()).unwrap()[0];
        assert_eq!(s.headers.get_all("x-a").iter().count(), 2);
        assert!(s.headers.get("authorization").is_none(), "plugins never see the key");
        assert_eq!(s.candidates[0].id, 9);
        assert_eq!(s.response_status, 201);
        assert_eq!(s.done(201, true).usage.map(|u| u.completion_tokens), Some(3));
    }

    #[test]
    fn mistakes_name_the_sample() {
        let e = load(write(r#"[{"body": {"model": "m", "messages": [{"role": "user", "content": "hi"}]}}, {"bdy": 1, "body": {}}]"#).path()).unwrap_err();
        assert!(format!("{e:#}").contains("sample 2") && format!("{e:#}").contains("unknown field `bdy`"), "{e:#}");
        let e = load(write(r#"{"body": {"messages": "no"}}"#).path()).unwrap_err();
        assert!(format!("{e:#}").contains("the gateway would refuse this body"), "{e:#}");
    }
}
