//! Sends the request to an endpoint of the pool, retrying on another endpoint while nothing has
//! reached the client: a connect error, a 5xx or 429, a timeout, or a stream that breaks before
//! its first byte. A 4xx from the upstream is the client's problem and is passed through (413,
//! 414 and 431 included: another worker would refuse the same request). A request that fails
//! because of its own size — the worker closed the connection without an answer while taking a
//! request larger than workers commonly accept ([`SendError::TooLarge`]) — is not retried either,
//! and does not count against the endpoint's health: the request, not the worker, is at fault.
//! Neither does a connection the gateway could not open for want of its own resources (file
//! descriptors, memory: [`SendError::Local`]), which answers 503 at once: every worker would
//! fail the same way.
//!
//! A worker's `2xx` must be what it claims: a whole answer that is not a JSON document (garbage,
//! a truncated body, a proxy's HTML page) or a stream whose first event carries data that is
//! neither JSON nor `[DONE]` is the worker's failure like a 5xx — blamed, retried elsewhere, and
//! a `502 upstream_error` when no worker does better — never relayed as a `200`. Nothing has
//! reached the client yet, so nothing is lost by refusing it. Later events are checked by the
//! relay (`relay.rs`).
//!
//! In a pool whose endpoints have in-flight limits, the request is first admitted by the pool's
//! fair queue (`upstream/fair_queue.rs`), waiting there while every usable endpoint is at its
//! limit, and every attempt then takes a slot on an endpoint below its limit. The admission is
//! held, with the endpoint's slot, until the response ends.

use std::future::{Future, poll_fn};
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{HeaderValue, Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use sluice_metrics::{Api, Metrics};
use sluice_openai::sse::{SseEvent, SseParser};
use sluice_plugin_host::types::RouteRequest;
use sluice_plugin_host::{Chain, Hook};
use sluice_routing::BlockHash;
use sluice_store_model::Priority;
use tokio::time::{Instant, timeout_at};

use crate::error::{GatewayError, TimeoutPhase};
use crate::exchange::{Exchange, X_REQUEST_ID};
use crate::prompt_blocks;
use crate::relay::{MAX_EVENT_BYTES, plausible_data};
use crate::stages::prepare::UpstreamBody;
use crate::upstream::{Endpoint, FailureKind, InFlightGuard, Pool, QueueRejection, SendError, WorkerBody};

pub enum UpstreamReply {
    /// A whole response: any non-streamed answer, or an upstream 4xx.
    Full { status: StatusCode, content_type: Option<HeaderValue>, body: Bytes },
    /// A 2xx stream whose first data has arrived.
    Stream { content_type: Option<HeaderValue>, incoming: WorkerBody, first: Bytes },
}

pub struct Forwarded {
    pub reply: UpstreamReply,
    pub guard: InFlightGuard,
}

struct Failure {
    kind: FailureKind,
    reason: String,
    timeout: Option<TimeoutPhase>,
}

/// Why one attempt did not produce a reply.
enum AttemptError {
    /// The endpoint failed: another one may do better, and this one is blamed.
    Failed(Failure),
    /// The request itself is the problem (its size), or the gateway is (out of file
    /// descriptors or memory): no other endpoint is tried, none is blamed.
    Refused(GatewayError),
}

impl From<Failure> for AttemptError {
    fn from(failure: Failure) -> Self {
        AttemptError::Failed(failure)
    }
}

impl Failure {
    fn new(kind: FailureKind, reason: impl Into<String>) -> Self {
        Failure { kind, reason: reason.into(), timeout: None }
    }

    fn timeout(phase: TimeoutPhase) -> Self {
        Failure { kind: FailureKind::Timeout, reason: phase.label().to_owned(), timeout: Some(phase) }
    }
}

/// The route plugins of this request's chain and what they are told about it.
pub struct Router<'a> {
    pub chain: &'a Chain,
    /// Whose request it is: the chain runs the route plugins bound for this tenant, and the
    /// pool's admission queue gives it its tenant's turn.
    pub tenant: &'a str,
    /// The tenant's weight in the admission queue.
    pub priority: Priority,
    pub request: &'a RouteRequest,
    /// The prompt's block hashes (`prompt_blocks`); empty without route plugins.
    pub blocks: &'a [BlockHash],
    /// The endpoint (its index in the pool) the request must go to, bypassing the route
    /// plugins: the one holding the stored response a Responses request continues
    /// (`stages/affinity.rs`). Every attempt goes there, since no other worker can serve it;
    /// while it is unavailable or full, none is made.
    pub pinned: Option<usize>,
}

