//! Keeps the plugin host's store bindings in step with the store: every binding of an
//! activated plugin runs that plugin's active version, scoped, ordered and configured as
//! stored; unbinding, activating another version or rolling back takes effect on the next
//! snapshot, on every replica.
//!
//! Compiling happens here, off the request path (`spawn_blocking`, with the artifact cache
//! making a version seen before a millisecond-scale deserialization); the host then swaps the
//! whole set of store bindings in at once. A binding whose component cannot be fetched or
//! loaded keeps the version it ran before, if any, and the failure is logged with the plugin's
//! name and version: an admin mistake never takes working policies away.
//!
//! A stored binding is granted exactly the capabilities the admin granted its plugin's active
//! version at activation (`ActivePlugin::granted`), never what the component asks for; the
//! admin API refuses an activation that grants less than the component imports, and the
//! loader refuses such a component again here (`PluginError::NotGranted`, naming the import).
//! Its deadline and memory limit are the binding's own (`timeout_ms`, `max_memory_bytes`) or
//! the host's defaults, within the host's maxima.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use sluice_plugin_host::{
    Binding, BindingSpec, CallLimits, Capabilities, Capability, FailurePolicy, Origin, PluginHost, PluginSource, Scope,
};
use sluice_store::Backend;
use sluice_store::model::{self, ActivePlugin, StoreSnapshot};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// The part of a snapshot the plugin host cares about.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PluginState {
    pub plugins: Vec<ActivePlugin>,
    pub bindings: Vec<model::Binding>,
}

impl PluginState {
    pub fn of(snapshot: &StoreSnapshot) -> Self {
        PluginState { plugins: snapshot.plugins.clone(), bindings: snapshot.bindings.clone() }
    }
}

/// What a loaded binding was built from; a binding is reloaded only when this changes.
#[derive(Debug, Clone, PartialEq)]
struct Fingerprint {
    sha256: String,
    version: i32,
    scope: model::Scope,
    order: i32,
    failure: model::FailurePolicy,
    config: serde_json::Value,
    granted: Vec<String>,
    timeout_ms: Option<u32>,
    max_memory_bytes: Option<u64>,
}

pub struct PluginSync {
    host: Arc<PluginHost>,
    store: Arc<dyn Backend>,
    loaded: HashMap<i64, (Fingerprint, Arc<Binding>)>,
}

impl PluginSync {
    pub fn new(host: Arc<PluginHost>, store: Arc<dyn Backend>) -> Self {
        PluginSync { host, store, loaded: HashMap::new() }
    }

    /// Applies `state`: loads what changed, then swaps the store bindings in one step.
    pub async fn apply(&mut self, state: &PluginState) {
        let active: HashMap<&str, &ActivePlugin> = state.plugins.iter().map(|p| (p.name.as_str(), p)).collect();
        let mut loaded = HashMap::with_capacity(state.bindings.len());
        for stored in &state.bindings {
            // A plugin with no active version is bound but inert until one is activated.
            let Some(plugin) = active.get(stored.plugin.as_str()) else { continue };
            let fingerprint = Fingerprint {
                sha256: plugin.sha256.clone(),
                version: plugin.version,
                scope: stored.scope.clone(),
                order: stored.order,
                failure: stored.failure_policy,
                config: stored.config.clone(),
                granted: plugin.granted.clone(),
                timeout_ms: stored.timeout_ms,
                max_memory_bytes: stored.max_memory_bytes,
            };
            let previous = self.loaded.remove(&stored.id);
            if let Some((seen, binding)) = &previous
                && *seen == fingerprint
            {
                loaded.insert(stored.id, (fingerprint, Arc::clone(binding)));
                continue;
            }
            match self.load(stored, plugin).await {
                Ok(binding) => {
                    tracing::info!(
                        plugin = %plugin.name, version = plugin.version, binding = stored.id, scope = ?stored.scope,
                        "store binding active"
                    );
                    loaded.insert(stored.id, (fingerprint, Arc::new(binding)));
                }
                Err(reason) => {
                    tracing::error!(
                        plugin = %plugin.name, version = plugin.version, binding = stored.id, %reason,
                        "cannot load a stored plugin binding; it keeps the version it ran before, if any"
                    );
                    if let Some(kept) = previous {
                        loaded.insert(stored.id, kept);
                    }
                }
            }
        }
        self.host.replace_store_bindings(loaded.values().map(|(_, b)| Arc::clone(b)).collect());
        self.loaded = loaded;
    }

