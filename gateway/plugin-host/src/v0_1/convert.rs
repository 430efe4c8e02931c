//! What a 0.1.0 component's hooks are given and answer, converted from and to the current
//! types.

use super::types as old;
use crate::bindings::types as now;

pub fn request_info(info: &now::RequestInfo) -> old::RequestInfo {
    let s = &info.summary;
    old::RequestInfo {
        request_id: info.request_id.clone(),
        tenant: info.tenant.clone(),
        key_id: info.key_id.clone(),
        model: info.model.clone(),
        api: api(info.api),
        summary: old::BodySummary {
            message_count: s.message_count,
            token_estimate: s.token_estimate,
            stream: s.stream,
            max_tokens: s.max_tokens,
            temperature: s.temperature,
            user: s.user.clone(),
        },
    }
}

/// 0.1.0 has no cases for the agents' APIs: its components always saw them as chat
/// completions, which is what they are to a limit or a router (a conversation in, text out).
fn api(api: now::Api) -> old::Api {
    match api {
        now::Api::ChatCompletions | now::Api::Responses | now::Api::Messages => old::Api::ChatCompletions,
        now::Api::Completions => old::Api::Completions,
        now::Api::Embeddings => old::Api::Embeddings,
    }
}

pub fn route_request(request: &now::RouteRequest) -> old::RouteRequest {
    old::RouteRequest {
        model: request.model.clone(),
        prompt_tokens: request.prompt_tokens,
        block_size: request.block_size,
        block_hashes: request.block_hashes.clone(),
        max_output_tokens: request.max_output_tokens,
    }
}

pub fn candidates(candidates: &[now::Candidate]) -> Vec<old::Candidate> {
    candidates
        .iter()
        .map(|c| old::Candidate {
            id: c.id,
            stats: old::CandidateStats {
                in_flight_requests: c.stats.in_flight_requests,
                in_flight_prefill_tokens: c.stats.in_flight_prefill_tokens,
                metrics: c.stats.metrics.as_ref().map(|m| old::EngineMetrics {
                    running: m.running,
                    waiting: m.waiting,
                    kv_usage: m.kv_usage,
                    prefix_cache_hit_rate: m.prefix_cache_hit_rate,
                }),
                health: match c.stats.health {
                    now::Health::Healthy => old::Health::Healthy,
                    now::Health::Degraded => old::Health::Degraded,
                    now::Health::Unhealthy => old::Health::Unhealthy,
                },
            },
            overlap: old::PrefixOverlap { blocks: c.overlap.blocks, tokens: c.overlap.tokens },
        })
        .collect()
}

pub fn response_chunk(chunk: &now::ResponseChunk) -> old::ResponseChunk {
    old::ResponseChunk { stream: chunk.stream, index: chunk.index, data: chunk.data.clone() }
}

pub fn response_done(done: &now::ResponseDone) -> old::ResponseDone {
    old::ResponseDone {
        status: done.status,
        outcome: match done.outcome {
            now::Outcome::Ok => old::Outcome::Ok,
            now::Outcome::ClientError => old::Outcome::ClientError,
            now::Outcome::UpstreamError => old::Outcome::UpstreamError,
            now::Outcome::UpstreamTimeout => old::Outcome::UpstreamTimeout,
            now::Outcome::Unavailable => old::Outcome::Unavailable,
            now::Outcome::Cancelled => old::Outcome::Cancelled,
            now::Outcome::InternalError => old::Outcome::InternalError,
        },
        usage: done.usage.as_ref().map(|u| old::Usage {
            prompt_tokens: u.prompt_tokens,
            cached_tokens: u.cached_tokens,
            completion_tokens: u.completion_tokens,
        }),
        ttft_ns: done.ttft_ns,
        tpot_ns: done.tpot_ns,
        e2e_ns: done.e2e_ns,
        endpoint: done.endpoint.clone(),
    }
}

fn headers(headers: Vec<old::Header>) -> Vec<now::Header> {
    headers.into_iter().map(|h| now::Header { name: h.name, value: h.value }).collect()
}

pub fn request_decision(decision: old::RequestDecision) -> now::RequestDecision {
    match decision {
        old::RequestDecision::Continue => now::RequestDecision::Continue,
        old::RequestDecision::ContinueWith(c) => now::RequestDecision::ContinueWith(now::RequestChanges {
            set_headers: headers(c.set_headers),
            remove_headers: c.remove_headers,
            model: c.model,
            body: c.body,
        }),
        old::RequestDecision::Respond(r) => now::RequestDecision::Respond(now::LocalResponse {
            status: r.status,
            headers: headers(r.headers),
            body: r.body,
        }),
        old::RequestDecision::Deny(d) => {
            now::RequestDecision::Deny(now::Denial { status: d.status, message: d.message })
        }
    }
}

pub fn route_decision(decision: old::RouteDecision) -> now::RouteDecision {
    match decision {
        old::RouteDecision::Route(id) => now::RouteDecision::Route(id),
        old::RouteDecision::Abstain => now::RouteDecision::Abstain,
    }
}

pub fn response_changes(changes: old::ResponseChanges) -> now::ResponseChanges {
    now::ResponseChanges { set_headers: headers(changes.set_headers), remove_headers: changes.remove_headers }
}

pub fn chunk_decision(decision: old::ChunkDecision) -> now::ChunkDecision {
    match decision {
        old::ChunkDecision::Forward => now::ChunkDecision::Forward,
        old::ChunkDecision::Replace(text) => now::ChunkDecision::Replace(text),
        old::ChunkDecision::Drop => now::ChunkDecision::Drop,
    }
}
