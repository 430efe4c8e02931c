//! The on-request plugin chain: after parsing, before the model is resolved. Plugins may let
//! the request through (possibly with headers for the worker, another model or another body),
//! answer it themselves, or deny it. A failing plugin bound fail-closed refuses the request.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode, header};
use sluice_metrics::Api;
use sluice_openai::request::Prompt;
use sluice_plugin_host::types::{self, BodySummary, RequestInfo, RouteRequest};
use sluice_plugin_host::{BodyResource, CacheIntent, CacheSlot, Chain, Hook, RequestVerdict, RequestView};
use sluice_routing::BlockHash;

use crate::body::ResponseBody;
use crate::error::GatewayError;
use crate::exchange::{Exchange, X_REQUEST_ID};
use crate::prompt_blocks;
use crate::stages::parse::{self, ParsedRequest};

pub enum PolicyOutcome {
    /// Go on with this request and these extra headers for the worker, using the response
    /// cache as the plugins asked.
    Continue {
        parsed: ParsedRequest,
        body: Bytes,
        headers: Vec<(HeaderName, HeaderValue)>,
        cache: Option<Box<CacheIntent>>,
    },
    /// A plugin answered.
    Respond(Response<ResponseBody>),
}

/// What the plugins see of the request.
pub fn request_info(ex: &Exchange, api: Api, parsed: &ParsedRequest, body_len: usize) -> RequestInfo {
    let (tenant, key_id) = ex
        .key
        .as_ref()
        .map_or_else(|| (String::new(), String::new()), |k| (k.tenant.name.to_string(), k.key_id.to_string()));
    let prompts = |p: &Prompt| u32::try_from(p.len()).unwrap_or(u32::MAX);
    let summary = match parsed {
        ParsedRequest::Chat(r) => BodySummary {
            message_count: u32::try_from(r.messages.len()).unwrap_or(u32::MAX),
            token_estimate: 0,
            stream: r.is_stream(),
            max_tokens: r.max_completion_tokens.or(r.max_tokens),
            temperature: r.temperature.map(|t| t as f32),
            user: r.user.clone(),
        },
        ParsedRequest::Completion(r) => BodySummary {
            message_count: prompts(&r.prompt),
            token_estimate: 0,
            stream: r.is_stream(),
            max_tokens: r.max_tokens,
            temperature: r.temperature.map(|t| t as f32),
            user: r.user.clone(),
        },
        ParsedRequest::Embedding(r) => BodySummary {
            message_count: prompts(&r.input),
            token_estimate: 0,
            stream: false,
            max_tokens: None,
            temperature: None,
            user: r.user.clone(),
        },
        // Input items (Responses) or messages (Messages) stand for a chat's messages.
        ParsedRequest::Agent(r) => BodySummary {
            message_count: u32::try_from(r.items).unwrap_or(u32::MAX),
            token_estimate: 0,
            stream: r.stream,
            max_tokens: r.output_limit,
            temperature: r.temperature.map(|t| t as f32),
            user: r.user.clone(),
        },
    };
    RequestInfo {
        request_id: ex.request_id.to_str().unwrap_or_default().to_owned(),
        tenant,
        key_id,
        model: parsed.model().to_owned(),
        api: wit_api(api),
        // Bytes / 4 until the host tokenizes.
        summary: BodySummary { token_estimate: u32::try_from(body_len / 4).unwrap_or(u32::MAX), ..summary },
    }
}

/// Whether some on-request plugin runs for this request: when none does, the request costs
/// nothing here and holds no limits.
pub fn runs(chain: &Chain, ex: &Exchange, parsed: &ParsedRequest) -> bool {
    let tenant = ex.key.as_ref().map_or("", |k| &k.tenant.name);
    chain.runs(Hook::OnRequest, tenant, parsed.model())
}

