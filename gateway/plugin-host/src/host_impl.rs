//! The host side of the `sluice:policy` imports: resources and capabilities.

use std::sync::Arc;
use std::time::Duration;

use ::http::header::{HeaderName, HeaderValue};
use wasmtime::component::Resource;

use crate::bindings::sluice::policy::{
    cache, clock, config, counters, embeddings, http, limits, log, metrics, response_cache, types,
};
use crate::bindings::types::StateScope;
use crate::capability::Capability;
use crate::limits::standing::{Amount, Plan};
use crate::limits::{self as host_limits, Ask, Ending, LimitsError, MAX_LIMITS_WAIT, RequestLimits};
use crate::output::OutputLimits;
use crate::resources::{BodyResource, HeadersResource};
use crate::response_cache::{BypassReason, CacheIntent, CacheUse};
use crate::state::HostState;

/// The most a plugin may read from a body at once.
const MAX_READ: u32 = 1 << 20;
/// The longest text a plugin may embed in one call.
const MAX_EMBED_INPUT: usize = 1 << 20;
/// What `http` and `embeddings` answer where the embedder gave the host no transport (the
/// `sluice plugin test` command, say).
const NO_IO: &str = "network capabilities are not available in this host";

impl types::Host for HostState {}

impl types::HostHeaders for HostState {
    fn get(&mut self, headers: Resource<HeadersResource>, name: String) -> wasmtime::Result<Option<String>> {
        let h = self.table.get(&headers)?;
        Ok(h.get_all(&name).next().and_then(|v| v.to_str().ok()).map(str::to_owned))
    }

    fn get_all(&mut self, headers: Resource<HeadersResource>, name: String) -> wasmtime::Result<Vec<String>> {
        let h = self.table.get(&headers)?;
        Ok(h.get_all(&name).filter_map(|v| v.to_str().ok()).map(str::to_owned).collect())
    }

    fn names(&mut self, headers: Resource<HeadersResource>) -> wasmtime::Result<Vec<String>> {
        let h = self.table.get(&headers)?;
        Ok(h.names().map(|k| k.as_str().to_owned()).collect())
    }

    fn drop(&mut self, headers: Resource<HeadersResource>) -> wasmtime::Result<()> {
        // Handles the host lent for a call are removed by the host; a guest-owned handle is
        // removed here.
        if self.table.get(&headers).is_ok() && headers.owned() {
            self.table.delete(headers)?;
        }
        Ok(())
    }
}

impl types::HostBody for HostState {
    fn len(&mut self, body: Resource<BodyResource>) -> wasmtime::Result<u64> {
        Ok(self.table.get(&body)?.bytes.len() as u64)
    }

    fn read(&mut self, body: Resource<BodyResource>, offset: u64, max: u32) -> wasmtime::Result<Vec<u8>> {
        let b = &self.table.get(&body)?.bytes;
        let start = usize::try_from(offset).unwrap_or(usize::MAX).min(b.len());
        let end = start.saturating_add(max.min(MAX_READ) as usize).min(b.len());
        Ok(b[start..end].to_vec())
    }

    fn prompt_text(&mut self, body: Resource<BodyResource>) -> wasmtime::Result<String> {
        Ok(self.table.get(&body)?.prompt_text().to_owned())
    }

    fn field(&mut self, body: Resource<BodyResource>, name: String) -> wasmtime::Result<Option<String>> {
        Ok(self.table.get(&body)?.field(&name))
    }

    fn drop(&mut self, body: Resource<BodyResource>) -> wasmtime::Result<()> {
        if self.table.get(&body).is_ok() && body.owned() {
            self.table.delete(body)?;
        }
        Ok(())
    }
}

