//! The state of one request as it moves through the pipeline, and the record it leaves behind.

use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use http::{HeaderMap, HeaderName, HeaderValue};
use sluice_metrics::{Api, CacheStatus, Estimated, Outcome, RecordSink, RequestRecord, UNKNOWN_LABEL};
use sluice_openai::Usage;

use sluice_plugin_host::limits::{self, RequestEnd};
use sluice_plugin_host::types::{self, RequestInfo, ResponseDone};
use sluice_plugin_host::{Chain, Hook, RequestLimits};

use crate::body::ResponseBody;
use crate::error::GatewayError;
use crate::response_affinity::PendingRecord;
use crate::stages::cache::CacheState;
use crate::tenants::KeyEntry;

/// Where finished requests are reported.
#[derive(Clone, Default)]
pub struct Sinks(Arc<Vec<Arc<dyn RecordSink>>>);

impl Sinks {
    pub fn new(sinks: Vec<Arc<dyn RecordSink>>) -> Self {
        Sinks(Arc::new(sinks))
    }

    fn emit(&self, record: &RequestRecord) {
        for sink in self.0.iter() {
            sink.record(record);
        }
    }
}

/// Decrements the gateway-wide in-flight gauge when the request is over.
struct InFlight(prometheus::IntGauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The status recorded for a request whose client went away before its response started
/// (nginx's "client closed request"); no response is sent, so no client ever sees it.
pub const CLIENT_CLOSED_REQUEST: u16 = 499;

/// One request's state. Finishing it (once) emits its [`RequestRecord`]; an inference request
/// dropped unfinished (the client went away) emits a `cancelled` one.
pub struct Exchange {
    pub start: Instant,
    pub request_id: HeaderValue,
    pub api: Option<Api>,
    /// A Messages request sent to a chat-completions worker: the worker's answer is measured
    /// as a chat completion and translated before the client sees it.
    pub through_chat: bool,
    pub key: Option<KeyEntry>,
    /// A configured model name once resolved; client strings never reach metrics.
    pub model: Arc<str>,
    pub stream: bool,
    pub pool: Option<Arc<str>>,
    pub endpoint: Option<Arc<str>>,
    pub attempts: u32,
    /// The gateway's estimate of the prompt's tokens (what routing and rate limits reserve
    /// with), set when the request is sent to a worker: what the request is billed for its
    /// prompt when the worker's usage never arrives.
    pub prompt_estimate: u64,
    /// Gateway time so far (waits on the client and the upstream excluded).
    pub overhead: Duration,
    /// The request's plugin chain and what its hooks are told, once the policy stage ran:
    /// on-response-done runs when the record is emitted.
    pub plugins: Option<(Arc<Chain>, RequestInfo)>,
    /// The request's `limits` holds (rate limits, slots): settled with the tokens it used when
    /// its record is emitted; an exchange dropped without a record gives its slots back.
    pub limits: Option<Arc<RequestLimits>>,
    /// What the response cache did for the request, when a plugin asked for it.
    pub cache: Option<CacheState>,
    /// A Responses answer to be stored: which endpoint made it is recorded once it succeeded.
    pub affinity: Option<PendingRecord>,
    sinks: Sinks,
    /// The record has been emitted.
    reported: bool,
    _in_flight: InFlight,
}

/// The figures a finished exchange reports beyond what the exchange already knows.
#[derive(Debug, Default, Clone, Copy)]
pub struct Completion {
    pub status: u16,
    pub outcome: Option<Outcome>,
    pub usage: Option<Usage>,
    /// Token-bearing chunks seen, the fallback output count when usage is missing.
    pub token_events: u64,
    pub first_token_at: Option<Instant>,
}

/// What on-response-done is told about a finished request.
fn response_done(record: &RequestRecord) -> ResponseDone {
    let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
    let outcome = match record.outcome {
        Outcome::Ok => types::Outcome::Ok,
        // The worker refused the client's request (context too long, say).
        Outcome::ClientError | Outcome::UpstreamRejected | Outcome::RateLimited => types::Outcome::ClientError,
        Outcome::UpstreamError => types::Outcome::UpstreamError,
        Outcome::UpstreamTimeout => types::Outcome::UpstreamTimeout,
        Outcome::Unavailable => types::Outcome::Unavailable,
        Outcome::Cancelled => types::Outcome::Cancelled,
        Outcome::InternalError => types::Outcome::InternalError,
    };
    let answered = record.prompt_tokens + record.completion_tokens > 0;
    ResponseDone {
        status: record.status,
        outcome,
        usage: answered.then_some(types::Usage {
            prompt_tokens: record.prompt_tokens,
            cached_tokens: record.cached_tokens,
            completion_tokens: record.completion_tokens,
        }),
        ttft_ns: record.ttft.map(nanos),
        tpot_ns: record.tpot.map(nanos),
        e2e_ns: nanos(record.e2e),
        endpoint: record.endpoint.as_deref().map(str::to_owned),
    }
}

/// How the request ended, for its rate-limit holds.
fn request_end(record: &RequestRecord) -> RequestEnd {
    if record.prompt_tokens + record.completion_tokens > 0 {
        RequestEnd::Used(limits::Usage {
            prompt: record.prompt_tokens,
            cached: record.cached_tokens,
            completion: record.completion_tokens,
        })
    } else if record.outcome == Outcome::Cancelled {
        RequestEnd::Unknown
    } else {
        RequestEnd::NoWork
    }
}

/// The label of what is not known yet, shared: every request starts with it as its model.
fn unknown() -> Arc<str> {
    static UNKNOWN: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from(UNKNOWN_LABEL));
    Arc::clone(&UNKNOWN)
}

