//! [`PluginHost`]: the engine, the artifact cache, the shared services, and the active chain.
//!
//! Loading compiles and checks a component off the hot path; activating swaps a new [`Chain`]
//! in atomically. Requests hold the chain they started with, so in-flight requests finish on
//! the versions they began with. Rollback re-activates the binding a swap replaced.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use prometheus::Registry;

use crate::artifacts::ArtifactCache;
use crate::binding::{
    Binding, CallLimits, FailurePolicy, Guards, Isolation, Origin, Placement, Scope, binding_label,
    default_concurrent_calls,
};
use crate::breaker::{Breaker, BreakerSettings};
use crate::builtin;
use crate::capability::Capabilities;
use crate::chain::Chain;
use crate::engine::{EngineError, EngineSettings, PluginEngine};
use crate::error::PluginError;
use crate::io::AllowList;
use crate::limits::standing::Standing;
use crate::limits::{Limits, Shared};
use crate::loader::{Hook, PluginVersion};
use crate::metrics::PluginMetrics;
use crate::namespace::Namespace;
use crate::output::OutputLimits;
use crate::services::HostServices;
use crate::state::{BindingContext, LogBudget};

/// Where a plugin's component comes from.
#[derive(Debug, Clone)]
pub enum PluginSource {
    /// Built into the binary (`builtin:router`).
    Builtin(String),
    File(PathBuf),
    Bytes(Arc<[u8]>),
}

/// Everything needed to load and bind one plugin.
#[derive(Debug, Clone)]
pub struct BindingSpec {
    pub name: String,
    pub source: PluginSource,
    pub origin: Origin,
    pub scope: Scope,
    pub capabilities: Capabilities,
    pub isolation: Isolation,
    pub failure: FailurePolicy,
    pub order: i64,
    pub limits: CallLimits,
    /// The binding's config as JSON, for `config.binding`.
    pub config_json: String,
    /// Hosts (`host` or `host:port`) the `http` capability may reach; empty: none.
    pub http_allow: Vec<String>,
    /// Hooks the component must export.
    pub required: Vec<Hook>,
    /// When its circuit breaker opens and closes.
    pub breaker: BreakerSettings,
    /// Calls that may run at once; `None`: [`default_concurrent_calls`].
    pub max_concurrent_calls: Option<u32>,
    /// A `counters`/`cache` namespace shared with the other bindings granted the same name
    /// (an admin's grant); `None`: the plugin's own.
    pub state_namespace: Option<String>,
    /// Run only for tenants the embedder marked as limited ([`HostServices::set_limited_tenants`]):
    /// the built-in rate limiter costs nothing for a tenant without limits.
    pub only_limited_tenants: bool,
}

/// The default isolation; see docs/plugins.md for the measurements behind it.
pub const DEFAULT_ISOLATION: Isolation = Isolation::Reuse { max_calls: 10_000, max_age: Duration::from_secs(60) };

impl BindingSpec {
    /// A spec with the defaults: a global config binding, no capabilities, the default
    /// isolation, fail-closed, order 0, a 10 ms deadline and 16 MiB of memory.
    pub fn new(name: impl Into<String>, source: PluginSource) -> Self {
        BindingSpec {
            name: name.into(),
            source,
            origin: Origin::Config,
            scope: Scope::Global,
            capabilities: Capabilities::none(),
            isolation: DEFAULT_ISOLATION,
            failure: FailurePolicy::Closed,
            order: 0,
            limits: CallLimits { timeout: Duration::from_millis(10), memory_bytes: 16 << 20 },
            config_json: "{}".to_owned(),
            http_allow: Vec::new(),
            required: Vec::new(),
            breaker: BreakerSettings::default(),
            max_concurrent_calls: None,
            state_namespace: None,
            only_limited_tenants: false,
        }
    }

    /// The built-in router: routes, nothing else; fails open to the host's own choice.
    pub fn builtin_router() -> Self {
        BindingSpec {
            failure: FailurePolicy::Open,
            order: i64::MAX,
            required: vec![Hook::Route],
            ..BindingSpec::new("router", PluginSource::Builtin("router".to_owned()))
        }
    }