/// An endpoint chosen for the next attempt, with the prompt blocks it was believed to hold.
struct Choice<'p> {
    index: usize,
    endpoint: &'p Arc<Endpoint>,
    held: u32,
}

/// The endpoint for the next attempt: the pinned one if it is available (tried or not), else
/// the route plugins' choice when they make one that is available and untried, otherwise the
/// host's least-in-flight choice. A failing router bound fail-closed refuses the request.
async fn choose<'p>(pool: &'p Pool, router: &Router<'_>, tried: &[usize]) -> Result<Option<Choice<'p>>, GatewayError> {
    let overlaps = if router.blocks.is_empty() { Vec::new() } else { pool.overlaps(router.blocks) };
    let held = |index: usize| overlaps.get(index).copied().unwrap_or(0);
    if let Some(index) = router.pinned {
        return Ok(pool.available(index, &[]).map(|(index, endpoint)| Choice { index, endpoint, held: held(index) }));
    }
    if router.chain.has(Hook::Route) {
        let candidates = pool.candidates(tried, &overlaps, prompt_blocks::BLOCK_TOKENS);
        match router.chain.route(router.tenant, router.request, &candidates).await {
            Ok(Some(id)) => {
                if let Some((index, endpoint)) = pool.available(id as usize, tried) {
                    return Ok(Some(Choice { index, endpoint, held: held(index) }));
                }
            }
            Ok(None) => {}
            Err(failure) => {
                return Err(GatewayError::PluginFailed {
                    plugin: failure.0.plugin().to_owned(),
                    kind: failure.0.kind(),
                });
            }
        }
    }
    Ok(pool.pick_with_room(tried).map(|(index, endpoint)| Choice { index, endpoint, held: held(index) }))
}

/// The endpoint for the next attempt and its in-flight slot; every endpoint considered joins
/// `tried`. One that filled up between the choice and the slot (another request took its last
/// one) is passed over for the next choice. The one taken is charged the prompt's uncached
/// tokens and is from then on believed to hold its blocks.
async fn acquire<'p>(
    pool: &'p Pool,
    router: &Router<'_>,
    tried: &mut Vec<usize>,
) -> Result<Option<(&'p Arc<Endpoint>, InFlightGuard)>, GatewayError> {
    while let Some(Choice { index, endpoint, held }) = choose(pool, router, tried).await? {
        tried.push(index);
        if let Some(mut guard) = endpoint.try_begin() {
            let cached = held.saturating_mul(prompt_blocks::BLOCK_TOKENS);
            guard.charge_prefill(u64::from(router.request.prompt_tokens.saturating_sub(cached)));
            pool.routed(index, router.blocks, held);
            return Ok(Some((endpoint, guard)));
        }
        if router.pinned.is_some() {
            // The one endpoint that can serve the request is full.
            break;
        }
    }
    Ok(None)
}