    async fn load(&self, stored: &model::Binding, plugin: &ActivePlugin) -> Result<Binding, String> {
        let capabilities = granted(&plugin.granted)?;
        let defaults = BindingSpec::new(plugin.name.clone(), PluginSource::Bytes(Arc::from(Vec::new())));
        let limits =
            limits(stored, defaults.limits, self.host.max_timeout(), self.host.engine().settings().max_memory_bytes)?;
        let bytes: Arc<[u8]> = self
            .store
            .plugin_bytes(&plugin.sha256)
            .await
            .map(Arc::from)
            .map_err(|e| format!("fetching its component: {e}"))?;
        let spec = BindingSpec {
            source: PluginSource::Bytes(bytes),
            origin: Origin::Store { binding_id: stored.id },
            scope: match &stored.scope {
                model::Scope::Global => Scope::Global,
                model::Scope::Tenant(t) => Scope::Tenant(Arc::from(t.as_str())),
                model::Scope::Model(m) => Scope::Model(Arc::from(m.as_str())),
            },
            // What the admin granted at activation; the loader refuses a component importing
            // anything else, naming the import.
            capabilities,
            failure: match stored.failure_policy {
                model::FailurePolicy::Open => FailurePolicy::Open,
                model::FailurePolicy::Closed => FailurePolicy::Closed,
            },
            order: i64::from(stored.order),
            limits,
            config_json: stored.config.to_string(),
            // A stored binding names its allowed hosts in its config (`"http_allow": [..]`),
            // which only an admin can set.
            http_allow: stored
                .config
                .get("http_allow")
                .and_then(|v| v.as_array())
                .map(|hosts| hosts.iter().filter_map(|h| h.as_str().map(str::to_owned)).collect())
                .unwrap_or_default(),
            ..defaults
        };
        let host = Arc::clone(&self.host);
        tokio::task::spawn_blocking(move || host.load(spec).map_err(|e| e.to_string()))
            .await
            .map_err(|e| format!("the loading task failed: {e}"))?
    }

    /// Applies every new state from `states` until `cancel`.
    pub async fn run(mut self, mut states: watch::Receiver<PluginState>, cancel: CancellationToken) {
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                changed = states.changed() => if changed.is_err() { return },
            }
            let state = states.borrow_and_update().clone();
            self.apply(&state).await;
        }
    }
}

/// The capabilities named by an activation's grants. The admin API accepts only known names; a
/// name this host does not know (a store written by a newer gateway) refuses the binding rather
/// than running it with less or more than the admin saw.
fn granted(names: &[String]) -> Result<Capabilities, String> {
    names
        .iter()
        .map(|name| Capability::parse(name).ok_or_else(|| format!("its grants name an unknown capability {name:?}")))
        .collect::<Result<Vec<_>, _>>()
        .map(|list| list.into_iter().collect())
}

/// The binding's deadline and memory limit: its own where set, else the host's defaults (the
/// memory default capped at the engine's maximum, as for config-file plugins). Values beyond
/// the maxima, which the admin API refuses, are refused here too.
fn limits(
    stored: &model::Binding,
    defaults: CallLimits,
    max_timeout: Duration,
    engine_max_memory: usize,
) -> Result<CallLimits, String> {
    let mut limits = defaults;
    limits.timeout = match stored.timeout_ms.map(|ms| Duration::from_millis(u64::from(ms))) {
        Some(t) if t.is_zero() || t > max_timeout => {
            return Err(format!(
                "its timeout of {t:?} is not between 1 ms and plugin_host.max_timeout ({max_timeout:?})"
            ));
        }
        Some(t) => t,
        None => defaults.timeout,
    };
    limits.memory_bytes = match stored.max_memory_bytes {
        Some(bytes) => usize::try_from(bytes)
            .ok()
            .filter(|&b| b <= engine_max_memory)
            .ok_or_else(|| format!("its max_memory_bytes {bytes} exceeds the engine's {engine_max_memory}"))?,
        None => defaults.memory_bytes.min(engine_max_memory),
    };
    Ok(limits)
}