impl log::Host for HostState {
    fn log(&mut self, level: log::Level, message: String) -> wasmtime::Result<()> {
        self.grant(Capability::Log)?;
        let b = &self.binding;
        if !b.log_budget.admit(b.services.epoch.elapsed().as_secs()) {
            b.metrics.log_dropped(&b.plugin);
            return Ok(());
        }
        let message = message.chars().take(4096).collect::<String>();
        let tenant = &*self.tenant;
        match level {
            log::Level::Trace => tracing::trace!(plugin = %b.plugin, version = %b.version, tenant, "{message}"),
            log::Level::Debug => tracing::debug!(plugin = %b.plugin, version = %b.version, tenant, "{message}"),
            log::Level::Info => tracing::info!(plugin = %b.plugin, version = %b.version, tenant, "{message}"),
            log::Level::Warn => tracing::warn!(plugin = %b.plugin, version = %b.version, tenant, "{message}"),
            log::Level::Error => tracing::error!(plugin = %b.plugin, version = %b.version, tenant, "{message}"),
        }
        Ok(())
    }
}

impl clock::Host for HostState {
    fn monotonic_now(&mut self) -> wasmtime::Result<u64> {
        self.grant(Capability::Clock)?;
        Ok(u64::try_from(self.binding.services.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX))
    }
}

impl HostState {
    fn reserve_in(
        &mut self,
        scope: StateScope,
        key: &str,
        amount: u64,
        limit: u64,
        window_ms: u64,
    ) -> wasmtime::Result<counters::Reservation> {
        self.grant(Capability::Counters)?;
        let owner = self.owner(scope);
        let window = Duration::from_millis(window_ms.max(1));
        let r = self.binding.services.counters.reserve(&owner, key, amount, limit, window);
        Ok(counters::Reservation {
            id: r.id,
            granted: r.granted,
            remaining: r.remaining,
            reset_ms: u64::try_from(r.reset.as_millis()).unwrap_or(u64::MAX),
        })
    }

    fn get_in(&mut self, scope: StateScope, key: &str) -> wasmtime::Result<u64> {
        self.grant(Capability::Counters)?;
        Ok(self.binding.services.counters.get(&self.owner(scope), key))
    }

    fn cache_get_in(&mut self, scope: StateScope, key: &str) -> wasmtime::Result<Option<Vec<u8>>> {
        self.grant(Capability::Cache)?;
        Ok(self.binding.services.cache.get(&self.owner(scope), key).map(|v| v.to_vec()))
    }

    fn cache_put_in(&mut self, scope: StateScope, key: &str, value: &[u8], ttl_ms: u64) -> wasmtime::Result<()> {
        self.grant(Capability::Cache)?;
        let owner = self.owner(scope);
        if !self.binding.services.cache.put(&owner, key, value, Duration::from_millis(ttl_ms)) {
            tracing::debug!(plugin = %self.binding.plugin, "cache put refused: too large, or the owner's share is full");
        }
        Ok(())
    }
}

impl counters::Host for HostState {
    fn reserve(
        &mut self,
        key: String,
        amount: u64,
        limit: u64,
        window_ms: u64,
    ) -> wasmtime::Result<counters::Reservation> {
        self.reserve_in(StateScope::Binding, &key, amount, limit, window_ms)
    }

    fn reserve_scoped(
        &mut self,
        scope: StateScope,
        key: String,
        amount: u64,
        limit: u64,
        window_ms: u64,
    ) -> wasmtime::Result<counters::Reservation> {
        self.reserve_in(scope, &key, amount, limit, window_ms)
    }

    fn settle(&mut self, id: u64, actual: u64) -> wasmtime::Result<()> {
        self.grant(Capability::Counters)?;
        self.binding.services.counters.settle(&self.binding.namespace, id, actual);
        Ok(())
    }

    fn release(&mut self, id: u64) -> wasmtime::Result<()> {
        self.grant(Capability::Counters)?;
        self.binding.services.counters.release(&self.binding.namespace, id);
        Ok(())
    }

    fn get(&mut self, key: String) -> wasmtime::Result<u64> {
        self.get_in(StateScope::Binding, &key)
    }

    fn get_scoped(&mut self, scope: StateScope, key: String) -> wasmtime::Result<u64> {
        self.get_in(scope, &key)
    }
}

impl cache::Host for HostState {
    fn get(&mut self, key: String) -> wasmtime::Result<Option<Vec<u8>>> {
        self.cache_get_in(StateScope::Binding, &key)
    }

    fn put(&mut self, key: String, value: Vec<u8>, ttl_ms: u64) -> wasmtime::Result<()> {
        self.cache_put_in(StateScope::Binding, &key, &value, ttl_ms)
    }

