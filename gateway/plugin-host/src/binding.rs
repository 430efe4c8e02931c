//! A binding: one plugin version with its grants, limits, isolation and failure policy, and the
//! instances that serve it. Every call gets a fresh deadline and runs under the store's limits;
//! it is admitted by the binding's circuit breaker ([`crate::breaker`]) and, for the hooks that
//! may wait, by its cap on concurrent calls, so a misbehaving plugin holds at most that many of
//! the gateway's threads; what it returns is checked against [`OutputLimits`] before use.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::HeaderMap;
use tokio::sync::{Semaphore, SemaphorePermit};
use wasmtime::component::{Instance, Resource};
use wasmtime::{Store, Trap, UpdateDeadline};

use crate::bindings::types::{
    Candidate, ChunkDecision, RequestDecision, RequestInfo, ResponseChanges, ResponseChunk, ResponseDone,
    RouteDecision, RouteRequest,
};
use crate::bindings::{asynchronous, on_request, on_response_chunk, on_response_done, on_response_headers, route};
use crate::breaker::{Admission, Breaker, BreakerState};
use crate::capability::{Capabilities, Capability};
use crate::engine::PluginEngine;
use crate::error::PluginError;
use crate::limits::local::Planned;
use crate::limits::standing::{RequestShape, Sizes};
use crate::limits::{MAX_LIMITS_WAIT, RequestLimits, now_us};
use crate::loader::{Export, Hook, PluginVersion, Versioned, load_versioned};
use crate::metrics::CallMetrics;
use crate::output::OutputLimits;
use crate::resources::{BodyResource, HeadersResource};
use crate::response_cache::CacheSlot;
use crate::state::{BindingContext, HostState};
use crate::v0_1;
use crate::v0_1::convert as old;

/// Table elements a plugin may have; Rust components need a few hundred.
const TABLE_LIMIT: usize = 20_000;
/// Warm instances kept per `reuse` binding; more concurrent calls instantiate extra ones that
/// are dropped afterwards.
const MAX_IDLE: usize = 64;

/// How instances are shared between calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// A fresh instance for every call: nothing a call leaves in memory reaches another request
    /// or tenant.
    PerRequest,
    /// Instances are kept and reused, and recycled after `max_calls` calls, after `max_age`,
    /// after a trap or when their memory grows past twice its size after instantiation.
    Reuse { max_calls: u32, max_age: Duration },
}

/// What a failed call does to the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailurePolicy {
    /// Refuse the request (503).
    Closed,
    /// Log, count, and carry on as if the plugin had no opinion.
    Open,
}

/// Which requests a binding runs for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum Scope {
    #[default]
    Global,
    Tenant(Arc<str>),
    /// The model as the hook sees it (after earlier plugins' rewrites).
    Model(Arc<str>),
}

impl Scope {
    pub fn applies(&self, tenant: &str, model: &str) -> bool {
        match self {
            Scope::Global => true,
            Scope::Tenant(t) => &**t == tenant,
            Scope::Model(m) => &**m == model,
        }
    }
}

/// Where a binding was declared, which is also what makes it unique in the chain: a config
/// file's `[[plugins]]` entry by name (at most one per name), a stored binding by its id (a
/// plugin may be bound many times, for different tenants or models).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Origin {
    Config,
    Store { binding_id: i64 },
}

impl Scope {
    /// A short, bounded label (`global`, `tenant:<name>`, `model:<name>`).
    pub fn label(&self) -> String {
        match self {
            Scope::Global => "global".to_owned(),
            Scope::Tenant(t) => format!("tenant:{t}"),
            Scope::Model(m) => format!("model:{m}"),
        }
    }
}

/// Per-call bounds.
#[derive(Debug, Clone, Copy)]
pub struct CallLimits {
    pub timeout: Duration,
    pub memory_bytes: usize,
}