pub async fn run(
    pool: &Pool,
    router: &Router<'_>,
    metrics: &Metrics,
    ex: &mut Exchange,
    api: Api,
    body: &UpstreamBody,
) -> Result<Forwarded, GatewayError> {
    let config = &pool.config;
    let total_deadline = Instant::from_std(ex.start) + config.total_timeout;
    // What the request is billed for its prompt if the worker's usage never comes.
    ex.prompt_estimate = u64::from(router.request.prompt_tokens);
    // Dropped on every early return (the client gone included): the slot goes to the next.
    let mut permit = match &pool.queue {
        None => None,
        Some(queue) => {
            Some(queue.admit(router.tenant, router.priority, config.queue_timeout).await.map_err(|reason| {
                GatewayError::PoolSaturated { model: ex.model.to_string(), reason, waited: config.queue_timeout }
            })?)
        }
    };
    let mut tried: Vec<usize> = Vec::with_capacity(1 + config.max_retries as usize);
    let mut last: Option<Failure> = None;
    for attempt in 0..=config.max_retries {
        let Some((endpoint, mut guard)) = acquire(pool, router, &mut tried).await? else { break };
        if attempt > 0 {
            metrics.retry(&pool.name);
        }
        ex.attempts += 1;
        ex.endpoint = Some(endpoint.name.clone());
        match attempt_once(pool, endpoint, api, body, ex, total_deadline).await {
            Ok(reply) => {
                endpoint.record_success();
                // The first byte is back: the worker has computed the prompt.
                guard.prefill_done();
                guard.hold(permit.take());
                return Ok(Forwarded { reply, guard });
            }
            Err(AttemptError::Refused(error)) => {
                // The request or the gateway is at fault: no other endpoint would do better,
                // and this one is neither blamed (no passive ejection) nor credited.
                tracing::debug!(
                    request_id = ex.id(), endpoint = %endpoint.name, attempt,
                    %error, "not the worker's fault; not retried"
                );
                return Err(error);
            }
            Err(AttemptError::Failed(failure)) => {
                tracing::debug!(
                    request_id = ex.id(), endpoint = %endpoint.name, attempt,
                    reason = %failure.reason, "upstream attempt failed"
                );
                endpoint.record_failure(failure.kind);
                let out_of_time = Instant::now() >= total_deadline;
                last = Some(failure);
                if out_of_time {
                    break;
                }
            }
        }
    }
    let model = ex.model.to_string();
    Err(match last {
        // Admitted, yet every usable endpoint was full: the pool lost capacity meanwhile.
        None if permit.is_some() && pool.has_full_endpoint() => {
            GatewayError::PoolSaturated { model, reason: QueueRejection::QueueFull, waited: Duration::ZERO }
        }
        None => GatewayError::NoHealthyEndpoint { model },
        Some(Failure { timeout: Some(phase), .. }) => {
            let after = match phase {
                TimeoutPhase::FirstByte => config.first_byte_timeout,
                TimeoutPhase::Idle => config.idle_timeout,
                TimeoutPhase::Total => config.total_timeout,
            };
            GatewayError::UpstreamTimeout { model, phase, after }
        }
        Some(f) => GatewayError::Upstream { model, attempts: ex.attempts, reason: f.reason },
    })
}

