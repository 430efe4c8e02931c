//! The bound plugins in order, and how a request runs through them. A request takes one
//! [`Chain`] snapshot when it starts and uses it for every hook, so a hot swap never mixes
//! versions within a request.

use std::sync::Arc;

use bytes::Bytes;
use http::HeaderMap;
use http::header::{HeaderName, HeaderValue};

use crate::binding::{Binding, FailurePolicy};
use crate::bindings::types::{
    Candidate, ChunkDecision, Denial, LocalResponse, RequestDecision, RequestInfo, ResponseChunk, ResponseDone,
    RouteDecision, RouteRequest,
};
use crate::error::PluginError;
use crate::limits::RequestLimits;
use crate::loader::Hook;
use crate::resources::BodyResource;
use crate::response_cache::CacheSlot;

/// The plugins bound to the gateway, ordered by `order` (then name).
#[derive(Debug, Default)]
pub struct Chain {
    bindings: Vec<Arc<Binding>>,
    has: [bool; Hook::COUNT],
    /// Per hook: whether some binding exporting it calls asynchronously (it may wait on I/O).
    waits: [bool; Hook::COUNT],
    /// Whether some on-request binding is granted `response-cache`.
    caches: bool,
}

/// The request as the on-request hooks see it, with the changes made so far applied.
#[derive(Debug, Clone)]
pub struct RequestView {
    pub info: RequestInfo,
    pub headers: Arc<HeaderMap>,
    pub body: BodyResource,
    /// The request's `limits` holds, which end when the request does.
    pub limits: Option<Arc<RequestLimits>>,
    /// What the plugins ask of the response cache (when some binding is granted it).
    pub cache: Option<Arc<CacheSlot>>,
}

/// What the on-request hooks changed, to apply to the upstream request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RequestEdits {
    pub set_headers: Vec<(HeaderName, HeaderValue)>,
    pub remove_headers: Vec<HeaderName>,
    pub model: Option<String>,
    pub body: Option<Bytes>,
}

impl RequestEdits {
    pub fn is_empty(&self) -> bool {
        *self == RequestEdits::default()
    }
}

/// The on-request chain's verdict.
#[derive(Debug)]
pub enum RequestVerdict {
    Continue(RequestEdits),
    Respond { plugin: Arc<str>, response: LocalResponse },
    Deny { plugin: Arc<str>, denial: Denial },
}

/// What the on-response-chunk hooks made of a chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkVerdict {
    Forward,
    /// Send this JSON text instead.
    Replace(String),
    /// Send nothing for this stream event.
    Drop,
}

/// A plugin failed and its binding is fail-closed: the request must be refused.
#[derive(Debug, Clone, thiserror::Error)]
#[error(transparent)]
pub struct ChainFailure(pub PluginError);

impl Chain {
    pub fn new(mut bindings: Vec<Arc<Binding>>) -> Self {
        bindings.sort_by(|a, b| a.order.cmp(&b.order).then_with(|| a.name.cmp(&b.name)));
        let mut has = [false; Hook::COUNT];
        let mut waits = [false; Hook::COUNT];
        for hook in Hook::ALL {
            has[hook.index()] = bindings.iter().any(|b| b.exports(hook));
            waits[hook.index()] = bindings.iter().any(|b| b.exports(hook) && b.version.calls_async);
        }
        let caches = bindings
            .iter()
            .any(|b| b.exports(Hook::OnRequest) && b.grants().has(crate::capability::Capability::ResponseCache));
        Chain { bindings, has, waits, caches }
    }

