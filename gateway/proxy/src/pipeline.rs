//! The order of the stages, and nothing else. Each stage lives in `crate::stages`.
//!
//! classify → authenticate → read body → parse → policy (on-request plugins) → resolve model →
//! serves API (the pool's `apis`; a Messages request may go through chat) → admit (the
//! tenant's model allow-list) → response cache (a hit answers here) → affinity (a Responses
//! follow-up is pinned to the worker holding its predecessor) → prepare upstream body →
//! forward (the pool's fair admission queue when it is saturated, route plugins pick the
//! endpoint unless it is pinned, retry before first byte) → respond (buffered, or the streaming
//! relay).

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use sluice_metrics::{Api, Outcome};
use sluice_plugin_host::{Hook, RequestLimits};

use crate::Gateway;
use crate::anthropic_errors;
use crate::body::ResponseBody;
use crate::error::GatewayError;
use crate::exchange::{Completion, Exchange};
use crate::prompt_blocks;
use crate::relay::RelayLimits;
use crate::stages::classify::Route;
use crate::stages::policy::{self, PolicyOutcome};
use crate::stages::serves_api::Served;
use crate::stages::{
    admit, affinity, authenticate, cache, classify, forward, parse, prepare, read_body, resolve, respond, serves_api,
};

pub async fn handle<B>(gateway: &Gateway, request: Request<B>) -> Response<ResponseBody>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let start = Instant::now();
    let mut ex = Exchange::begin(start, request.headers(), gateway.sinks.clone(), gateway.metrics.in_flight());
    // Anthropic's clients read errors in Anthropic's shape, whoever refused the request.
    let anthropic = request.uri().path() == Api::Messages.path();
    let step = run(gateway, &mut ex, request).await;
    // The headers the rate limiter asked for (`x-ratelimit-*`), on whatever the answer is.
    let limits = ex.limits.clone();
    let mut cache_headers = http::HeaderMap::new();
    if let Some(cache) = &ex.cache {
        cache.apply_headers(&mut cache_headers);
    }
    let mut response = match step {
        Ok(Step::Models(response)) => response,
        Ok(Step::Cached(hit)) => {
            ex.finish(hit.completion);
            hit.response
        }
        Ok(Step::Local(response)) => {
            let status = response.status().as_u16();
            ex.finish(Completion { status, outcome: Some(local_outcome(status)), ..Completion::default() });
            response
        }
        Ok(Step::Reply(forwarded, strip_usage, limits)) => {
            let reply = respond::run(ex, forwarded, strip_usage, limits).await;
            if let Some((ex, completion)) = reply.completion {
                ex.finish(completion);
            }
            reply.response
        }
        Err(error) => ex.fail(error),
    };
    if let Some(limits) = limits {
        limits.apply_response_headers(response.headers_mut());
    }
    response.headers_mut().extend(cache_headers);
    if anthropic {
        anthropic_errors::reshape(&mut response);
    }
    response
}

/// What a plugin's local answer counts as: a `429` is a limit (the rate limiter's refusals), any
/// other error status a refusal of the client's request, anything else an answer.
fn local_outcome(status: u16) -> Outcome {
    match status {
        429 => Outcome::RateLimited,
        400..=499 => Outcome::ClientError,
        500..=599 => Outcome::Unavailable,
        _ => Outcome::Ok,
    }
}

enum Step {
    Models(Response<ResponseBody>),
    /// Answered by a plugin.
    Local(Response<ResponseBody>),
    /// Answered from the response cache.
    Cached(cache::Hit),
    Reply(forward::Forwarded, bool, RelayLimits),
}

