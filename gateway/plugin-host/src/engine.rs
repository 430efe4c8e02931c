//! The one wasmtime [`Engine`] every plugin runs in, and the ticker that drives its epochs.
//!
//! Configured once: the component model, the pooling allocator (instances come from
//! preallocated slots; linear memories are initialised copy-on-write from each component's
//! memory image, so instantiation costs microseconds), and epoch interruption (a call's deadline
//! is a number of ticks; the ticker thread advances the epoch every [`EngineSettings::tick`]).
//! Epochs rather than fuel: checking an epoch is a load and a compare at loop heads and function
//! entries, where fuel counts every instruction.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, OptLevel, PoolingAllocationConfig};

/// How much of a freed slot's memory stays resident when the kernel can tell which pages were
/// dirtied: a Rust plugin's stack (1 MiB by default, at the bottom of memory) plus its data and a
/// working heap.
const KEEP_RESIDENT_WITH_SCAN: usize = 2 << 20;

/// Address space reserved per linear memory when the pool can afford it: every address a
/// 32-bit memory can form then lands inside the reservation (or its guard), so compiled plugin
/// code needs no bounds check on its loads and stores; an access past the memory's end hits an
/// unmapped page and traps. Address space, not memory: nothing is committed until touched.
const FULL_RESERVATION: u64 = 1 << 32;
/// Memory slots per component instance in the pool.
const MEMORIES_PER_INSTANCE: u64 = 2;
/// wasmtime's default guard after each memory (covers static offsets of loads and stores).
const GUARD: u64 = 32 << 20;
/// The most address space one engine's memory pool may reserve: an eighth of the 128 TiB a
/// 64-bit Linux process has, so several engines (tests build one per gateway) still fit.
const MAX_POOL_ADDRESS_SPACE: u64 = 16 << 40;

/// Sizes of the engine's pool; per-binding limits must fit inside them.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// Component instances alive at once, across all plugins (per-request calls in flight plus
    /// reused instances kept warm).
    pub max_instances: u32,
    /// The largest linear memory any plugin may have; each binding sets its own lower limit.
    pub max_memory_bytes: usize,
    /// How often the epoch advances; deadlines are rounded up to whole ticks.
    pub tick: Duration,
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings { max_instances: 1000, max_memory_bytes: 64 << 20, tick: Duration::from_millis(1) }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("configuring the WebAssembly engine: {0}")]
pub struct EngineError(String);

/// The shared engine and its epoch ticker. Cheap to clone; the ticker stops when the last clone
/// is dropped.
#[derive(Clone)]
pub struct PluginEngine {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    settings: EngineSettings,
    stop: Arc<AtomicBool>,
    ticker: Option<JoinHandle<()>>,
}

impl PluginEngine {
    pub fn new(settings: EngineSettings) -> Result<Self, EngineError> {
        let tight = settings.max_memory_bytes as u64;
        let engine = match memory_reservation(&settings) {
            // The process may not have that much address space to give (a `ulimit -v`, or
            // several engines in one test process); plugins then run with explicit bounds checks.
            full if full > tight => engine(&settings, full).or_else(|e| {
                tracing::info!(error = %e, "plugin memory pool: no room for guard-page bounds checks; using explicit checks");
                engine(&settings, tight)
            })?,
            reservation => engine(&settings, reservation)?,
        };

        let stop = Arc::new(AtomicBool::new(false));
        let ticker = {
            let engine = engine.clone();
            let stop = Arc::clone(&stop);
            let tick = settings.tick;
            std::thread::Builder::new()
                .name("sluice-plugin-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(tick);
                        engine.increment_epoch();
                    }
                })
                .map_err(|e| EngineError(format!("starting the epoch ticker: {e}")))?
        };
        Ok(PluginEngine { inner: Arc::new(Inner { engine, settings, stop, ticker: Some(ticker) }) })
    }

    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    pub fn settings(&self) -> &EngineSettings {
        &self.inner.settings
    }

    /// A deadline of `timeout` in ticks: rounded up, plus one because the first tick may come
    /// at any moment.
    pub fn deadline_ticks(&self, timeout: Duration) -> u64 {
        let tick = self.inner.settings.tick.as_nanos().max(1);
        let ticks = timeout.as_nanos().div_ceil(tick);
        u64::try_from(ticks).unwrap_or(u64::MAX).saturating_add(1)
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(ticker) = self.ticker.take() {
            let _ = ticker.join();
        }
    }
}

fn engine(settings: &EngineSettings, memory_reservation: u64) -> Result<Engine, EngineError> {
    let mut pool = PoolingAllocationConfig::new();
    let instances = settings.max_instances.max(1);
    // A Rust component is a handful of core instances (the program, shims for its imports)
    // with one memory and a few tables.
    pool.total_component_instances(instances)
        .total_core_instances(instances.saturating_mul(4))
        .total_memories(instances.saturating_mul(MEMORIES_PER_INSTANCE as u32))
        .total_tables(instances.saturating_mul(4))
        .max_core_instances_per_component(16)
        .max_memories_per_component(2)
        .max_tables_per_component(8)
        .max_memory_size(settings.max_memory_bytes)
        // Keep the pages a freed slot touched resident (reset by memset rather than
        // unmapped), so the next instance of the same component runs without page faults.
        // With PAGEMAP_SCAN (Linux 6.7+) only the pages actually dirtied are reset, so a
        // generous bound costs nothing for a plugin that touches little; without it the
        // lowest `keep_resident` bytes are memset every time, hence the smaller fallback.
        .pagemap_scan(Enabled::Auto)
        .linear_memory_keep_resident(if PoolingAllocationConfig::is_pagemap_scan_available() {
            KEEP_RESIDENT_WITH_SCAN
        } else {
            64 << 10
        })
        .table_keep_resident(16 << 10);

    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        .memory_init_cow(true)
        .cranelift_opt_level(OptLevel::Speed)
        .parallel_compilation(true)
        .memory_reservation(memory_reservation)
        .memory_reservation_for_growth(0)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Engine::new(&config).map_err(|e| EngineError(format!("{e:#}")))
}

/// 4 GiB per memory when the pool's slots fit in [`MAX_POOL_ADDRESS_SPACE`] (up to ~2,000
/// instances), so the compiler elides bounds checks; otherwise exactly the largest memory a
/// plugin may have, with explicit bounds checks in the compiled code (slower plugin code, but a
/// pool of any size fits).
fn memory_reservation(settings: &EngineSettings) -> u64 {
    let memories = u64::from(settings.max_instances.max(1)).saturating_mul(MEMORIES_PER_INSTANCE);
    let largest = settings.max_memory_bytes as u64;
    if largest <= FULL_RESERVATION && memories.saturating_mul(FULL_RESERVATION + GUARD) <= MAX_POOL_ADDRESS_SPACE {
        FULL_RESERVATION
    } else {
        largest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_pools_get_guard_page_bounds_checks_and_huge_ones_fall_back() {
        assert_eq!(memory_reservation(&EngineSettings::default()), FULL_RESERVATION);
        let huge = EngineSettings { max_instances: 100_000, ..EngineSettings::default() };
        assert_eq!(memory_reservation(&huge), 64 << 20);
    }
}
