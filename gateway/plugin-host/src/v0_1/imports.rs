//! 0.1.0's capabilities, linked under 0.1.0's names and served by the current implementation
//! (`host_impl`): each function converts its arguments and answer between the two versions'
//! types, which have the same shapes.

use wasmtime::component::{HasSelf, Linker, Resource};

use super::sluice::policy as old;
use crate::bindings::sluice::policy as now;
use crate::resources::{BodyResource, HeadersResource};
use crate::state::HostState;

/// Links every 0.1.0 interface for a component built against it.
pub fn add_host_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    old::types::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)?;
    old::log::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)?;
    old::clock::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)?;
    old::counters::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)?;
    old::cache::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)?;
    old::response_cache::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)?;
    old::limits::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)?;
    old::config::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)?;
    old::metrics::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)?;
    old::embeddings::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)?;
    old::http::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)?;
    Ok(())
}

/// `From` between two enums whose cases have the same names.
macro_rules! same_cases {
    ($from:ty => $to:ty: $($case:ident),+ $(,)?) => {
        impl From<$from> for $to {
            fn from(value: $from) -> Self {
                match value {
                    $(<$from>::$case => <$to>::$case,)+
                }
            }
        }
    };
}

same_cases!(old::types::StateScope => now::types::StateScope: Binding, Tenant);
same_cases!(old::log::Level => now::log::Level: Trace, Debug, Info, Warn, Error);
same_cases!(old::limits::LimitKind => now::limits::LimitKind: Rate, Window, Month, Slots);
same_cases!(old::limits::OnSettle => now::limits::OnSettle: Keep, Tokens, GiveBack);
same_cases!(now::limits::Error => old::limits::Error: Unavailable, Invalid);
same_cases!(old::response_cache::Mode => now::response_cache::Mode: LookupAndStore, StoreOnly);

fn header(h: old::types::Header) -> now::types::Header {
    now::types::Header { name: h.name, value: h.value }
}

fn reservation(r: now::counters::Reservation) -> old::counters::Reservation {
    old::counters::Reservation { id: r.id, granted: r.granted, remaining: r.remaining, reset_ms: r.reset_ms }
}

fn decision(d: now::limits::Decision) -> old::limits::Decision {
    old::limits::Decision {
        granted: d.granted,
        refused_by: d.refused_by,
        retry_after_ms: d.retry_after_ms,
        states: d
            .states
            .into_iter()
            .map(|s| old::limits::LimitState { limit: s.limit, remaining: s.remaining, reset_ms: s.reset_ms })
            .collect(),
    }
}

fn decided(d: Result<now::limits::Decision, now::limits::Error>) -> Result<old::limits::Decision, old::limits::Error> {
    d.map(decision).map_err(Into::into)
}

impl old::types::Host for HostState {}

impl old::types::HostHeaders for HostState {
    fn get(&mut self, headers: Resource<HeadersResource>, name: String) -> wasmtime::Result<Option<String>> {
        now::types::HostHeaders::get(self, headers, name)
    }

    fn get_all(&mut self, headers: Resource<HeadersResource>, name: String) -> wasmtime::Result<Vec<String>> {
        now::types::HostHeaders::get_all(self, headers, name)
    }

    fn names(&mut self, headers: Resource<HeadersResource>) -> wasmtime::Result<Vec<String>> {
        now::types::HostHeaders::names(self, headers)
    }

    fn drop(&mut self, headers: Resource<HeadersResource>) -> wasmtime::Result<()> {
        now::types::HostHeaders::drop(self, headers)
    }
}

impl old::types::HostBody for HostState {
    fn len(&mut self, body: Resource<BodyResource>) -> wasmtime::Result<u64> {
        now::types::HostBody::len(self, body)
    }

    fn read(&mut self, body: Resource<BodyResource>, offset: u64, max: u32) -> wasmtime::Result<Vec<u8>> {
        now::types::HostBody::read(self, body, offset, max)
    }

    fn prompt_text(&mut self, body: Resource<BodyResource>) -> wasmtime::Result<String> {
        now::types::HostBody::prompt_text(self, body)
    }