pub async fn run(
    chain: &Chain,
    ex: &Exchange,
    api: Api,
    parsed: ParsedRequest,
    headers: &mut HeaderMap,
    body: Bytes,
) -> Result<PolicyOutcome, GatewayError> {
    if !runs(chain, ex, &parsed) {
        return Ok(PolicyOutcome::Continue { parsed, body, headers: Vec::new(), cache: None });
    }
    // Lent to the plugins, not copied: the host withholds the credentials from them, and the
    // map comes back as they left it.
    let shared = Arc::new(std::mem::take(headers));
    let mut view = RequestView {
        info: request_info(ex, api, &parsed, body.len()),
        headers: shared,
        body: BodyResource::new(body.clone()),
        limits: ex.limits.clone(),
        cache: chain.caches().then(CacheSlot::new),
    };
    if let Some(limits) = &view.limits {
        limits.set_prompt_estimate(u64::from(view.info.summary.token_estimate));
    }
    let verdict = chain.on_request(&mut view).await;
    *headers = Arc::try_unwrap(view.headers).unwrap_or_else(|shared| (*shared).clone());
    let verdict = verdict.map_err(|failure| GatewayError::PluginFailed {
        plugin: failure.0.plugin().to_owned(),
        kind: failure.0.kind(),
    })?;
    let cache = view.cache.as_ref().and_then(|slot| slot.take()).map(Box::new);
    match verdict {
        RequestVerdict::Continue(edits) => {
            if edits.model.is_none() && edits.body.is_none() {
                return Ok(PolicyOutcome::Continue { parsed, body, headers: edits.set_headers, cache });
            }
            // Another body and/or model: parse again, so the rest of the pipeline sees exactly
            // what the worker will.
            let mut body = edits.body.unwrap_or(body);
            if let Some(model) = edits.model {
                body = with_model(&body, &model)?;
            }
            let parsed = parse::run(api, &body)?;
            Ok(PolicyOutcome::Continue { parsed, body, headers: edits.set_headers, cache })
        }
        RequestVerdict::Respond { plugin, response } => {
            let mut reply = Response::new(ResponseBody::full(response.body));
            *reply.status_mut() = StatusCode::from_u16(response.status).unwrap_or(StatusCode::OK);
            for h in response.headers {
                if let (Ok(name), Ok(value)) = (HeaderName::try_from(h.name), HeaderValue::try_from(h.value)) {
                    reply.headers_mut().append(name, value);
                }
            }
            if !reply.headers().contains_key(header::CONTENT_TYPE) {
                reply.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            }
            reply.headers_mut().insert(X_REQUEST_ID, ex.request_id.clone());
            tracing::debug!(request_id = ex.id(), %plugin, "answered by a plugin");
            Ok(PolicyOutcome::Respond(reply))
        }
        RequestVerdict::Deny { plugin, denial } => Err(GatewayError::PolicyDenied {
            plugin: plugin.to_string(),
            status: denial.status,
            message: denial.message,
        }),
    }
}

fn with_model(body: &Bytes, model: &str) -> Result<Bytes, GatewayError> {
    let mut value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| GatewayError::Internal(format!("a plugin's body is not JSON: {e}")))?;
    let Some(object) = value.as_object_mut() else {
        return Err(GatewayError::Internal("a plugin's body is not a JSON object".to_owned()));
    };
    object.insert("model".to_owned(), serde_json::Value::String(model.to_owned()));
    serde_json::to_vec(&value)
        .map(Bytes::from)
        .map_err(|e| GatewayError::Internal(format!("re-serialising a plugin's body: {e}")))
}

fn wit_api(api: Api) -> types::Api {
    match api {
        Api::ChatCompletions => types::Api::ChatCompletions,
        Api::Completions => types::Api::Completions,
        Api::Embeddings => types::Api::Embeddings,
        Api::Responses => types::Api::Responses,
        Api::Messages => types::Api::Messages,
    }
}

/// Request headers agent harnesses send to name a session, in the order they are looked at;
/// parsed once, since the lookup runs for every routed request.
static SESSION_HEADERS: [HeaderName; 3] = [
    HeaderName::from_static("x-session-affinity"),
    HeaderName::from_static("session-id"),
    HeaderName::from_static("x-claude-code-session-id"),
];

/// The session a request belongs to, for routing affinity: the first session header, else
/// the body's `user`.
fn session(headers: &HeaderMap, parsed: &ParsedRequest) -> Option<String> {
    SESSION_HEADERS
        .iter()
        .find_map(|name| headers.get(name).and_then(|v| v.to_str().ok()).filter(|v| !v.is_empty()))
        .map(str::to_owned)
        .or_else(|| match parsed {
            ParsedRequest::Chat(r) => r.user.clone(),
            ParsedRequest::Completion(r) => r.user.clone(),
            ParsedRequest::Embedding(r) => r.user.clone(),
            ParsedRequest::Agent(r) => r.user.clone(),
        })
}

/// Who is asking, for the route plugins; the host's own choice needs none of it.
pub struct Asker<'a> {
    pub tenant: &'a str,
    pub api: Api,
    pub headers: &'a HeaderMap,
}