/// The request's id, taken from the client or made up, passed to the worker and returned.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The tracing target of the per-request log lines (`request finished`, `request refused`), at
/// `debug`: `SLUICE_LOG=info,sluice::access=debug` logs one line per request and nothing more.
pub const ACCESS_LOG: &str = "sluice::access";

/// A client's request id is kept when it is 1-128 visible ASCII characters: it goes back in the
/// response, to the worker and into log lines, so nothing that could break a line or a header
/// passes.
fn valid_request_id(id: &[u8]) -> bool {
    !id.is_empty() && id.len() <= 128 && id.iter().all(u8::is_ascii_graphic)
}

fn request_id(headers: &HeaderMap) -> HeaderValue {
    headers.get(X_REQUEST_ID).filter(|v| valid_request_id(v.as_bytes())).cloned().unwrap_or_else(|| {
        // Hex digits are always a valid header value.
        let mut id = [0u8; 16];
        match hex::encode_to_slice(rand::random::<u64>().to_be_bytes(), &mut id) {
            Ok(()) => HeaderValue::from_bytes(&id).unwrap_or(HeaderValue::from_static("-")),
            Err(_) => HeaderValue::from_static("-"),
        }
    })
}

impl Exchange {
    pub fn begin(start: Instant, headers: &HeaderMap, sinks: Sinks, in_flight: &prometheus::IntGauge) -> Self {
        in_flight.inc();
        Exchange {
            start,
            request_id: request_id(headers),
            api: None,
            through_chat: false,
            key: None,
            model: unknown(),
            stream: false,
            pool: None,
            endpoint: None,
            attempts: 0,
            prompt_estimate: 0,
            overhead: Duration::ZERO,
            plugins: None,
            limits: None,
            cache: None,
            affinity: None,
            sinks,
            reported: false,
            _in_flight: InFlight(in_flight.clone()),
        }
    }

    /// The request id as log lines carry it (always visible ASCII; see [`valid_request_id`]).
    pub fn id(&self) -> &str {
        self.request_id.to_str().unwrap_or("-")
    }

    fn tenant(&self) -> Arc<str> {
        self.key.as_ref().map_or_else(unknown, |k| Arc::clone(&k.tenant.name))
    }