async fn run<B>(gateway: &Gateway, ex: &mut Exchange, request: Request<B>) -> Result<Step, GatewayError>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let route = classify::run(request.method(), request.uri().path())?;
    let accept_x_api_key = route == Route::Inference(Api::Messages);
    let key = authenticate::run(&gateway.directory, request.headers(), accept_x_api_key)?;
    let tenant = Arc::clone(&key.tenant);
    ex.key = Some(key);
    let api = match route {
        Route::Models => return Ok(Step::Models(gateway.models_response(&ex.request_id, &tenant))),
        Route::Inference(api) => api,
    };
    ex.api = Some(api);

    let before_read = Instant::now();
    ex.overhead += before_read - ex.start;
    let (mut parts, body) = request.into_parts();
    let limits = read_body::BodyLimits {
        max_bytes: gateway.max_body_bytes,
        budget: &gateway.body_budget,
        tenant: &tenant.name,
        timeout: gateway.body_timeout,
    };
    // Held until the request's body and what was made of it are dropped, at the end of `run`.
    let (body, _body_reservation) = read_body::run(&parts.headers, body, limits).await?;
    let after_read = Instant::now();

    let parsed = parse::run(api, &body)?;
    // One chain for the whole request: a hot swap never mixes plugin versions within it.
    let chain = gateway.plugins.chain();
    if policy::runs(&chain, ex, &parsed) {
        ex.limits = Some(RequestLimits::new(Arc::clone(&gateway.plugins.services().limits)));
    }
    let (parsed, body, plugin_headers, cache_intent) =
        match policy::run(&chain, ex, api, parsed, &mut parts.headers, body).await? {
            PolicyOutcome::Continue { parsed, body, headers, cache } => (parsed, body, headers, cache),
            PolicyOutcome::Respond(response) => return Ok(Step::Local(response)),
        };
    ex.stream = parsed.is_stream();
    if [Hook::OnResponseHeaders, Hook::OnResponseChunk, Hook::OnResponseDone].into_iter().any(|h| chain.has(h)) {
        ex.plugins = Some((Arc::clone(&chain), policy::request_info(ex, api, &parsed, body.len())));
    }
    let upstreams = gateway.upstreams();
    let pool = resolve::run(&upstreams, parsed.model())?;
    let served = serves_api::run(pool, api, parsed.model())?;
    admit::run(ex.key.as_ref(), parsed.model())?;
    // The label is the configured name, so only served models ever become metric labels.
    if let Some(model) = pool.models.iter().find(|m| ***m == *parsed.model()) {
        ex.model = model.clone();
    }
    ex.pool = Some(pool.name.clone());
    if let Some(intent) = cache_intent
        && let Some(hit) =
            cache::run(&gateway.response_cache, gateway.plugins.services().io(), *intent, ex, api, &parsed, &body).await
    {
        return Ok(Step::Cached(hit));
    }
    // A Responses follow-up goes to the worker holding its previous response.
    let pinned = affinity::run(&gateway.response_affinity, ex, pool, &parsed).await;
    // Hashed only for route plugins: the host's own choice does not look at prefixes.
    let blocks = if chain.has(Hook::Route) { prompt_blocks::hashes(&parsed) } else { Vec::new() };
    let asker = chain.has(Hook::Route).then(|| policy::Asker {
        tenant: ex.key.as_ref().map_or("", |k| &k.tenant.name),
        api,
        headers: &parts.headers,
    });
    let route_request = policy::route_request(&parsed, body.len(), &blocks, asker);
    let mut upstream_body = prepare::run(parsed, body)?;
    upstream_body.headers = plugin_headers;
    // The API the worker is asked in.
    let worker_api = match served {
        Served::Natively => {
            upstream_body.headers.extend(prepare::passthrough_headers(api, &parts.headers));
            api
        }
        Served::ThroughChat => {
            upstream_body.bytes = prepare::messages_to_chat(&upstream_body.bytes)?;
            ex.through_chat = true;
            Api::ChatCompletions
        }
    };
    ex.overhead += after_read.elapsed();

    let tenant = ex.key.as_ref().map(|k| Arc::clone(&k.tenant.name)).unwrap_or_else(|| Arc::from(""));
    let priority = ex.key.as_ref().map(|k| k.tenant.priority).unwrap_or_default();
    let router =
        forward::Router { chain: &chain, tenant: &tenant, priority, request: &route_request, blocks: &blocks, pinned };
    let forwarded = forward::run(pool, &router, &gateway.metrics, ex, worker_api, &upstream_body).await?;
    let limits = RelayLimits {
        idle: pool.config.idle_timeout,
        total_deadline: tokio::time::Instant::from_std(ex.start) + pool.config.total_timeout,
    };
    Ok(Step::Reply(forwarded, upstream_body.strip_usage, limits))
}