/// How many calls of one binding may run at once when none is given. A binding for one tenant
/// that only computes gets a quarter of the machine's threads (at least one), so that a tenant
/// whose plugin loops holds at most that share of the gateway until its breaker opens. Global
/// and model bindings (an operator's policies, run for every tenant) get one call per thread,
/// which a synchronous call cannot exceed anyway; plugins that wait on the network get 64, since
/// their calls mostly wait.
pub fn default_concurrent_calls(calls_async: bool, scope: &Scope) -> u32 {
    if calls_async {
        return 64;
    }
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let share = match scope {
        Scope::Tenant(_) => threads / 4,
        Scope::Global | Scope::Model(_) => threads,
    };
    u32::try_from(share).unwrap_or(u32::MAX).max(1)
}

/// Where a binding sits: its origin, scope and order.
#[derive(Debug, Clone)]
pub(crate) struct Placement {
    pub origin: Origin,
    pub scope: Scope,
    pub order: i64,
    pub only_limited_tenants: bool,
}

/// See [`Binding::label`].
pub(crate) fn binding_label(origin: &Origin, scope: &Scope) -> String {
    match origin {
        Origin::Config => format!("config:{}", scope.label()),
        Origin::Store { binding_id } => format!("store:{binding_id}"),
    }
}

/// How a binding's calls are run and how it guards the gateway against its plugin.
pub(crate) struct Guards {
    pub isolation: Isolation,
    pub failure: FailurePolicy,
    pub limits: CallLimits,
    pub breaker: Breaker,
    /// Calls that may run at once (the hooks that may wait; `on-response-chunk` runs inside a
    /// stream's poll and is bounded by its deadline and the breaker alone).
    pub max_concurrent_calls: u32,
    pub output: OutputLimits,
}

/// A hook's typed functions: either contract, called either way.
type Guest<S, A, OS, OA> = Export<Versioned<S, OS>, Versioned<A, OA>>;

/// The hooks' typed functions of one instance, looked up on first use.
#[derive(Default)]
struct Guests {
    on_request: Option<
        Guest<
            on_request::Guest,
            asynchronous::on_request::Guest,
            v0_1::on_request::Guest,
            v0_1::asynchronous::on_request::Guest,
        >,
    >,
    route:
        Option<Guest<route::Guest, asynchronous::route::Guest, v0_1::route::Guest, v0_1::asynchronous::route::Guest>>,
    on_response_headers: Option<
        Guest<
            on_response_headers::Guest,
            asynchronous::on_response_headers::Guest,
            v0_1::on_response_headers::Guest,
            v0_1::asynchronous::on_response_headers::Guest,
        >,
    >,
    on_response_chunk: Option<Versioned<on_response_chunk::Guest, v0_1::on_response_chunk::Guest>>,
    on_response_done: Option<
        Guest<
            on_response_done::Guest,
            asynchronous::on_response_done::Guest,
            v0_1::on_response_done::Guest,
            v0_1::asynchronous::on_response_done::Guest,
        >,
    >,
}

struct Pooled {
    store: Store<HostState>,
    instance: Instance,
    guests: Guests,
    calls: u32,
    born: Instant,
    baseline_memory: usize,
}

/// One active plugin version and how it is bound.
pub struct Binding {
    pub name: Arc<str>,
    pub origin: Origin,
    pub scope: Scope,
    pub order: i64,
    /// Runs only for tenants the embedder marked as limited.
    pub only_limited_tenants: bool,
    pub version: Arc<PluginVersion>,
    pub isolation: Isolation,
    pub failure: FailurePolicy,
    pub limits: CallLimits,
    pub output: OutputLimits,
    pub max_concurrent_calls: u32,
    breaker: Breaker,
    slots: Semaphore,
    ctx: Arc<BindingContext>,
    calls: CallMetrics,
    /// `limits.timeout` in epoch ticks, computed once (it takes a 128-bit division).
    deadline_ticks: u64,
    engine: PluginEngine,
    idle: Mutex<Vec<Pooled>>,
}