    fn field(&mut self, body: Resource<BodyResource>, name: String) -> wasmtime::Result<Option<String>> {
        now::types::HostBody::field(self, body, name)
    }

    fn drop(&mut self, body: Resource<BodyResource>) -> wasmtime::Result<()> {
        now::types::HostBody::drop(self, body)
    }
}

impl old::log::Host for HostState {
    fn log(&mut self, level: old::log::Level, message: String) -> wasmtime::Result<()> {
        now::log::Host::log(self, level.into(), message)
    }
}

impl old::clock::Host for HostState {
    fn monotonic_now(&mut self) -> wasmtime::Result<u64> {
        now::clock::Host::monotonic_now(self)
    }
}

impl old::counters::Host for HostState {
    fn reserve(
        &mut self,
        key: String,
        amount: u64,
        limit: u64,
        window_ms: u64,
    ) -> wasmtime::Result<old::counters::Reservation> {
        now::counters::Host::reserve(self, key, amount, limit, window_ms).map(reservation)
    }

    fn reserve_scoped(
        &mut self,
        scope: old::types::StateScope,
        key: String,
        amount: u64,
        limit: u64,
        window_ms: u64,
    ) -> wasmtime::Result<old::counters::Reservation> {
        now::counters::Host::reserve_scoped(self, scope.into(), key, amount, limit, window_ms).map(reservation)
    }

    fn settle(&mut self, id: u64, actual: u64) -> wasmtime::Result<()> {
        now::counters::Host::settle(self, id, actual)
    }

    fn release(&mut self, id: u64) -> wasmtime::Result<()> {
        now::counters::Host::release(self, id)
    }

    fn get(&mut self, key: String) -> wasmtime::Result<u64> {
        now::counters::Host::get(self, key)
    }

    fn get_scoped(&mut self, scope: old::types::StateScope, key: String) -> wasmtime::Result<u64> {
        now::counters::Host::get_scoped(self, scope.into(), key)
    }
}

impl old::cache::Host for HostState {
    fn get(&mut self, key: String) -> wasmtime::Result<Option<Vec<u8>>> {
        now::cache::Host::get(self, key)
    }

    fn put(&mut self, key: String, value: Vec<u8>, ttl_ms: u64) -> wasmtime::Result<()> {
        now::cache::Host::put(self, key, value, ttl_ms)
    }

    fn get_scoped(&mut self, scope: old::types::StateScope, key: String) -> wasmtime::Result<Option<Vec<u8>>> {
        now::cache::Host::get_scoped(self, scope.into(), key)
    }

    fn put_scoped(
        &mut self,
        scope: old::types::StateScope,
        key: String,
        value: Vec<u8>,
        ttl_ms: u64,
    ) -> wasmtime::Result<()> {
        now::cache::Host::put_scoped(self, scope.into(), key, value, ttl_ms)
    }
}

impl old::response_cache::Host for HostState {
    fn use_cache(&mut self, request: old::response_cache::CacheRequest) -> wasmtime::Result<Result<(), String>> {
        let request = now::response_cache::CacheRequest {
            mode: request.mode.into(),
            ignore_fields: request.ignore_fields,
            extra_key: request.extra_key,
            ttl_ms: request.ttl_ms,
            semantic: request
                .semantic
                .map(|s| now::response_cache::Semantic { embedding_model: s.embedding_model, threshold: s.threshold }),
        };
        now::response_cache::Host::use_cache(self, request)
    }

    fn bypass(&mut self, reason: String) -> wasmtime::Result<()> {
        now::response_cache::Host::bypass(self, reason)
    }
}

fn limit(l: old::limits::Limit) -> now::limits::Limit {
    now::limits::Limit {
        key: l.key,
        kind: l.kind.into(),
        amount: l.amount,
        limit: l.limit,
        period_ms: l.period_ms,
        burst: l.burst,
        on_settle: l.on_settle.into(),
    }
}