    fn get_scoped(&mut self, scope: StateScope, key: String) -> wasmtime::Result<Option<Vec<u8>>> {
        self.cache_get_in(scope, &key)
    }

    fn put_scoped(&mut self, scope: StateScope, key: String, value: Vec<u8>, ttl_ms: u64) -> wasmtime::Result<()> {
        self.cache_put_in(scope, &key, &value, ttl_ms)
    }
}

impl response_cache::Host for HostState {
    fn use_cache(&mut self, request: response_cache::CacheRequest) -> wasmtime::Result<Result<(), String>> {
        self.grant(Capability::ResponseCache)?;
        let Some(slot) = &self.cache else {
            return Ok(Err("use-cache is only for on-request".to_owned()));
        };
        let plugin = Arc::clone(&self.binding.plugin);
        Ok(CacheUse::new(plugin, self.binding.namespace.clone(), request).map(|u| slot.set(CacheIntent::Use(u))))
    }

    fn bypass(&mut self, reason: String) -> wasmtime::Result<()> {
        self.grant(Capability::ResponseCache)?;
        if let Some(slot) = &self.cache {
            let plugin = Arc::clone(&self.binding.plugin);
            slot.set(CacheIntent::Bypass { plugin, reason: BypassReason::parse(&reason) });
        }
        Ok(())
    }
}

impl HostState {
    /// The current request's holds; a call without a request (a tool driving the host) gets
    /// holds of its own, ended when the call ends.
    fn request_limits(&mut self) -> Arc<RequestLimits> {
        let limits = &self.binding.services.limits;
        Arc::clone(self.request.get_or_insert_with(|| RequestLimits::new(Arc::clone(limits))))
    }

    /// Takes `asks` for the current request, all or none, and records the decision.
    async fn take_limits(
        &mut self,
        asks: &[Ask],
        cached_percent: u32,
    ) -> Result<(limits::Decision, Arc<RequestLimits>), limits::Error> {
        let request = self.request_limits();
        let timeout = self.remaining(MAX_LIMITS_WAIT);
        let outcome = request.limits().acquire(asks, timeout).await;
        let metrics = &self.binding.metrics;
        match outcome {
            Ok(grant) => {
                let outcome = if grant.decision.granted { "granted" } else { "refused" };
                metrics.limit_decision(&self.binding.plugin, &self.tenant, outcome);
                let d = decision(grant.decision.clone());
                request.record(&self.binding.namespace, grant, cached_percent);
                Ok((d, request))
            }
            Err(LimitsError::Unavailable) => {
                metrics.limit_decision(&self.binding.plugin, &self.tenant, "unavailable");
                Err(limits::Error::Unavailable)
            }
            Err(LimitsError::Invalid(_)) => Err(limits::Error::Invalid),
        }
    }
}

/// A guest's limit as the host keeps it: its key placed under the owner's `prefix`.
#[allow(clippy::too_many_arguments)]
fn ask(
    prefix: &str,
    key: String,
    kind: limits::LimitKind,
    amount: u64,
    limit: u64,
    period_ms: u64,
    burst: u64,
    on_settle: limits::OnSettle,
) -> Ask {
    Ask {
        key: [prefix, &key].concat(),
        owner_len: prefix.len(),
        kind: match kind {
            limits::LimitKind::Rate => host_limits::Kind::Rate,
            limits::LimitKind::Window => host_limits::Kind::Window,
            limits::LimitKind::Month => host_limits::Kind::Month,
            limits::LimitKind::Slots => host_limits::Kind::Slots,
        },
        amount,
        limit,
        period_ms,
        burst,
        on_settle: match on_settle {
            limits::OnSettle::Keep => host_limits::OnSettle::Keep,
            limits::OnSettle::Tokens => host_limits::OnSettle::Tokens,
            limits::OnSettle::GiveBack => host_limits::OnSettle::GiveBack,
        },
    }
}

fn decision(d: host_limits::Decision) -> limits::Decision {
    limits::Decision {
        granted: d.granted,
        refused_by: d.refused_by,
        retry_after_ms: d.retry_after_ms,
        states: d
            .states
            .into_iter()
            .map(|s| limits::LimitState { limit: s.limit, remaining: s.remaining, reset_ms: s.reset_ms })
            .collect(),
    }
}