    fn emit(&mut self, record: &RequestRecord) {
        self.reported = true;
        self.sinks.emit(record);
        // The request's limits settle with what it used, after any on-response-done hook (which
        // may settle them itself).
        let limits = self.limits.take().map(|l| (l, request_end(record)));
        let finish = |limits: Option<(Arc<RequestLimits>, RequestEnd)>| {
            if let Some((l, end)) = limits {
                l.finish(end);
            }
        };
        let Some((chain, info)) = self.plugins.take().filter(|(chain, _)| chain.has(Hook::OnResponseDone)) else {
            return finish(limits);
        };
        let done = response_done(record);
        let held = limits.as_ref().map(|(l, _)| Arc::clone(l));
        if !chain.waits(Hook::OnResponseDone) {
            // Nothing to wait on: the hooks run to completion within this poll.
            let _ = chain.on_response_done(&info, &done, held.as_ref()).now_or_never();
            finish(limits);
        } else if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            // A hook that waits on I/O must not hold up the end of the response.
            runtime.spawn(async move {
                chain.on_response_done(&info, &done, held.as_ref()).await;
                finish(limits);
            });
        } else {
            tracing::warn!(request_id = self.id(), "no runtime to run on-response-done hooks; skipped");
            finish(limits);
        }
    }

    /// The record of a request that ended without a response from an upstream.
    fn unanswered_record(&self, status: u16, outcome: Outcome) -> RequestRecord {
        self.record_without_answer(status, outcome, false)
    }

    /// Like [`Exchange::unanswered_record`]; `billed` charges the prompt estimate when the
    /// request reached a worker, which then spent its prefill on it whether or not anyone reads
    /// the answer.
    fn record_without_answer(&self, status: u16, outcome: Outcome, billed: bool) -> RequestRecord {
        let e2e = self.start.elapsed();
        let mut record = RequestRecord::refused(self.tenant(), Arc::clone(&self.model), self.api, status, outcome, e2e);
        record.stream = self.stream;
        record.pool = self.pool.clone();
        record.endpoint = self.endpoint.clone();
        record.attempts = self.attempts;
        record.cache = self.cache.as_ref().map(|c| c.status);
        if self.attempts > 0 {
            record.overhead = self.overhead;
            if billed {
                record.prompt_tokens = self.prompt_estimate;
                record.estimated = Estimated::BOTH;
            }
        }
        record
    }

    /// Reports a request refused with `error` and returns its response.
    pub fn fail(mut self, error: GatewayError) -> http::Response<ResponseBody> {
        let status = error.status().as_u16();
        let outcome = error.outcome();
        if let GatewayError::Internal(detail) = &error {
            tracing::error!(request_id = self.id(), tenant = %self.tenant(), model = %self.model, %detail, "internal error");
        } else {
            tracing::debug!(
                target: ACCESS_LOG,
                request_id = self.id(),
                tenant = %self.tenant(),
                model = %self.model,
                api = self.api.map_or("-", Api::label),
                status,
                outcome = outcome.label(),
                %error,
                "request refused"
            );
        }
        let mut response = error.into_response();
        response.headers_mut().insert(X_REQUEST_ID, self.request_id.clone());
        let record = self.unanswered_record(status, outcome);
        self.emit(&record);
        response
    }

    /// Reports a request that reached an upstream.
    pub fn finish(mut self, done: Completion) {
        let end = Instant::now();
        let e2e = end.duration_since(self.start);
        let usage = done.usage.unwrap_or_default();
        // A worker that answered without usage (a stream cut before its usage chunk, a worker
        // that never reports it) still did the work: the request is billed on the gateway's
        // own figures, flagged as such. Answers from the cache or a plugin had no worker.
        let estimated = if done.usage.is_none() && self.attempts > 0 && (200..300).contains(&done.status) {
            Estimated::BOTH
        } else {
            Estimated::default()
        };
        let completion_tokens = if done.usage.is_some() { usage.completion_tokens } else { done.token_events };
        let prompt_tokens = if estimated.prompt { self.prompt_estimate } else { usage.prompt_tokens };
        let ttft = done.first_token_at.map(|t| t.duration_since(self.start));
        let tpot = match (ttft, completion_tokens) {
            (Some(ttft), n) if n >= 2 => {
                let n = u32::try_from(n - 1).unwrap_or(u32::MAX);
                Some(e2e.saturating_sub(ttft) / n)
            }
            _ => None,
        };
        let outcome = done.outcome.unwrap_or(Outcome::Ok);
        let record = RequestRecord {
            tenant: self.tenant(),
            model: Arc::clone(&self.model),
            api: self.api,
            stream: self.stream,
            pool: self.pool.clone(),
            endpoint: self.endpoint.clone(),
            status: done.status,
            outcome,
            attempts: self.attempts,
            ttft,
            tpot,
            e2e,
            overhead: self.overhead,
            prompt_tokens,
            cached_tokens: usage.cached_tokens(),
            completion_tokens,
            estimated,
            cache: self.cache.as_ref().map(|c| c.status),
        };
        tracing::debug!(
            target: ACCESS_LOG,
            request_id = self.id(),
            tenant = %record.tenant,
            model = %record.model,
            api = record.api.map_or("-", Api::label),
            stream = record.stream,
            endpoint = record.endpoint.as_deref().unwrap_or("-"),
            status = record.status,
            outcome = outcome.label(),
            e2e_ms = e2e.as_secs_f64() * 1e3,
            ttft_ms = ttft.map(|t| t.as_secs_f64() * 1e3),
            prompt_tokens = record.prompt_tokens,
            completion_tokens = record.completion_tokens,
            usage_estimated = estimated.any(),
            cache = record.cache.map_or("-", CacheStatus::as_str),
            "request finished"
        );
        self.emit(&record);
    }
}