async fn attempt_once(
    pool: &Pool,
    endpoint: &Endpoint,
    api: Api,
    body: &UpstreamBody,
    ex: &Exchange,
    total_deadline: Instant,
) -> Result<UpstreamReply, AttemptError> {
    let config = &pool.config;
    let mut request = Request::new(body.bytes.clone());
    *request.method_mut() = Method::POST;
    *request.uri_mut() = endpoint.uri(api).clone();
    let headers = request.headers_mut();
    headers.reserve(body.headers.len() + 3);
    for (name, value) in &body.headers {
        headers.append(name, value.clone());
    }
    let accept = if ex.stream { "text/event-stream" } else { "application/json" };
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(header::ACCEPT, HeaderValue::from_static(accept));
    headers.insert(X_REQUEST_ID, ex.request_id.clone());

    // Streams must show a first byte within `first_byte_timeout`; a whole response may take as
    // long as the generation does, up to the total timeout.
    let (first_deadline, first_phase) = first_byte_deadline(ex.stream, config.first_byte_timeout, total_deadline);
    let response = match timeout_at(first_deadline, pool.client.send(endpoint.http2, request)).await {
        Err(_) => return Err(Failure::timeout(first_phase).into()),
        Ok(Err(e @ SendError::Connect(_))) => return Err(Failure::new(FailureKind::Connect, e.to_string()).into()),
        Ok(Err(e @ SendError::Request(_))) => return Err(Failure::new(FailureKind::Stream, e.to_string()).into()),
        Ok(Err(SendError::Local(reason))) => {
            tracing::warn!(endpoint = %endpoint.name, %reason, "cannot open a connection to a worker");
            return Err(AttemptError::Refused(GatewayError::LocalResources { model: ex.model.to_string() }));
        }
        Ok(Err(SendError::TooLarge { size, .. })) => {
            return Err(AttemptError::Refused(GatewayError::UpstreamRefusedSize { model: ex.model.to_string(), size }));
        }
        Ok(Ok(response)) => response,
    };
    let status = response.status();
    let content_type = response.content_type().cloned();
    if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        // Drain briefly so an HTTP/1 connection can be reused; the body itself is not needed.
        let _ = tokio::time::timeout(Duration::from_millis(100), response.into_body().collect()).await;
        let kind = if status.is_server_error() { FailureKind::Status5xx } else { FailureKind::Overloaded };
        return Err(Failure::new(kind, format!("HTTP {}", status.as_u16())).into());
    }
    let mut incoming = response.into_body();
    if !status.is_success() || !ex.stream {
        let body = collect(&mut incoming, config.idle_timeout, total_deadline, body.answer_limit).await?;
        if status.is_success() && !is_json(&body) {
            return Err(Failure::new(FailureKind::Stream, "the answer is not a JSON document").into());
        }
        return Ok(UpstreamReply::Full { status, content_type, body });
    }
    loop {
        match within(|| (first_deadline, first_phase), incoming.frame()).await {
            Err(phase) => return Err(Failure::timeout(phase).into()),
            Ok(None) => return Err(Failure::new(FailureKind::Stream, "stream closed before any data").into()),
            Ok(Some(Err(e))) => {
                return Err(Failure::new(FailureKind::Stream, format!("stream broke before any data: {e}")).into());
            }
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data()
                    && !data.is_empty()
                {
                    if !first_event_plausible(&data) {
                        return Err(
                            Failure::new(FailureKind::Stream, "the stream's first event carries no JSON").into()
                        );
                    }
                    return Ok(UpstreamReply::Stream { content_type, incoming, first: data });
                }
            }
        }
    }
}

/// Whether a whole `2xx` answer is one JSON document. Every answer passes here, so nothing is
/// built: `IgnoredAny` only walks the bytes (see the `validate answer` bench).
pub fn is_json(body: &[u8]) -> bool {
    serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok()
}

/// Whether the first frame of a stream can start a valid event stream: its first complete event
/// carries JSON data or `[DONE]` (checked by `relay::plausible_data`), or the frame holds no
/// complete event yet (the relay judges the rest). An event without data (a comment, a
/// keep-alive) is skipped.
fn first_event_plausible(first: &[u8]) -> bool {
    let mut parser = SseParser::new(MAX_EVENT_BYTES);
    parser.push(first);
    loop {
        match parser.next_event() {
            Ok(Some(event)) if event.is_done() => return true,
            Ok(Some(SseEvent { data: Some(data), .. })) => return plausible_data(&data),
            Ok(Some(_)) => {}
            Ok(None) => return true,
            Err(_) => return false,
        }
    }
}

fn first_byte_deadline(stream: bool, first_byte: Duration, total_deadline: Instant) -> (Instant, TimeoutPhase) {
    if stream {
        let first = Instant::now() + first_byte;
        if first < total_deadline {
            return (first, TimeoutPhase::FirstByte);
        }
    }
    (total_deadline, TimeoutPhase::Total)
}

/// The deadline for the next piece of a body: `idle` from now, or the total deadline if that
/// comes first.
fn idle_deadline(idle: Duration, total_deadline: Instant) -> (Instant, TimeoutPhase) {
    let idle_deadline = Instant::now() + idle;
    if idle_deadline < total_deadline {
        (idle_deadline, TimeoutPhase::Idle)
    } else {
        (total_deadline, TimeoutPhase::Total)
    }
}

/// Awaits `future`, giving up with the phase at the deadline `deadline` names. A future that is
/// ready at once (the pieces of a whole response usually are: they came in with its head)
/// reads no clock and arms no timer; a tokio timer reads the clock and takes the runtime's
/// handle when it is made, whether or not it is ever polled.
async fn within<F: Future>(
    deadline: impl FnOnce() -> (Instant, TimeoutPhase),
    future: F,
) -> Result<F::Output, TimeoutPhase> {
    let mut future = pin!(future);
    let first = poll_fn(|cx| Poll::Ready(future.as_mut().poll(cx))).await;
    if let Poll::Ready(output) = first {
        return Ok(output);
    }
    let (at, phase) = deadline();
    timeout_at(at, future).await.map_err(|_| phase)
}