impl limits::Host for HostState {
    async fn acquire(
        &mut self,
        scope: StateScope,
        asks: Vec<limits::Limit>,
        cached_percent: u32,
    ) -> wasmtime::Result<Result<limits::Decision, limits::Error>> {
        self.grant(Capability::Limits)?;
        if asks.len() > host_limits::MAX_LIMITS_PER_CALL {
            return Ok(Err(limits::Error::Invalid));
        }
        let prefix = self.owner(scope).prefix();
        let asks: Vec<Ask> = asks
            .into_iter()
            .map(|l| ask(&prefix, l.key, l.kind, l.amount, l.limit, l.period_ms, l.burst, l.on_settle))
            .collect();
        Ok(self.take_limits(&asks, cached_percent).await.map(|(d, _)| d))
    }

    async fn acquire_standing(
        &mut self,
        scope: StateScope,
        asks: Vec<limits::StandingLimit>,
        cached_percent: u32,
        header_requests: Option<u32>,
        header_tokens: Option<u32>,
    ) -> wasmtime::Result<Result<limits::Decision, limits::Error>> {
        self.grant(Capability::Limits)?;
        let in_range = |i: Option<u32>| i.is_none_or(|i| (i as usize) < asks.len());
        let Some(shape) = self.shape.clone() else { return Ok(Err(limits::Error::Invalid)) };
        if asks.len() > host_limits::MAX_LIMITS_PER_CALL || !in_range(header_requests) || !in_range(header_tokens) {
            return Ok(Err(limits::Error::Invalid));
        }
        let prefix = self.owner(scope).prefix();
        let planned: Vec<(Ask, Amount)> = asks
            .into_iter()
            .map(|l| {
                let amount = match l.amount {
                    limits::StandingAmount::Units(n) => Amount::Units(n),
                    limits::StandingAmount::Reservation(default) => Amount::Reservation(default),
                };
                (ask(&prefix, l.key, l.kind, 0, l.limit, l.period_ms, l.burst, l.on_settle), amount)
            })
            .collect();
        let plan = Plan::new(shape.generation, planned, cached_percent, header_requests, header_tokens);
        if plan.asks.is_empty() {
            // Nothing to take: the promise spares this tenant's requests the plugin call.
            self.binding.standing.remember(shape.plan_key, plan);
            return Ok(Ok(limits::Decision {
                granted: true,
                refused_by: None,
                retry_after_ms: None,
                states: Vec::new(),
            }));
        }
        let asks = plan.asks_for(&shape.sizes);
        let outcome = self.take_limits(&asks, cached_percent).await;
        let (decision, request) = match outcome {
            Ok(taken) => taken,
            Err(e) => return Ok(Err(e)),
        };
        // The answer carries the headers whether the limits passed or refused.
        match request.set_ratelimit_headers(&self.binding.namespace, header_requests, header_tokens) {
            Ok(remaining) => self.binding.metrics.limit_remaining(&self.binding.plugin, &self.tenant, remaining),
            Err(problem) => tracing::debug!(plugin = %self.binding.plugin, problem, "x-ratelimit headers not set"),
        }
        self.binding.standing.remember(shape.plan_key, plan);
        Ok(Ok(decision))
    }

    fn set_response_headers(&mut self, headers: Vec<types::Header>) -> wasmtime::Result<Result<(), String>> {
        self.grant(Capability::Limits)?;
        if let Err(problem) = OutputLimits::default().headers(&headers) {
            return Ok(Err(problem));
        }
        let parsed = headers
            .into_iter()
            .filter_map(|h| Some((HeaderName::try_from(h.name).ok()?, HeaderValue::try_from(h.value).ok()?)))
            .collect();
        self.request_limits().set_response_headers(&self.binding.namespace, parsed);
        Ok(Ok(()))
    }

    fn set_ratelimit_headers(
        &mut self,
        requests: Option<u32>,
        tokens: Option<u32>,
    ) -> wasmtime::Result<Result<(), String>> {
        self.grant(Capability::Limits)?;
        let set = self.request_limits().set_ratelimit_headers(&self.binding.namespace, requests, tokens);
        Ok(set.map(|remaining| self.binding.metrics.limit_remaining(&self.binding.plugin, &self.tenant, remaining)))
    }