impl Drop for Exchange {
    /// hyper drops the handler future when the client goes away, so an exchange dropped before
    /// it was reported is a request abandoned mid-pipeline: while its body was read or while
    /// the upstream had not answered yet (billed its prompt estimate if a worker had it).
    /// Streams abandoned later are reported by the relay. The model list is never recorded; it
    /// has no `api`.
    fn drop(&mut self) {
        if self.reported || self.api.is_none() {
            return;
        }
        tracing::debug!(request_id = self.id(), attempts = self.attempts, "client went away before the response");
        let record = self.record_without_answer(CLIENT_CLOSED_REQUEST, Outcome::Cancelled, true);
        self.emit(&record);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[derive(Default)]
    struct Collect(Mutex<Vec<RequestRecord>>);

    impl RecordSink for Collect {
        fn record(&self, record: &RequestRecord) {
            self.0.lock().unwrap().push(record.clone());
        }
    }

    fn exchange(sink: &Arc<Collect>, gauge: &prometheus::IntGauge) -> Exchange {
        let sinks = Sinks::new(vec![Arc::clone(sink) as Arc<dyn RecordSink>]);
        Exchange::begin(Instant::now(), &HeaderMap::new(), sinks, gauge)
    }

    #[test]
    fn a_clients_request_id_is_kept_only_when_it_is_visible_ascii() {
        let with = |id: &'static [u8]| {
            let mut headers = HeaderMap::new();
            headers.insert(X_REQUEST_ID, HeaderValue::from_bytes(id).unwrap());
            request_id(&headers)
        };
        assert_eq!(with(b"req-42_a.b"), "req-42_a.b");
        for bad in [&b"has space"[..], b"tab\there", b"caf\xc3\xa9"] {
            let id = with(bad);
            assert_ne!(id.as_bytes(), bad);
            assert!(valid_request_id(id.as_bytes()), "a fresh id replaces {bad:?}");
        }
        assert_ne!(with(&[b'a'; 129]).len(), 129);
    }

    #[test]
    fn an_abandoned_inference_request_is_recorded_once_as_cancelled() {
        let sink = Arc::new(Collect::default());
        let gauge = prometheus::IntGauge::new("g", "g").unwrap();
        let mut ex = exchange(&sink, &gauge);
        ex.api = Some(Api::ChatCompletions);
        ex.attempts = 1;
        assert_eq!(gauge.get(), 1);
        drop(ex);
        let records = sink.0.lock().unwrap().clone();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].outcome, Outcome::Cancelled);
        assert_eq!(records[0].status, CLIENT_CLOSED_REQUEST);
        assert_eq!(records[0].attempts, 1);
        assert_eq!(gauge.get(), 0);
    }

    #[test]
    fn reported_and_model_list_exchanges_record_nothing_more() {
        let sink = Arc::new(Collect::default());
        let gauge = prometheus::IntGauge::new("g", "g").unwrap();
        let mut ex = exchange(&sink, &gauge);
        ex.api = Some(Api::Embeddings);
        let _ = ex.fail(GatewayError::InvalidApiKey);
        ex = exchange(&sink, &gauge);
        ex.api = Some(Api::Completions);
        ex.finish(Completion { status: 200, ..Completion::default() });
        drop(exchange(&sink, &gauge));
        let outcomes: Vec<Outcome> = sink.0.lock().unwrap().iter().map(|r| r.outcome).collect();
        assert_eq!(outcomes, [Outcome::ClientError, Outcome::Ok]);
    }

    #[test]
    fn work_a_worker_did_without_reporting_usage_is_billed_on_the_gateways_figures() {
        let sink = Arc::new(Collect::default());
        let gauge = prometheus::IntGauge::new("g", "g").unwrap();
        let sent = |attempts: u32| {
            let mut ex = exchange(&sink, &gauge);
            ex.api = Some(Api::ChatCompletions);
            ex.attempts = attempts;
            ex.prompt_estimate = 250;
            ex
        };
        let cut =
            Completion { status: 200, outcome: Some(Outcome::Cancelled), token_events: 7, ..Completion::default() };
        sent(1).finish(cut);
        let usage: Usage =
            serde_json::from_str(r#"{"prompt_tokens":240,"completion_tokens":9,"total_tokens":249}"#).unwrap();
        sent(1).finish(Completion { usage: Some(usage), ..cut });
        sent(1).finish(Completion { status: 400, outcome: Some(Outcome::UpstreamRejected), ..Completion::default() });
        // Answered by the cache or a plugin: no worker, nothing estimated.
        sent(0).finish(Completion { status: 200, ..Completion::default() });
        drop(sent(1));
        drop(sent(0));
        let figures: Vec<(u64, u64, Estimated)> =
            sink.0.lock().unwrap().iter().map(|r| (r.prompt_tokens, r.completion_tokens, r.estimated)).collect();
        let none = Estimated::default();
        assert_eq!(
            figures,
            [
                (250, 7, Estimated::BOTH),
                (240, 9, none),
                (0, 0, none),
                (0, 0, none),
                (250, 0, Estimated::BOTH),
                (0, 0, none),
            ]
        );
    }
}