    pub fn bindings(&self) -> &[Arc<Binding>] {
        &self.bindings
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Binding>> {
        self.bindings.iter().find(|b| &*b.name == name)
    }

    /// Whether any bound plugin exports `hook` (callers skip building inputs when not).
    pub fn has(&self, hook: Hook) -> bool {
        self.has[hook.index()]
    }

    /// Whether some plugin exporting `hook` runs for a request of `tenant` for `model` (a
    /// tenant a limiter bound only for limited tenants skips, say): when none does, callers skip
    /// building its inputs.
    pub fn runs(&self, hook: Hook, tenant: &str, model: &str) -> bool {
        self.has(hook) && self.with(hook, tenant, model).next().is_some()
    }

    /// Whether some on-request plugin may use the response cache: only then does a request
    /// need a [`CacheSlot`].
    pub fn caches(&self) -> bool {
        self.caches
    }

    /// Whether running `hook` may wait on I/O. When not, its future completes on first poll.
    pub fn waits(&self, hook: Hook) -> bool {
        self.waits[hook.index()]
    }

    /// The bindings exporting `hook` whose scope covers this tenant and model.
    fn with<'a>(&'a self, hook: Hook, tenant: &'a str, model: &'a str) -> impl Iterator<Item = &'a Arc<Binding>> {
        self.bindings.iter().filter(move |b| b.exports(hook) && b.runs_for(tenant, model))
    }

    /// Applies a failure policy: fail-closed stops the request, fail-open carries on.
    fn on_failure(binding: &Binding, error: PluginError) -> Result<(), ChainFailure> {
        match binding.failure {
            FailurePolicy::Closed => Err(ChainFailure(error)),
            FailurePolicy::Open => Ok(()),
        }
    }

    /// Runs the on-request hooks in order; the first local response or denial stops the chain.
    /// Each plugin sees the changes of the ones before it.
    pub async fn on_request(&self, view: &mut RequestView) -> Result<RequestVerdict, ChainFailure> {
        let mut edits = RequestEdits::default();
        for binding in self.bindings.iter().filter(|b| b.exports(Hook::OnRequest)) {
            // Checked per binding: a model-scoped plugin runs for the model as rewritten by
            // the plugins before it.
            if !binding.runs_for(&view.info.tenant, &view.info.model) {
                continue;
            }
            let decision = match binding
                .on_request(&view.info, &view.headers, &view.body, view.limits.as_ref(), view.cache.as_ref())
                .await
            {
                Ok(Some(decision)) => decision,
                Ok(None) => continue,
                Err(error) => {
                    Self::on_failure(binding, error)?;
                    continue;
                }
            };
            match decision {
                RequestDecision::Continue => {}
                RequestDecision::ContinueWith(changes) => {
                    let headers = Arc::make_mut(&mut view.headers);
                    for name in changes.remove_headers {
                        if let Ok(name) = HeaderName::try_from(name) {
                            headers.remove(&name);
                            edits.set_headers.retain(|(n, _)| *n != name);
                            edits.remove_headers.push(name);
                        }
                    }
                    for h in changes.set_headers {
                        match (HeaderName::try_from(h.name), HeaderValue::try_from(h.value)) {
                            (Ok(name), Ok(value)) => {
                                headers.insert(name.clone(), value.clone());
                                edits.remove_headers.retain(|n| *n != name);
                                edits.set_headers.retain(|(n, _)| *n != name);
                                edits.set_headers.push((name, value));
                            }
                            _ => tracing::debug!(plugin = %binding.name, "ignoring an invalid header from a plugin"),
                        }
                    }
                    if let Some(model) = changes.model {
                        view.info.model.clone_from(&model);
                        edits.model = Some(model);
                    }
                    if let Some(body) = changes.body {
                        let body = Bytes::from(body);
                        view.body = BodyResource::new(body.clone());
                        edits.body = Some(body);
                    }
                }
                RequestDecision::Respond(response) => {
                    return Ok(RequestVerdict::Respond { plugin: Arc::clone(&binding.name), response });
                }
                RequestDecision::Deny(denial) => {
                    return Ok(RequestVerdict::Deny { plugin: Arc::clone(&binding.name), denial });
                }
            }
        }
        Ok(RequestVerdict::Continue(edits))
    }

    /// Asks the route hooks bound for `tenant` and the request's model in order; the first
    /// that picks a candidate wins. `Ok(None)` when every one abstained (or failed open): the
    /// host makes its own choice.
    pub async fn route(
        &self,
        tenant: &str,
        request: &RouteRequest,
        candidates: &[Candidate],
    ) -> Result<Option<u32>, ChainFailure> {
        for binding in self.with(Hook::Route, tenant, &request.model) {
            match binding.route(tenant, request, candidates).await {
                Ok(Some(RouteDecision::Route(id))) if candidates.iter().any(|c| c.id == id) => return Ok(Some(id)),
                Ok(Some(RouteDecision::Route(id))) => {
                    tracing::debug!(plugin = %binding.name, id, "router chose an unknown candidate; ignoring");
                }
                Ok(Some(RouteDecision::Abstain) | None) => {}
                Err(error) => Self::on_failure(binding, error)?,
            }
        }
        Ok(None)
    }

    /// Runs the on-response-headers hooks; each one's changes are applied to `headers`.
    pub async fn on_response_headers(
        &self,
        info: &RequestInfo,
        status: u16,
        headers: &mut Arc<HeaderMap>,
        limits: Option<&Arc<RequestLimits>>,
    ) -> Result<(), ChainFailure> {
        for binding in self.with(Hook::OnResponseHeaders, &info.tenant, &info.model) {
            match binding.on_response_headers(info, status, headers, limits).await {
                Ok(Some(changes)) => {
                    let map = Arc::make_mut(headers);
                    for name in changes.remove_headers {
                        if let Ok(name) = HeaderName::try_from(name) {
                            map.remove(name);
                        }
                    }
                    for h in changes.set_headers {
                        if let (Ok(name), Ok(value)) = (HeaderName::try_from(h.name), HeaderValue::try_from(h.value)) {
                            map.insert(name, value);
                        }
                    }
                }
                Ok(None) => {}
                Err(error) => Self::on_failure(binding, error)?,
            }
        }
        Ok(())
    }

    /// Runs the on-response-chunk hooks on `data`, one stream event (`stream`, its `index`) or
    /// a whole body. Each plugin sees the text as the ones before it left it; a drop ends the
    /// chain (for a whole body it counts as forward). Synchronous: these plugins never wait.
    pub fn on_response_chunk(
        &self,
        info: &RequestInfo,
        stream: bool,
        index: u32,
        data: &str,
    ) -> Result<ChunkVerdict, ChainFailure> {
        let mut replaced: Option<String> = None;
        for binding in self.with(Hook::OnResponseChunk, &info.tenant, &info.model) {
            let data = replaced.as_deref().unwrap_or(data).to_owned();
            match binding.on_response_chunk(info, &ResponseChunk { stream, index, data }) {
                Ok(Some(ChunkDecision::Replace(json))) => replaced = Some(json),
                Ok(Some(ChunkDecision::Drop)) if stream => return Ok(ChunkVerdict::Drop),
                Ok(Some(ChunkDecision::Forward | ChunkDecision::Drop) | None) => {}
                Err(error) => Self::on_failure(binding, error)?,
            }
        }
        Ok(replaced.map_or(ChunkVerdict::Forward, ChunkVerdict::Replace))
    }

    /// Runs the on-response-done hooks. Nothing is left to refuse, so failures are only logged
    /// and counted.
    pub async fn on_response_done(&self, info: &RequestInfo, done: &ResponseDone, limits: Option<&Arc<RequestLimits>>) {
        for binding in self.with(Hook::OnResponseDone, &info.tenant, &info.model) {
            let _ = binding.on_response_done(info, done, limits).await;
        }
    }
}
