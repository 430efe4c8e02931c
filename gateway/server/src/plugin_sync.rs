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

use std::collections::HashMap;
use std::sync::Arc;

use sluice_plugin_host::{Binding, BindingSpec, FailurePolicy, Origin, PluginHost, PluginSource, Scope};
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
        let bytes: Arc<[u8]> = self
            .store
            .plugin_bytes(&plugin.sha256)
            .await
            .map(Arc::from)
            .map_err(|e| format!("fetching its component: {e}"))?;
        let spec = BindingSpec {
            origin: Origin::Store { binding_id: stored.id },
            scope: match &stored.scope {
                model::Scope::Global => Scope::Global,
                model::Scope::Tenant(t) => Scope::Tenant(Arc::from(t.as_str())),
                model::Scope::Model(m) => Scope::Model(Arc::from(m.as_str())),
            },
            failure: match stored.failure_policy {
                model::FailurePolicy::Open => FailurePolicy::Open,
                model::FailurePolicy::Closed => FailurePolicy::Closed,
            },
            order: i64::from(stored.order),
            config_json: stored.config.to_string(),
            // A stored binding names its allowed hosts in its config (`"http_allow": [..]`),
            // which only an admin can set.
            http_allow: stored
                .config
                .get("http_allow")
                .and_then(|v| v.as_array())
                .map(|hosts| hosts.iter().filter_map(|h| h.as_str().map(str::to_owned)).collect())
                .unwrap_or_default(),
            ..BindingSpec::new(plugin.name.clone(), PluginSource::Bytes(Arc::clone(&bytes)))
        };
        let host = Arc::clone(&self.host);
        let name = plugin.name.clone();
        tokio::task::spawn_blocking(move || {
            // The grant is the manifest shown when the version was uploaded: the capabilities
            // the component imports, which the admin saw before activating it.
            let manifest = host.inspect(&name, &bytes).map_err(|e| e.to_string())?;
            let spec = BindingSpec { capabilities: manifest.capabilities.into_iter().collect(), ..spec };
            host.load(spec).map_err(|e| e.to_string())
        })
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
