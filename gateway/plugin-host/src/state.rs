//! What a plugin's `Store` holds: its resource table, its limits, and the binding it serves.
//! The host side of every capability is implemented on [`HostState`] in `crate::host_impl`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, format_err};

use crate::capability::{Capabilities, Capability};
use crate::io::AllowList;
use crate::metrics::PluginMetrics;
use crate::services::HostServices;

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
}

impl HostState {
    pub fn new(binding: Arc<BindingContext>, memory_limit: usize, table_limit: usize) -> Self {
        HostState {
            table: ResourceTable::new(),
            limiter: Limiter::new(memory_limit, table_limit),
            binding,
            deadline: Instant::now(),
        }
    }

    /// What is left of the current call's deadline, at most `cap`.
    pub fn remaining(&self, cap: Duration) -> Duration {
        self.deadline.saturating_duration_since(Instant::now()).min(cap)
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