/// Reads a whole answer, refusing one larger than `limit` (see `prepare::answer_limit`) rather
/// than buffering it.
async fn collect(
    incoming: &mut WorkerBody,
    idle: Duration,
    total_deadline: Instant,
    limit: usize,
) -> Result<Bytes, Failure> {
    // A whole response usually arrives as one piece, which is kept as it is; more are copied
    // together.
    let mut first: Option<Bytes> = None;
    let mut buf = BytesMut::new();
    loop {
        match within(|| idle_deadline(idle, total_deadline), incoming.frame()).await {
            Err(phase) => return Err(Failure::timeout(phase)),
            Ok(None) if buf.is_empty() => return Ok(first.unwrap_or_default()),
            Ok(None) => return Ok(buf.freeze()),
            Ok(Some(Err(e))) => return Err(Failure::new(FailureKind::Stream, format!("response body broke: {e}"))),
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    let held = first.as_ref().map_or(0, Bytes::len) + buf.len();
                    if held + data.len() > limit {
                        return Err(Failure::new(
                            FailureKind::Stream,
                            format!("answer larger than the {limit} bytes the request could need"),
                        ));
                    }
                    match first.take() {
                        None if buf.is_empty() => first = Some(data),
                        held => {
                            buf.extend_from_slice(&held.unwrap_or_default());
                            buf.extend_from_slice(&data);
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::time::Duration;

    use tokio::sync::oneshot;
    use tokio::time::Instant;

    use super::{first_event_plausible, is_json, within};
    use crate::error::TimeoutPhase;

    #[tokio::test]
    async fn a_ready_future_never_asks_for_its_deadline() {
        let asked = Cell::new(false);
        let deadline = || {
            asked.set(true);
            (Instant::now(), TimeoutPhase::Idle)
        };
        assert_eq!(within(deadline, async { 7 }).await, Ok(7));
        assert!(!asked.get());
    }

    #[tokio::test]
    async fn a_future_that_never_finishes_fails_with_its_phase() {
        let deadline = || (Instant::now() + Duration::from_millis(5), TimeoutPhase::Total);
        assert_eq!(within(deadline, std::future::pending::<()>()).await, Err(TimeoutPhase::Total));
    }

    #[tokio::test]
    async fn a_future_that_finishes_later_is_awaited() {
        let (tx, rx) = oneshot::channel();
        let send = tokio::spawn(async move { tx.send(3) });
        let deadline = || (Instant::now() + Duration::from_secs(60), TimeoutPhase::Idle);
        assert_eq!(within(deadline, rx).await.map(Result::ok), Ok(Some(3)));
        assert!(matches!(send.await, Ok(Ok(()))));
    }

    #[test]
    fn only_a_whole_json_document_is_an_answer() {
        assert!(is_json(br#"{"choices":[{"message":{"content":"hi"}}]}"#));
        assert!(is_json(b" {} \n"));
        assert!(!is_json(b"<html>502 Bad Gateway</html>"));
        assert!(!is_json(br#"{"choices":[{"message":{"#));
        assert!(!is_json(b"{} trailing"));
        assert!(!is_json(b""));
        assert!(!is_json(&[0xff, 0xfe, 0x00]));
    }

    #[test]
    fn a_first_frame_is_judged_by_its_first_event_with_data() {
        assert!(first_event_plausible(b"data: {\"choices\":[]}\n\n"));
        assert!(first_event_plausible(b": keep-alive\n\ndata: {}\n\n"));
        assert!(first_event_plausible(b"data: [DONE]\n\n"));
        // Not a complete event yet: the relay judges the rest.
        assert!(first_event_plausible(b"data: {\"choi"));
        assert!(!first_event_plausible(b"data: <html>\n\n"));
        assert!(!first_event_plausible(b": keep-alive\n\ndata: oops\n\n"));
    }
}