    /// The built-in rate limiter: the tenants' stored limits, enforced before any other
    /// on-request plugin runs. Fails open: a limiter that fails must not take the API down (its
    /// breaker and metrics say so); bind it explicitly with `failure = "closed"` to refuse instead.
    pub fn builtin_ratelimit() -> Self {
        BindingSpec {
            failure: FailurePolicy::Open,
            order: RATELIMIT_ORDER,
            capabilities: crate::builtin::capabilities("ratelimit"),
            // A decision may wait for Redis (`[redis] timeout`, 50 ms by default) on a fiber.
            limits: CallLimits { timeout: Duration::from_millis(250), memory_bytes: 16 << 20 },
            // Without a config of its own it enforces tenants' stored limits only, so a tenant
            // without any is not its business.
            only_limited_tenants: true,
            ..BindingSpec::new("ratelimit", PluginSource::Builtin("ratelimit".to_owned()))
        }
    }
}

/// Where the built-in rate limiter runs among the on-request plugins: before the others, so
/// that a request over its limits costs no other plugin's work (a cache lookup, say).
pub const RATELIMIT_ORDER: i64 = -1_000_000;

/// The built-in plugins bound unless a binding of the same name replaces them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Builtins {
    pub router: bool,
    pub ratelimit: bool,
}

impl Default for Builtins {
    fn default() -> Self {
        Builtins { router: true, ratelimit: true }
    }
}

/// Host-wide settings.
#[derive(Debug, Clone)]
pub struct HostSettings {
    pub engine: EngineSettings,
    /// Directory of precompiled artifacts; `None` compiles every time.
    pub cache_dir: Option<PathBuf>,
    /// What every plugin's output is held to.
    pub output: OutputLimits,
    /// The longest deadline a stored binding (admin API) may have.
    pub max_timeout: Duration,
    /// Where `limits` keeps its state: Redis, shared by every replica; `None`, this process.
    pub shared_limits: Option<crate::limits::SharedSettings>,
}