impl std::fmt::Debug for Binding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Binding")
            .field("name", &self.name)
            .field("origin", &self.origin)
            .field("scope", &self.scope)
            .field("version", &self.version.version)
            .field("isolation", &self.isolation)
            .field("failure", &self.failure)
            .finish()
    }
}

impl Binding {
    pub(crate) fn new(
        engine: PluginEngine,
        version: Arc<PluginVersion>,
        ctx: BindingContext,
        placement: Placement,
        guards: Guards,
    ) -> Self {
        let limits = guards.limits;
        Binding {
            name: Arc::clone(&ctx.plugin),
            origin: placement.origin,
            scope: placement.scope,
            order: placement.order,
            only_limited_tenants: placement.only_limited_tenants,
            version,
            isolation: guards.isolation,
            failure: guards.failure,
            limits,
            output: guards.output,
            max_concurrent_calls: guards.max_concurrent_calls,
            breaker: guards.breaker,
            slots: Semaphore::new(usize::try_from(guards.max_concurrent_calls.max(1)).unwrap_or(usize::MAX)),
            calls: ctx.metrics.for_plugin(&ctx.plugin),
            deadline_ticks: engine.deadline_ticks(limits.timeout),
            ctx: Arc::new(ctx),
            engine,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Whether the binding runs for a request of `tenant` for `model`: its scope covers them
    /// and, for a binding that runs only for limited tenants, the tenant is one.
    pub fn runs_for(&self, tenant: &str, model: &str) -> bool {
        self.scope.applies(tenant, model) && (!self.only_limited_tenants || self.ctx.services.is_limited(tenant))
    }

    /// Whether `other` takes this binding's place in the chain when activated.
    pub fn same_slot(&self, other: &Binding) -> bool {
        match (&self.origin, &other.origin) {
            (Origin::Config, Origin::Config) => self.name == other.name && self.scope == other.scope,
            (Origin::Store { binding_id: a }, Origin::Store { binding_id: b }) => a == b,
            _ => false,
        }
    }

    pub fn exports(&self, hook: Hook) -> bool {
        self.version.exports(hook)
    }

    /// The capabilities its binding grants.
    pub fn grants(&self) -> Capabilities {
        self.ctx.capabilities
    }

    /// Its circuit breaker's state.
    pub fn breaker_state(&self) -> BreakerState {
        self.breaker.state()
    }

    /// A bounded label naming this binding among others of the same plugin (metrics, the live
    /// view): `config:<scope>` or `store:<id>`.
    pub fn label(&self) -> String {
        binding_label(&self.origin, &self.scope)
    }

    /// Instances kept warm right now (`reuse` only).
    pub fn idle_instances(&self) -> usize {
        self.idle.lock().map_or(0, |v| v.len())
    }

    async fn new_instance(&self) -> wasmtime::Result<Pooled> {
        if !self.version.calls_async {
            return self.new_instance_sync();
        }
        let mut store = self.new_store();
        let instance = self.version.pre.instantiate_async(&mut store).await?;
        Ok(self.pooled(store, instance))
    }

    /// For components that call synchronously only.
    fn new_instance_sync(&self) -> wasmtime::Result<Pooled> {
        let mut store = self.new_store();
        let instance = self.version.pre.instantiate(&mut store)?;
        Ok(self.pooled(store, instance))
    }

    fn new_store(&self) -> Store<HostState> {
        let state = HostState::new(Arc::clone(&self.ctx), self.limits.memory_bytes, TABLE_LIMIT);
        let mut store = Store::new(self.engine.engine(), state);
        store.limiter(|s| &mut s.limiter);
        if self.version.calls_async {
            // Instantiation runs under the deadline too (`arm` sets the call's own afterwards).
            store.data_mut().deadline = Instant::now() + self.limits.timeout;
            // Called on a fiber: give the thread back to other requests at every tick, and
            // interrupt at the deadline, so that a plugin that computes too long shares its
            // thread instead of holding it for the whole deadline.
            store.epoch_deadline_callback(|store| {
                Ok(if Instant::now() >= store.data().deadline {
                    UpdateDeadline::Interrupt
                } else {
                    UpdateDeadline::Yield(1)
                })
            });
        }
        store.set_epoch_deadline(self.epoch_deadline());
        store
    }

    /// Ticks until the epoch check: the whole deadline for synchronous calls, one tick for
    /// asynchronous ones (whose callback then yields or interrupts).
    fn epoch_deadline(&self) -> u64 {
        if self.version.calls_async { 1 } else { self.deadline_ticks }
    }

    fn pooled(&self, store: Store<HostState>, instance: Instance) -> Pooled {
        self.calls.instantiated();
        let baseline_memory = store.data().limiter.memory;
        Pooled { store, instance, guests: Guests::default(), calls: 0, born: Instant::now(), baseline_memory }
    }

    /// Lets a call in: the breaker must admit it and, for hooks that may wait, one of the
    /// binding's slots must be free by the deadline. Refusals are typed errors for the failure
    /// policy; they are not the plugin's failures and do not count against its breaker. Returns
    /// when the call's own deadline starts: `started`, or when a slot came free after a wait
    /// (the wait had its own bound; the clock is read again only then).
    async fn admit(
        &self,
        hook: Hook,
        started: Instant,
    ) -> Result<(Admission, SemaphorePermit<'_>, Instant), PluginError> {
        let admission = self.admit_breaker(hook)?;
        let (permit, started) = match self.slots.try_acquire() {
            Ok(permit) => (permit, started),
            Err(_) => {
                let wait = (started + self.limits.timeout).saturating_duration_since(Instant::now());
                // Waiting needs the runtime's timer; without one (a tool driving the host by
                // hand), a full binding refuses at once.
                let acquired = match tokio::runtime::Handle::try_current() {
                    Ok(_) => tokio::time::timeout(wait, self.slots.acquire()).await.ok().and_then(Result::ok),
                    Err(_) => None,
                };
                match acquired {
                    Some(permit) => (permit, Instant::now()),
                    None => {
                        // A probe that will not run leaves the breaker free to admit another.
                        self.breaker.abandon(admission);
                        let error = PluginError::Overloaded {
                            plugin: self.name.to_string(),
                            version: self.version.version.to_string(),
                            hook: hook.name(),
                        };
                        self.ctx.metrics.error(&self.name, error.kind());
                        return Err(error);
                    }
                }
            }
        };
        Ok((admission, permit, started))
    }

    fn admit_breaker(&self, hook: Hook) -> Result<Admission, PluginError> {
        match self.breaker.admit() {
            Admission::Refused => Err(PluginError::CircuitOpen {
                plugin: self.name.to_string(),
                version: self.version.version.to_string(),
                hook: hook.name(),
            }),
            admission => Ok(admission),
        }
    }

    /// An instance for one call started at `started` for a request of `tenant`, under a fresh
    /// deadline: a warm one (`reuse`) or a new one.
    async fn checkout(
        &self,
        hook: Hook,
        started: Instant,
        tenant: &str,
        request: Option<&Arc<RequestLimits>>,
    ) -> Result<Pooled, PluginError> {
        let pooled = match self.warm() {
            Some(p) => p,
            None => self.new_instance().await.map_err(|e| self.instantiate_error(hook, &e))?,
        };
        Ok(self.arm(pooled, started, tenant, request))
    }

    /// [`Binding::checkout`] for components that call synchronously only.
    fn checkout_sync(&self, hook: Hook, started: Instant, tenant: &str) -> Result<Pooled, PluginError> {
        let pooled = match self.warm() {
            Some(p) => p,
            None => self.new_instance_sync().map_err(|e| self.instantiate_error(hook, &e))?,
        };
        Ok(self.arm(pooled, started, tenant, None))
    }

    /// Passes a checkout's failure (an instantiation that trapped, say) to the breaker.
    fn told(&self, admission: Admission, checkout: Result<Pooled, PluginError>) -> Result<Pooled, PluginError> {
        if let Err(error) = &checkout {
            self.breaker.record(admission, error.trips_breaker());
        }
        checkout
    }

    fn warm(&self) -> Option<Pooled> {
        match self.isolation {
            Isolation::PerRequest => None,
            Isolation::Reuse { .. } => self.idle.lock().ok().and_then(|mut idle| idle.pop()),
        }
    }

    fn arm(&self, mut pooled: Pooled, started: Instant, tenant: &str, request: Option<&Arc<RequestLimits>>) -> Pooled {
        pooled.store.set_epoch_deadline(self.epoch_deadline());
        let state = pooled.store.data_mut();
        state.deadline = started + self.limits.timeout;
        state.limiter.hit = None;
        if *state.tenant != *tenant {
            state.tenant = Arc::from(tenant);
        }
        state.request = request.cloned();
        pooled
    }

    /// Ends a call: counts it, checks what it returned with `check`, recycles the instance if
    /// it is fit for another call, tells the breaker, and turns a failure into a typed error. A
    /// call abandoned mid-way (its future dropped) never gets here, so its instance is dropped
    /// too.
    fn finish<R>(
        &self,
        hook: Hook,
        admission: Admission,
        pooled: Pooled,
        started: Instant,
        result: wasmtime::Result<R>,
        check: impl FnOnce(&OutputLimits, &R) -> Result<(), String>,
    ) -> Result<R, PluginError> {
        let now = Instant::now();
        let mut pooled = pooled;
        // An idle instance must not keep the request's holds alive (they end when it ends).
        pooled.store.data_mut().request = None;
        pooled.store.data_mut().shape = None;
        pooled.store.data_mut().cache = None;
        self.calls.call(hook, now.saturating_duration_since(started));
        let outcome = match result {
            Ok(value) => {
                pooled.calls += 1;
                self.recycle(pooled, now);
                match check(&self.output, &value) {
                    Ok(()) => Ok(value),
                    Err(reason) => Err(PluginError::OutputLimit {
                        plugin: self.name.to_string(),
                        version: self.version.version.to_string(),
                        hook: hook.name(),
                        reason,
                    }),
                }
            }
            // A failed instance is never reused: its state is whatever the trap left.
            Err(e) => Err(self.classify(hook, &e, pooled.store.data().limiter.hit)),
        };
        match &outcome {
            Ok(_) => self.breaker.record(admission, false),
            Err(error) => {
                self.breaker.record(admission, error.trips_breaker());
                self.ctx.metrics.error(&self.name, error.kind());
                tracing::warn!(plugin = %self.name, version = %self.version.version, hook = hook.name(), error = %error, "plugin call failed");
            }
        }
        outcome
    }

    fn recycle(&self, pooled: Pooled, now: Instant) {
        let Isolation::Reuse { max_calls, max_age } = self.isolation else { return };
        let memory = pooled.store.data().limiter.memory;
        let grown = memory > pooled.baseline_memory.saturating_mul(2).max(pooled.baseline_memory + (1 << 20));
        if pooled.calls >= max_calls || now.saturating_duration_since(pooled.born) >= max_age || grown {
            return;
        }
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < MAX_IDLE
        {
            idle.push(pooled);
        }
    }

    fn instantiate_error(&self, hook: Hook, e: &wasmtime::Error) -> PluginError {
        let error = if e.downcast_ref::<Trap>().is_some() {
            self.classify(hook, e, None)
        } else {
            PluginError::Instantiate {
                plugin: self.name.to_string(),
                version: self.version.version.to_string(),
                reason: format!("{e:#}"),
            }
        };
        self.ctx.metrics.error(&self.name, error.kind());
        tracing::warn!(plugin = %self.name, version = %self.version.version, error = %error, "plugin instantiation failed");
        error
    }

    fn classify(&self, hook: Hook, e: &wasmtime::Error, limit: Option<&'static str>) -> PluginError {
        let plugin = self.name.to_string();
        let version = self.version.version.to_string();
        let hook = hook.name();
        if let Some(limit) = limit {
            return PluginError::Limit { plugin, version, hook, limit: limit.to_owned() };
        }
        if matches!(e.downcast_ref::<Trap>(), Some(Trap::Interrupt)) {
            return PluginError::Timeout { plugin, version, hook, deadline: self.limits.timeout };
        }
        PluginError::Trap { plugin, version, hook, message: format!("{e:#}") }
    }

    /// `on-request`; `None` when the plugin does not export it.
    pub async fn on_request(
        &self,
        info: &RequestInfo,
        headers: &Arc<HeaderMap>,
        body: &BodyResource,
        request: Option<&Arc<RequestLimits>>,
        cache: Option<&Arc<CacheSlot>>,
    ) -> Result<Option<RequestDecision>, PluginError> {
        let Some(export) = &self.version.hooks.on_request else { return Ok(None) };
        let generation = self.ctx.services.tenants_generation();
        // Only a plugin granted `limits` can have made a promise: the others pay nothing here.
        let limits = self.ctx.capabilities.has(Capability::Limits);
        if limits
            && let Some(request) = request
            && self.took_standing(info, generation, request).await
        {
            return Ok(Some(RequestDecision::Continue));
        }
        let started = Instant::now();
        let (admission, _permit, started) = self.admit(Hook::OnRequest, started).await?;
        let mut pooled = self.told(admission, self.checkout(Hook::OnRequest, started, &info.tenant, request).await)?;
        if limits {
            pooled.store.data_mut().shape = Some(RequestShape::of(info, generation));
        }
        if self.ctx.capabilities.has(Capability::ResponseCache) {
            pooled.store.data_mut().cache = cache.cloned();
        }
        let Pooled { store, instance, guests, .. } = &mut pooled;
        let result = async {
            let guest = export.guest(&mut guests.on_request, store, instance, load_versioned!(), load_versioned!())?;
            let h = store.data_mut().table.push(HeadersResource(Arc::clone(headers)))?.rep();
            let b = store.data_mut().table.push(body.clone())?.rep();
            // Lent as borrows: an owned handle would stay in the instance's handle table after
            // the call and a reused instance would run out of handles.
            let (h_borrow, b_borrow) = (Resource::new_borrow(h), Resource::new_borrow(b));
            let result = match guest {
                Export::Sync(Versioned::Current(g)) => g.call_on_request(&mut *store, info, h_borrow, b_borrow),
                Export::Async(Versioned::Current(g)) => g.call_on_request(&mut *store, info, h_borrow, b_borrow).await,
                Export::Sync(Versioned::V0_1(g)) => g
                    .call_on_request(&mut *store, &old::request_info(info), h_borrow, b_borrow)
                    .map(old::request_decision),
                Export::Async(Versioned::V0_1(g)) => g
                    .call_on_request(&mut *store, &old::request_info(info), h_borrow, b_borrow)
                    .await
                    .map(old::request_decision),
            };
            let table = &mut store.data_mut().table;
            let _ = table.delete(Resource::<HeadersResource>::new_own(h));
            let _ = table.delete(Resource::<BodyResource>::new_own(b));
            result
        }
        .await;
        self.finish(Hook::OnRequest, admission, pooled, started, result, |limits, decision| match decision {
            RequestDecision::Continue => Ok(()),
            RequestDecision::ContinueWith(changes) => limits.request_changes(changes),
            RequestDecision::Respond(response) => limits.local_response(response),
            RequestDecision::Deny(denial) => OutputLimits::denial_status(denial.status),
        })
        .map(Some)
    }

    /// Takes the limits the plugin promised for requests like this one (`acquire-standing`),
    /// in its place; `false` when there is no such promise under the current tenant settings,
    /// or the limits refuse, or their backend is away: then the plugin is called as usual.
    async fn took_standing(&self, info: &RequestInfo, generation: u64, request: &Arc<RequestLimits>) -> bool {
        let Some(plan) = self.ctx.standing.get_for(info, generation) else { return false };
        if plan.asks.is_empty() {
            return true;
        }
        let sizes = Sizes::of(info);
        let namespace = &self.ctx.namespace;
        if let Some(local) = request.limits().local_only() {
            match plan.take_local(local, &sizes, now_us()) {
                Planned::Granted { states, taken } => {
                    let remaining = request.record_planned(namespace, &plan, states, taken);
                    let shown = [plan.header_requests.is_some(), plan.header_tokens.is_some()];
                    plan.series(|| self.ctx.metrics.limit_series(&self.name, &info.tenant, shown)).granted(remaining);
                    return true;
                }
                Planned::Refused => return false,
                // A limit without state yet: the keyed path below creates it.
                Planned::Unresolved => {}
            }
        }
        let asks = plan.asks_for(&sizes);
        let Ok(grant) = request.limits().acquire(&asks, self.limits.timeout.min(MAX_LIMITS_WAIT)).await else {
            return false;
        };
        if !grant.decision.granted {
            return false;
        }
        self.ctx.metrics.limit_decision(&self.name, &info.tenant, "granted");
        request.record(namespace, grant, plan.cached_percent);
        // Indexes were checked when the plan was made.
        if let Ok(remaining) = request.set_ratelimit_headers(namespace, plan.header_requests, plan.header_tokens) {
            self.ctx.metrics.limit_remaining(&self.name, &info.tenant, remaining);
        }
        true
    }

    /// `route`; `None` when the plugin does not export it.
    pub async fn route(
        &self,
        tenant: &str,
        request: &RouteRequest,
        candidates: &[Candidate],
    ) -> Result<Option<RouteDecision>, PluginError> {
        let Some(export) = &self.version.hooks.route else { return Ok(None) };
        let started = Instant::now();
        let (admission, _permit, started) = self.admit(Hook::Route, started).await?;
        let mut pooled = self.told(admission, self.checkout(Hook::Route, started, tenant, None).await)?;
        let Pooled { store, instance, guests, .. } = &mut pooled;
        let result = async {
            match export.guest(&mut guests.route, store, instance, load_versioned!(), load_versioned!())? {
                Export::Sync(Versioned::Current(g)) => g.call_route(&mut *store, request, candidates),
                Export::Async(Versioned::Current(g)) => g.call_route(&mut *store, request, candidates).await,
                Export::Sync(Versioned::V0_1(g)) => g
                    .call_route(&mut *store, &old::route_request(request), &old::candidates(candidates))
                    .map(old::route_decision),
                Export::Async(Versioned::V0_1(g)) => g
                    .call_route(&mut *store, &old::route_request(request), &old::candidates(candidates))
                    .await
                    .map(old::route_decision),
            }
        }
        .await;
        self.finish(Hook::Route, admission, pooled, started, result, |_, _| Ok(())).map(Some)
    }

    /// `on-response-headers`; `None` when the plugin does not export it.
    pub async fn on_response_headers(
        &self,
        info: &RequestInfo,
        status: u16,
        headers: &Arc<HeaderMap>,
        request: Option<&Arc<RequestLimits>>,
    ) -> Result<Option<ResponseChanges>, PluginError> {
        let Some(export) = &self.version.hooks.on_response_headers else { return Ok(None) };
        let started = Instant::now();
        let (admission, _permit, started) = self.admit(Hook::OnResponseHeaders, started).await?;
        let mut pooled =
            self.told(admission, self.checkout(Hook::OnResponseHeaders, started, &info.tenant, request).await)?;
        let Pooled { store, instance, guests, .. } = &mut pooled;
        let result = async {
            let guests = &mut guests.on_response_headers;
            let guest = export.guest(guests, store, instance, load_versioned!(), load_versioned!())?;
            let h = store.data_mut().table.push(HeadersResource(Arc::clone(headers)))?.rep();
            let borrow = Resource::new_borrow(h);
            let result = match guest {
                Export::Sync(Versioned::Current(g)) => g.call_on_response_headers(&mut *store, info, status, borrow),
                Export::Async(Versioned::Current(g)) => {
                    g.call_on_response_headers(&mut *store, info, status, borrow).await
                }
                Export::Sync(Versioned::V0_1(g)) => g
                    .call_on_response_headers(&mut *store, &old::request_info(info), status, borrow)
                    .map(old::response_changes),
                Export::Async(Versioned::V0_1(g)) => g
                    .call_on_response_headers(&mut *store, &old::request_info(info), status, borrow)
                    .await
                    .map(old::response_changes),
            };
            let _ = store.data_mut().table.delete(Resource::<HeadersResource>::new_own(h));
            result
        }
        .await;
        self.finish(Hook::OnResponseHeaders, admission, pooled, started, result, OutputLimits::response_changes)
            .map(Some)
    }

    /// `on-response-chunk`; `None` when the plugin does not export it. Synchronous: the loader
    /// refuses components that export it and call asynchronously, so it never waits.
    pub fn on_response_chunk(
        &self,
        info: &RequestInfo,
        chunk: &ResponseChunk,
    ) -> Result<Option<ChunkDecision>, PluginError> {
        let Some(indices) = &self.version.hooks.on_response_chunk else { return Ok(None) };
        let started = Instant::now();
        let admission = self.admit_breaker(Hook::OnResponseChunk)?;
        let mut pooled = self.told(admission, self.checkout_sync(Hook::OnResponseChunk, started, &info.tenant))?;
        let Pooled { store, instance, guests, .. } = &mut pooled;
        let result = match &guests.on_response_chunk {
            Some(guest) => Ok(guest.clone()),
            None => match indices {
                Versioned::Current(i) => i.load(&mut *store, instance).map(Versioned::Current),
                Versioned::V0_1(i) => i.load(&mut *store, instance).map(Versioned::V0_1),
            }
            .inspect(|g| guests.on_response_chunk = Some(g.clone())),
        }
        .and_then(|guest| match guest {
            Versioned::Current(g) => g.call_on_response_chunk(&mut *store, info, chunk),
            Versioned::V0_1(g) => g
                .call_on_response_chunk(&mut *store, &old::request_info(info), &old::response_chunk(chunk))
                .map(old::chunk_decision),
        });
        self.finish(Hook::OnResponseChunk, admission, pooled, started, result, |limits, decision| match decision {
            ChunkDecision::Replace(text) => limits.chunk(text),
            ChunkDecision::Forward | ChunkDecision::Drop => Ok(()),
        })
        .map(Some)
    }

    /// `on-response-done`; `false` when the plugin does not export it.
    pub async fn on_response_done(
        &self,
        info: &RequestInfo,
        done: &ResponseDone,
        request: Option<&Arc<RequestLimits>>,
    ) -> Result<bool, PluginError> {
        let Some(export) = &self.version.hooks.on_response_done else { return Ok(false) };
        let started = Instant::now();
        let (admission, _permit, started) = self.admit(Hook::OnResponseDone, started).await?;
        let mut pooled =
            self.told(admission, self.checkout(Hook::OnResponseDone, started, &info.tenant, request).await)?;
        let Pooled { store, instance, guests, .. } = &mut pooled;
        let result = async {
            let guests = &mut guests.on_response_done;
            match export.guest(guests, store, instance, load_versioned!(), load_versioned!())? {
                Export::Sync(Versioned::Current(g)) => g.call_on_response_done(&mut *store, info, done),
                Export::Async(Versioned::Current(g)) => g.call_on_response_done(&mut *store, info, done).await,
                Export::Sync(Versioned::V0_1(g)) => {
                    g.call_on_response_done(&mut *store, &old::request_info(info), &old::response_done(done))
                }
                Export::Async(Versioned::V0_1(g)) => {
                    g.call_on_response_done(&mut *store, &old::request_info(info), &old::response_done(done)).await
                }
            }
        }
        .await;
        self.finish(Hook::OnResponseDone, admission, pooled, started, result, |_, ()| Ok(())).map(|()| true)
    }
}
