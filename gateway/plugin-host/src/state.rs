//! What a plugin's `Store` holds: its resource table, its limits, and the binding it serves.
//! The host side of every capability is implemented on [`HostState`] in `crate::host_impl`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, format_err};

use crate::binding::Scope;
use crate::bindings::types::StateScope;
use crate::capability::{Capabilities, Capability};
use crate::io::AllowList;
use crate::limits::RequestLimits;
use crate::limits::standing::{RequestShape, Standing};
use crate::metrics::PluginMetrics;
use crate::namespace::{Namespace, Owner};
use crate::response_cache::CacheSlot;
use crate::services::HostServices;

/// Log lines one binding may write per second; the rest are dropped and counted.
const LOG_LINES_PER_SECOND: u64 = 100;

/// The binding an instance serves: who it is, what it may use, its config.
#[derive(Debug)]
pub struct BindingContext {
    pub plugin: Arc<str>,
    pub version: Arc<str>,
    pub capabilities: Capabilities,
    /// The binding's `config` table as JSON.
    pub config_json: String,
    /// Where the `http` capability may go.
    pub http_allow: AllowList,
    pub services: Arc<HostServices>,
    pub metrics: PluginMetrics,
    /// Where its `counters` and `cache` keys live.
    pub namespace: Namespace,
    /// The binding's scope, which decides whose state `state-scope.binding` names.
    pub scope: Scope,
    pub log_budget: LogBudget,
    /// The limits its plugin promised to take per tenant, key and model (`acquire-standing`).
    pub standing: Standing,
}

impl BindingContext {
    /// Whose state `scope` names for a call serving `request_tenant`.
    pub fn owner(&self, request_tenant: &Arc<str>, scope: StateScope) -> Owner {
        Owner::resolve(&self.namespace, &self.scope, request_tenant, scope)
    }
}

/// A per-second budget of log lines, so that a plugin logging in a loop cannot flood the
/// gateway's log.
#[derive(Debug, Default)]
pub struct LogBudget {
    /// The second (since the host's epoch) the count is for, and the count, packed as
    /// `second << 20 | count` so that one atomic holds both.
    state: AtomicU64,
}

impl LogBudget {
    /// Whether a line may be written at `second`.
    pub fn admit(&self, second: u64) -> bool {
        let mut current = self.state.load(Ordering::Relaxed);
        loop {
            let (at, count) = (current >> 20, current & 0xF_FFFF);
            let next = if at == second { (second << 20) | (count + 1).min(0xF_FFFF) } else { (second << 20) | 1 };
            if at == second && count >= LOG_LINES_PER_SECOND {
                return false;
            }
            match self.state.compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(seen) => current = seen,
            }
        }
    }
}

/// Memory and table limits for one store, remembering which one was hit so the error can say
/// so, and how large the memory has grown (reused instances are recycled when it grows).
#[derive(Debug)]
pub struct Limiter {
    memory_limit: usize,
    table_limit: usize,
    /// Current linear memory size in bytes (the largest memory, for multi-memory components).
    pub memory: usize,
    /// The limit that refused a growth since the last reset.
    pub hit: Option<&'static str>,
}

impl Limiter {
    pub fn new(memory_limit: usize, table_limit: usize) -> Self {
        Limiter { memory_limit, table_limit, memory: 0, hit: None }
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.memory_limit {
            self.hit = Some("memory");
            return Err(format_err!("memory limit of {} bytes reached (wanted {desired})", self.memory_limit));
        }
        self.memory = self.memory.max(desired);
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.table_limit {
            self.hit = Some("table");
            return Err(format_err!("table limit of {} elements reached (wanted {desired})", self.table_limit));
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        32
    }

    fn tables(&self) -> usize {
        32
    }

    fn memories(&self) -> usize {
        4
    }
}

/// A plugin store's data.
pub struct HostState {
    pub table: ResourceTable,
    pub limiter: Limiter,
    pub binding: Arc<BindingContext>,
    /// When the current call's deadline passes; host calls that wait (`http`, `embeddings`)
    /// give up by then, since the plugin is interrupted at its next epoch check anyway.
    pub deadline: Instant,
    /// The tenant of the request the current call serves.
    pub tenant: Arc<str>,
    /// The holds of the request the current call serves (`limits`); none between calls, so that
    /// an idle instance never keeps a request's holds alive.
    pub request: Option<Arc<RequestLimits>>,
    /// What `acquire-standing` needs of the request the current `on-request` call serves.
    pub shape: Option<RequestShape>,
    /// Where `response-cache` calls of the current `on-request` call go.
    pub cache: Option<Arc<CacheSlot>>,
}

impl HostState {
    pub fn new(binding: Arc<BindingContext>, memory_limit: usize, table_limit: usize) -> Self {
        HostState {
            table: ResourceTable::new(),
            limiter: Limiter::new(memory_limit, table_limit),
            binding,
            deadline: Instant::now(),
            tenant: Arc::from(""),
            request: None,
            shape: None,
            cache: None,
        }
    }

    /// What is left of the current call's deadline, at most `cap`.
    pub fn remaining(&self, cap: Duration) -> Duration {
        self.deadline.saturating_duration_since(Instant::now()).min(cap)
    }

    /// Whose state `scope` names in the current call.
    pub fn owner(&self, scope: StateScope) -> Owner {
        self.binding.owner(&self.tenant, scope)
    }

    /// Refuses (traps) a capability the binding does not grant. Load-time checks make this
    /// unreachable for well-formed components; it is the second line.
    pub fn grant(&self, capability: Capability) -> wasmtime::Result<()> {
        if self.binding.capabilities.has(capability) {
            Ok(())
        } else {
            Err(format_err!("capability `{capability}` is not granted to plugin {}", self.binding.plugin))
        }
    }
}