impl Default for HostSettings {
    fn default() -> Self {
        HostSettings {
            engine: EngineSettings::default(),
            cache_dir: None,
            output: OutputLimits::default(),
            // The config file's own ceiling; `[plugin_host] max_timeout` sets a lower one.
            max_timeout: Duration::from_secs(10),
            shared_limits: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("registering plugin metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error(transparent)]
    Plugin(#[from] PluginError),
}

pub struct PluginHost {
    engine: PluginEngine,
    output: OutputLimits,
    max_timeout: Duration,
    artifacts: ArtifactCache,
    services: Arc<HostServices>,
    metrics: PluginMetrics,
    chain: ArcSwap<Chain>,
    /// Bindings replaced by activations, most recent last, for rollback.
    replaced: Mutex<HashMap<Arc<str>, Vec<Arc<Binding>>>>,
}

impl std::fmt::Debug for PluginHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginHost").field("chain", &self.chain.load()).finish()
    }
}

impl PluginHost {
    /// A host with an empty chain; metrics are registered in `registry`.
    pub fn new(settings: HostSettings, registry: &Registry) -> Result<Self, HostError> {
        let metrics = PluginMetrics::new(registry)?;
        let services = match settings.shared_limits {
            Some(shared) => {
                HostServices::with_limits(Limits::with_shared(Shared::new(shared, Some(metrics.limits.clone()))))
            }
            None => HostServices::default(),
        };
        Ok(PluginHost {
            engine: PluginEngine::new(settings.engine)?,
            output: settings.output,
            max_timeout: settings.max_timeout,
            artifacts: ArtifactCache::new(settings.cache_dir),
            services: Arc::new(services),
            metrics,
            chain: ArcSwap::from_pointee(Chain::default()),
            replaced: Mutex::new(HashMap::new()),
        })
    }

    /// A host with `specs` loaded and active, and the `builtins` no spec of the same name
    /// replaces.
    pub fn with_bindings(
        settings: HostSettings,
        registry: &Registry,
        specs: Vec<BindingSpec>,
        builtins: Builtins,
    ) -> Result<Self, HostError> {
        let host = PluginHost::new(settings, registry)?;
        let mut specs = specs;
        if builtins.router && !specs.iter().any(|s| s.name == "router") {
            specs.push(BindingSpec::builtin_router());
        }
        if builtins.ratelimit && !specs.iter().any(|s| s.name == "ratelimit") {
            specs.push(BindingSpec::builtin_ratelimit());
        }
        let bindings = specs.into_iter().map(|s| host.load(s).map(Arc::new)).collect::<Result<Vec<_>, _>>()?;
        host.chain.store(Arc::new(Chain::new(bindings)));
        Ok(host)
    }

    pub fn services(&self) -> &Arc<HostServices> {
        &self.services
    }

    pub fn engine(&self) -> &PluginEngine {
        &self.engine
    }

    /// The longest deadline a stored binding may have (`[plugin_host] max_timeout`).
    pub fn max_timeout(&self) -> Duration {
        self.max_timeout
    }

    /// Compiles and checks an uploaded component against the contract with this host's engine
    /// (warming the artifact cache for when it is bound), returning its manifest.
    pub fn inspect(&self, name: &str, bytes: &[u8]) -> Result<crate::inspect::Manifest, PluginError> {
        crate::inspect::inspect(&self.engine, &self.artifacts, name, bytes)
    }

    /// The active chain. Hold it for the whole request.
    pub fn chain(&self) -> Arc<Chain> {
        self.chain.load_full()
    }

    /// Compiles and checks `spec`'s component and prepares its binding, without activating it.
    /// Compiling takes milliseconds to seconds: call it off the request path (from
    /// `spawn_blocking`, say).
    pub fn load(&self, spec: BindingSpec) -> Result<Binding, PluginError> {
        if spec.limits.memory_bytes > self.engine.settings().max_memory_bytes {
            return Err(PluginError::Incompatible {
                plugin: spec.name,
                version: "-".to_owned(),
                reason: format!(
                    "its memory limit exceeds the engine's {} bytes",
                    self.engine.settings().max_memory_bytes
                ),
            });
        }
        // The ceiling is for bindings made through the admin API; the config file's are the
        // operator's own (1 ms to 10 s, checked when the config is read).
        if matches!(spec.origin, Origin::Store { .. })
            && (spec.limits.timeout.is_zero() || spec.limits.timeout > self.max_timeout)
        {
            return Err(PluginError::InvalidBinding {
                plugin: spec.name,
                reason: format!(
                    "its deadline of {:?} is not between 1 ms and {:?}",
                    spec.limits.timeout, self.max_timeout
                ),
            });
        }
        let http_allow = AllowList::parse(&spec.http_allow)
            .map_err(|reason| PluginError::InvalidBinding { plugin: spec.name.clone(), reason })?;
        let bytes: Arc<[u8]> = match &spec.source {
            PluginSource::Bytes(b) => Arc::clone(b),
            PluginSource::File(path) => std::fs::read(path).map(Arc::from).map_err(|e| PluginError::Io {
                plugin: spec.name.clone(),
                path: path.display().to_string(),
                reason: e.to_string(),
            })?,
            PluginSource::Builtin(name) => match builtin::component(name) {
                Some(b) => Arc::from(b),
                None => {
                    return Err(PluginError::Io {
                        plugin: spec.name.clone(),
                        path: format!("builtin:{name}"),
                        reason: format!("no built-in plugin named {name:?} (built-ins: {})", builtin::NAMES.join(", ")),
                    });
                }
            },
        };
        let version =
            PluginVersion::load(&self.engine, &self.artifacts, &spec.name, &bytes, spec.capabilities, &spec.required)?;
        tracing::info!(
            plugin = %version.name, version = %version.version, provenance = ?version.provenance,
            "plugin loaded"
        );
        let namespace = match &spec.state_namespace {
            Some(shared) => Namespace::shared(shared),
            None => Namespace::plugin(&version.name),
        };
        let label = binding_label(&spec.origin, &spec.scope);
        let guards = Guards {
            isolation: spec.isolation,
            failure: spec.failure,
            limits: spec.limits,
            breaker: Breaker::new(spec.breaker, Some(self.metrics.breaker(&version.name, &label))),
            max_concurrent_calls: spec
                .max_concurrent_calls
                .unwrap_or_else(|| default_concurrent_calls(version.calls_async, &spec.scope))
                .max(1),
            output: self.output,
        };
        let ctx = BindingContext {
            plugin: Arc::clone(&version.name),
            version: Arc::clone(&version.version),
            capabilities: spec.capabilities,
            config_json: spec.config_json,
            http_allow,
            services: Arc::clone(&self.services),
            metrics: self.metrics.clone(),
            namespace,
            scope: spec.scope.clone(),
            log_budget: LogBudget::default(),
            standing: Standing::default(),
        };
        Ok(Binding::new(
            self.engine.clone(),
            Arc::new(version),
            ctx,
            Placement {
                origin: spec.origin,
                scope: spec.scope,
                order: spec.order,
                only_limited_tenants: spec.only_limited_tenants,
            },
            guards,
        ))
    }

    /// Makes `binding` active, replacing the binding in the same slot (see
    /// [`Binding::same_slot`]) or adding it. Requests already running keep the chain they
    /// started with.
    pub fn activate(&self, binding: Arc<Binding>) {
        let name = Arc::clone(&binding.name);
        let mut replaced = None;
        self.chain.rcu(|current| {
            let mut bindings: Vec<Arc<Binding>> = Vec::with_capacity(current.bindings().len() + 1);
            replaced = None;
            for b in current.bindings() {
                if b.same_slot(&binding) {
                    replaced = Some(Arc::clone(b));
                } else {
                    bindings.push(Arc::clone(b));
                }
            }
            bindings.push(Arc::clone(&binding));
            Chain::new(bindings)
        });
        if let Some(old) = replaced
            && let Ok(mut history) = self.replaced.lock()
        {
            tracing::info!(plugin = %name, from = %old.version.version, to = %binding.version.version, "plugin swapped");
            let list = history.entry(Arc::clone(&name)).or_default();
            list.push(old);
            // Keep a few versions to roll back to.
            if list.len() > 4 {
                list.remove(0);
            }
        }
    }

    /// Loads and activates in one step.
    pub fn load_and_activate(&self, spec: BindingSpec) -> Result<Arc<Binding>, PluginError> {
        let binding = Arc::new(self.load(spec)?);
        self.activate(Arc::clone(&binding));
        Ok(binding)
    }

    /// Replaces every binding that came from the store with `bindings`, in one swap: the
    /// store's view of plugins and bindings is applied whole, so a request never sees half of
    /// an admin change. Config-file bindings (and the built-in router) stay.
    pub fn replace_store_bindings(&self, bindings: Vec<Arc<Binding>>) {
        self.chain.rcu(|current| {
            let kept = current.bindings().iter().filter(|b| b.origin == Origin::Config).cloned();
            Chain::new(kept.chain(bindings.iter().cloned()).collect())
        });
    }

    /// Re-activates the binding the last activation of `name` replaced. `false` when there is
    /// none.
    pub fn rollback(&self, name: &str) -> bool {
        let previous = self.replaced.lock().ok().and_then(|mut h| h.get_mut(name).and_then(Vec::pop));
        let Some(previous) = previous else { return false };
        let current = self.chain().get(name).cloned();
        self.activate(previous);
        // The version rolled back from is not a rollback target.
        if current.is_some()
            && let Ok(mut h) = self.replaced.lock()
            && let Some(list) = h.get_mut(name)
        {
            list.pop();
        }
        true
    }
}