    async fn settle(&mut self, actual: u64) -> wasmtime::Result<()> {
        self.grant(Capability::Limits)?;
        if let Some(request) = self.request.clone() {
            request.end(&self.binding.namespace, Ending::Settle(actual)).await;
        }
        Ok(())
    }

    async fn release(&mut self) -> wasmtime::Result<()> {
        self.grant(Capability::Limits)?;
        if let Some(request) = self.request.clone() {
            request.end(&self.binding.namespace, Ending::Release).await;
        }
        Ok(())
    }

    fn last_decision(&mut self) -> wasmtime::Result<Option<limits::Decision>> {
        self.grant(Capability::Limits)?;
        Ok(self.request.as_ref().and_then(|r| r.last_decision(&self.binding.namespace)).map(decision))
    }
}

impl config::Host for HostState {
    fn binding(&mut self) -> wasmtime::Result<String> {
        self.grant(Capability::Config)?;
        Ok(self.binding.config_json.clone())
    }

    fn tenant(&mut self, name: String) -> wasmtime::Result<Option<String>> {
        self.grant(Capability::Config)?;
        // Only the tenant the call serves: another tenant's settings are not this plugin's to
        // read, whoever asks.
        if name != *self.tenant {
            return Ok(None);
        }
        Ok(self.binding.services.tenant(&name))
    }
}

impl metrics::Host for HostState {
    fn counter_add(&mut self, name: String, label: String, value: u64) -> wasmtime::Result<()> {
        self.grant(Capability::Metrics)?;
        if !self.binding.metrics.custom_add(&self.binding.plugin, &name, &label, value) {
            tracing::debug!(plugin = %self.binding.plugin, %name, "metric refused: bad name or too many series");
        }
        Ok(())
    }

    fn histogram_observe(&mut self, name: String, label: String, value: f64) -> wasmtime::Result<()> {
        self.grant(Capability::Metrics)?;
        if !self.binding.metrics.custom_observe(&self.binding.plugin, &name, &label, value) {
            tracing::debug!(plugin = %self.binding.plugin, %name, "metric refused: bad name or too many series");
        }
        Ok(())
    }
}

impl embeddings::Host for HostState {
    async fn embed(&mut self, model: String, input: String) -> wasmtime::Result<Result<Vec<f32>, String>> {
        self.grant(Capability::Embeddings)?;
        let Some(io) = self.binding.services.io() else {
            return Ok(Err(NO_IO.to_owned()));
        };
        if input.len() > MAX_EMBED_INPUT {
            return Ok(Err(format!("input of {} bytes is over the {MAX_EMBED_INPUT}-byte limit", input.len())));
        }
        let timeout = self.remaining(Duration::MAX);
        Ok(io.embed(model, input, timeout).await)
    }
}

impl http::Host for HostState {
    async fn send(
        &mut self,
        request: http::OutboundRequest,
    ) -> wasmtime::Result<Result<http::OutboundResponse, String>> {
        self.grant(Capability::Http)?;
        let Some(io) = self.binding.services.io() else {
            return Ok(Err(NO_IO.to_owned()));
        };
        let headers = request.headers.into_iter().map(|h| (h.name, h.value)).collect();
        let outbound = match crate::io::outbound_request(
            &self.binding.http_allow,
            &request.method,
            &request.url,
            headers,
            request.body,
        ) {
            Ok(r) => r,
            Err(e) => return Ok(Err(e)),
        };
        let timeout = self.remaining(Duration::from_millis(u64::from(request.timeout_ms.max(1))));
        let response = match io.send(outbound, timeout, crate::io::MAX_RESPONSE_BYTES).await {
            Ok(r) => r,
            Err(e) => return Ok(Err(e)),
        };
        let (parts, body) = response.into_parts();
        Ok(Ok(http::OutboundResponse {
            status: parts.status.as_u16(),
            headers: parts
                .headers
                .iter()
                .filter_map(|(n, v)| {
                    Some(types::Header { name: n.as_str().to_owned(), value: v.to_str().ok()?.to_owned() })
                })
                .collect(),
            body: body.to_vec(),
        }))
    }
}