/// What the route plugins are told about the request (the fields of `sluice-routing`'s
/// `RequestSummary`), with its prompt's block hashes (`prompt_blocks`, empty when `blocks` is
/// empty). The gateway does not tokenize yet: the prompt size is the bytes / 4 estimate.
/// Without an `asker` (no route plugin runs) the tenant is empty and there is no session.
pub fn route_request(
    parsed: &ParsedRequest,
    body_len: usize,
    blocks: &[BlockHash],
    asker: Option<Asker<'_>>,
) -> RouteRequest {
    let max_output_tokens = match parsed {
        ParsedRequest::Chat(r) => r.max_completion_tokens.or(r.max_tokens),
        ParsedRequest::Completion(r) => r.max_tokens,
        ParsedRequest::Embedding(_) => None,
        ParsedRequest::Agent(r) => r.output_limit,
    };
    RouteRequest {
        tenant: asker.as_ref().map(|a| a.tenant.to_owned()).unwrap_or_default(),
        api: asker.as_ref().map_or(types::Api::ChatCompletions, |a| wit_api(a.api)),
        session: asker.as_ref().and_then(|a| session(a.headers, parsed)),
        model: parsed.model().to_owned(),
        prompt_tokens: u32::try_from(body_len / 4).unwrap_or(u32::MAX),
        block_size: prompt_blocks::BLOCK_TOKENS,
        block_hashes: blocks.iter().map(|b| b.0).collect(),
        max_output_tokens,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use sluice_plugin_host::{BindingSpec, Capabilities, EngineSettings, HostSettings, PluginHost, PluginSource};

    use super::*;
    use crate::exchange::Sinks;

    #[test]
    fn route_plugins_are_told_the_tenant_api_and_session() {
        let body = Bytes::from_static(br#"{"model":"m","messages":[{"role":"user","content":"hi"}],"user":"u-7"}"#);
        let parsed = parse::run(Api::ChatCompletions, &body).unwrap();
        let mut headers = HeaderMap::new();
        let ask = |headers: &HeaderMap| {
            route_request(&parsed, body.len(), &[], Some(Asker { tenant: "acme", api: Api::Messages, headers }))
        };
        let told = ask(&headers);
        assert_eq!(
            (told.tenant.as_str(), told.api, told.session.as_deref()),
            ("acme", types::Api::Messages, Some("u-7"))
        );
        // A session header wins over the body's user; the first one listed wins over the others.
        headers.insert("x-claude-code-session-id", HeaderValue::from_static("claude-1"));
        assert_eq!(ask(&headers).session.as_deref(), Some("claude-1"));
        headers.insert("x-session-affinity", HeaderValue::from_static("pinned"));
        assert_eq!(ask(&headers).session.as_deref(), Some("pinned"));
        // Without route plugins nobody reads them.
        let bare = route_request(&parsed, body.len(), &[], None);
        assert_eq!((bare.tenant.as_str(), bare.session), ("", None));
    }

    #[tokio::test]
    async fn plugins_never_see_the_api_key() {
        let settings = HostSettings {
            engine: EngineSettings { max_instances: 8, max_memory_bytes: 16 << 20, ..EngineSettings::default() },
            cache_dir: None,
            ..HostSettings::default()
        };
        let host = PluginHost::new(settings, &prometheus::Registry::new()).unwrap();
        let spec = BindingSpec {
            capabilities: Capabilities::all(),
            config_json: r#"{"mode":"headers"}"#.into(),
            limits: sluice_plugin_host::CallLimits {
                timeout: std::time::Duration::from_millis(100),
                memory_bytes: 8 << 20,
            },
            ..BindingSpec::new("g", PluginSource::Bytes(Arc::from(sluice_plugin_host::testing::TEST_GUEST)))
        };
        host.load_and_activate(spec).unwrap();
        let gauge = prometheus::IntGauge::new("g", "g").unwrap();
        let ex = Exchange::begin(Instant::now(), &HeaderMap::new(), Sinks::default(), &gauge);
        let body = Bytes::from_static(br#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#);
        let parsed = parse::run(Api::ChatCompletions, &body).unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer sk-secret-123"));
        headers.insert("x-api-key", HeaderValue::from_static("sk-secret-456"));
        headers.insert("x-echo", HeaderValue::from_static("seen"));
        let outcome = run(&host.chain(), &ex, Api::ChatCompletions, parsed, &mut headers, body).await.unwrap();
        let PolicyOutcome::Continue { headers: sent, .. } = outcome else { panic!("expected continue") };
        let get = |name: &str| sent.iter().find(|(n, _)| n == name).map(|(_, v)| v.to_str().unwrap().to_owned());
        assert_eq!(get("x-echoed").as_deref(), Some("seen"));
        assert_eq!(get("x-header-count").as_deref(), Some("1"), "authorization and x-api-key were withheld");
        assert!(
            headers.contains_key(header::AUTHORIZATION) && headers.contains_key("x-api-key"),
            "the request's headers come back from the plugins"
        );
        assert_eq!(get("x-prompt").as_deref(), Some("hi"));
    }
}
