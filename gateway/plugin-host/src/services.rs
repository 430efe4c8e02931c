//! What the host capabilities are backed by: in-process counters ([`crate::counters`]) and cache
//! ([`crate::cache`]), namespaced per plugin and tenant by the host, and the embedder's
//! transport for the network capabilities ([`crate::io`]).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use arc_swap::ArcSwap;

use crate::cache::Cache;
use crate::counters::Counters;
use crate::io::PluginIo;
use crate::limits::Limits;

/// Everything the capabilities share across plugins and calls.
#[derive(Debug)]
pub struct HostServices {
    pub counters: Counters,
    pub cache: Cache,
    /// The `limits` capability's state: in-process, or in Redis.
    pub limits: Arc<Limits>,
    /// Tenant name → settings as JSON, for `config.tenant`.
    tenants: ArcSwap<HashMap<String, String>>,
    /// Bumped whenever `tenants` is replaced: standing limits hold for one generation.
    tenants_generation: AtomicU64,
    /// Tenants with limits, for bindings that run only for them.
    /// Looked up for every request a limiter is bound for: a fast hash, since tenant names are
    /// the operator's, not the client's.
    limited: ArcSwap<HashSet<String, foldhash::fast::RandomState>>,
    /// The zero of `clock.monotonic-now`.
    pub epoch: Instant,
    /// The transport of `http` and `embeddings`, once the embedder provides one.
    io: OnceLock<Arc<dyn PluginIo>>,
}

impl Default for HostServices {
    fn default() -> Self {
        HostServices {
            counters: Counters::default(),
            cache: Cache::default(),
            limits: Arc::new(Limits::local()),
            tenants: ArcSwap::from_pointee(HashMap::new()),
            tenants_generation: AtomicU64::new(0),
            limited: ArcSwap::from_pointee(HashSet::default()),
            epoch: Instant::now(),
            io: OnceLock::new(),
        }
    }
}

impl HostServices {
    /// Services whose `limits` use `limits` (shared through Redis, say).
    pub fn with_limits(limits: Limits) -> Self {
        HostServices { limits: Arc::new(limits), ..HostServices::default() }
    }

    /// Replaces the tenant settings plugins can read.
    pub fn set_tenants(&self, tenants: HashMap<String, String>) {
        self.tenants.store(Arc::new(tenants));
        self.tenants_generation.fetch_add(1, Ordering::Release);
    }

    /// Which replacement of the tenant settings is current (see [`HostServices::set_tenants`]).
    pub fn tenants_generation(&self) -> u64 {
        self.tenants_generation.load(Ordering::Acquire)
    }

    /// Replaces the tenants that bindings marked `only_limited_tenants` run for.
    pub fn set_limited_tenants(&self, tenants: HashSet<String>) {
        self.limited.store(Arc::new(tenants.into_iter().collect()));
    }

    pub fn is_limited(&self, tenant: &str) -> bool {
        self.limited.load().contains(tenant)
    }

    pub fn tenant(&self, name: &str) -> Option<String> {
        self.tenants.load().get(name).cloned()
    }

    /// Gives `http` and `embeddings` their transport. Set once, before plugins need it; a second
    /// call is ignored and returns `false`.
    pub fn set_io(&self, io: Arc<dyn PluginIo>) -> bool {
        self.io.set(io).is_ok()
    }

    pub fn io(&self) -> Option<Arc<dyn PluginIo>> {
        self.io.get().cloned()
    }
}