fn standing_limit(l: old::limits::StandingLimit) -> now::limits::StandingLimit {
    now::limits::StandingLimit {
        key: l.key,
        kind: l.kind.into(),
        amount: match l.amount {
            old::limits::StandingAmount::Units(n) => now::limits::StandingAmount::Units(n),
            old::limits::StandingAmount::Reservation(n) => now::limits::StandingAmount::Reservation(n),
        },
        limit: l.limit,
        period_ms: l.period_ms,
        burst: l.burst,
        on_settle: l.on_settle.into(),
    }
}

impl old::limits::Host for HostState {
    async fn acquire(
        &mut self,
        scope: old::types::StateScope,
        limits: Vec<old::limits::Limit>,
        cached_percent: u32,
    ) -> wasmtime::Result<Result<old::limits::Decision, old::limits::Error>> {
        let limits = limits.into_iter().map(limit).collect();
        now::limits::Host::acquire(self, scope.into(), limits, cached_percent).await.map(decided)
    }

    async fn acquire_standing(
        &mut self,
        scope: old::types::StateScope,
        limits: Vec<old::limits::StandingLimit>,
        cached_percent: u32,
        header_requests: Option<u32>,
        header_tokens: Option<u32>,
    ) -> wasmtime::Result<Result<old::limits::Decision, old::limits::Error>> {
        let limits = limits.into_iter().map(standing_limit).collect();
        now::limits::Host::acquire_standing(self, scope.into(), limits, cached_percent, header_requests, header_tokens)
            .await
            .map(decided)
    }

    fn set_response_headers(&mut self, headers: Vec<old::types::Header>) -> wasmtime::Result<Result<(), String>> {
        now::limits::Host::set_response_headers(self, headers.into_iter().map(header).collect())
    }

    fn set_ratelimit_headers(
        &mut self,
        requests: Option<u32>,
        tokens: Option<u32>,
    ) -> wasmtime::Result<Result<(), String>> {
        now::limits::Host::set_ratelimit_headers(self, requests, tokens)
    }

    async fn settle(&mut self, actual: u64) -> wasmtime::Result<()> {
        now::limits::Host::settle(self, actual).await
    }

    async fn release(&mut self) -> wasmtime::Result<()> {
        now::limits::Host::release(self).await
    }

    fn last_decision(&mut self) -> wasmtime::Result<Option<old::limits::Decision>> {
        now::limits::Host::last_decision(self).map(|d| d.map(decision))
    }
}

impl old::config::Host for HostState {
    fn binding(&mut self) -> wasmtime::Result<String> {
        now::config::Host::binding(self)
    }

    fn tenant(&mut self, name: String) -> wasmtime::Result<Option<String>> {
        now::config::Host::tenant(self, name)
    }
}

impl old::metrics::Host for HostState {
    fn counter_add(&mut self, name: String, label: String, value: u64) -> wasmtime::Result<()> {
        now::metrics::Host::counter_add(self, name, label, value)
    }

    fn histogram_observe(&mut self, name: String, label: String, value: f64) -> wasmtime::Result<()> {
        now::metrics::Host::histogram_observe(self, name, label, value)
    }
}

impl old::embeddings::Host for HostState {
    async fn embed(&mut self, model: String, input: String) -> wasmtime::Result<Result<Vec<f32>, String>> {
        now::embeddings::Host::embed(self, model, input).await
    }
}

impl old::http::Host for HostState {
    async fn send(
        &mut self,
        request: old::http::OutboundRequest,
    ) -> wasmtime::Result<Result<old::http::OutboundResponse, String>> {
        let request = now::http::OutboundRequest {
            method: request.method,
            url: request.url,
            headers: request.headers.into_iter().map(header).collect(),
            body: request.body,
            timeout_ms: request.timeout_ms,
        };
        let answer = now::http::Host::send(self, request).await?;
        Ok(answer.map(|r| old::http::OutboundResponse {
            status: r.status,
            headers: r.headers.into_iter().map(|h| old::types::Header { name: h.name, value: h.value }).collect(),
            body: r.body,
        }))
    }
}
