//! The config file's `[[plugins]]` bindings on reload.
//!
//! A binding the file adds, or whose settings or component file changed, is loaded (compiled,
//! checked against its grants) before anything of the reload is applied, and activated in its
//! slot (the plugin's name and scope) afterwards: requests already running keep the chain they
//! started with. A binding the file no longer lists cannot be taken out of the running chain
//! (the plugin host removes only store bindings), except `router` and `ratelimit`, whose
//! built-ins take their slot back when `[plugin_host]` binds them; the others are reported as
//! waiting for a restart.

use std::hash::{DefaultHasher, Hasher};
use std::sync::Arc;

use sluice_config::{Config, PluginConfig, PluginScopeConfig, PluginSourceConfig};
use sluice_plugin_host::{Binding, BindingSpec, PluginHost};

use crate::reload::ReloadError;

/// The `[[plugins]]` entries in service, each with a digest of its component file.
#[derive(Debug, Default, Clone)]
pub struct ConfigBindings {
    entries: Vec<Entry>,
}

#[derive(Debug, Clone)]
struct Entry {
    config: PluginConfig,
    /// `None` for built-ins, and for a file that could not be read.
    file: Option<u64>,
}

/// Bindings loaded for a reload, not yet active.
pub struct Plan {
    next: ConfigBindings,
    load: Vec<(String, Arc<Binding>)>,
    /// Bindings that stay although the file dropped them.
    pub restart_required: Vec<String>,
}

impl ConfigBindings {
    /// The entries `config` started with (their files read now, to notice later changes).
    pub fn of(config: &Config) -> Self {
        let entries = config
            .plugins
            .iter()
            .map(|p| Entry { config: p.clone(), file: file_digest(&p.source).ok().flatten() })
            .collect();
        ConfigBindings { entries }
    }

    /// Loads what `new` adds or changes, off the async workers. Fails, naming the entry, on
    /// the first binding that does not load: then nothing of the reload is applied.
    pub async fn plan(&self, new: &Config, host: &Arc<PluginHost>) -> Result<Plan, ReloadError> {
        let mut plan = Plan { next: ConfigBindings::default(), load: Vec::new(), restart_required: Vec::new() };
        for (i, entry) in new.plugins.iter().enumerate() {
            let file = file_digest(&entry.source)
                .map_err(|reason| ReloadError::Invalid { field: format!("plugins[{i}].source"), reason })?;
            let old = self.entries.iter().find(|e| same_slot(&e.config, entry));
            plan.next.entries.push(Entry { config: entry.clone(), file });
            if old.is_some_and(|old| old.config == *entry && old.file == file) {
                continue;
            }
            let binding = load(host, sluice_proxy::plugins::spec(entry))
                .await
                .map_err(|reason| ReloadError::Invalid { field: format!("plugins[{i}]"), reason })?;
            let verb = if old.is_some() { "reloaded" } else { "bound" };
            plan.load.push((format!("plugin {} ({}) {verb}", entry.name, scope(&entry.scope)), binding));
        }
        for gone in self.entries.iter().filter(|e| !new.plugins.iter().any(|p| same_slot(&e.config, p))) {
            let name = gone.config.name.as_str();
            let builtin = match name {
                "router" if new.plugin_host.builtin_router => Some(BindingSpec::builtin_router()),
                "ratelimit" if new.plugin_host.builtin_ratelimit => Some(BindingSpec::builtin_ratelimit()),
                _ => None,
            }
            .filter(|_| gone.config.scope == PluginScopeConfig::Global);
            match builtin {
                Some(spec) => {
                    let binding = load(host, spec)
                        .await
                        .map_err(|reason| ReloadError::Invalid { field: "plugin_host".to_owned(), reason })?;
                    plan.load.push((format!("plugin {name}: the built-in takes its place again"), binding));
                }
                None => {
                    plan.restart_required.push(format!(
                        "plugins: {name} ({}) is no longer in the file but stays bound until a restart",
                        scope(&gone.config.scope)
                    ));
                    // Still in service: a later reload that lists it again changes nothing.
                    plan.next.entries.push(gone.clone());
                }
            }
        }
        Ok(plan)
    }
}

impl Plan {
    /// Activates the loaded bindings; returns the entries now in service and what changed.
    pub fn apply(self, host: &PluginHost) -> (ConfigBindings, Vec<String>) {
        let mut applied = Vec::with_capacity(self.load.len());
        for (what, binding) in self.load {
            host.activate(binding);
            applied.push(what);
        }
        (self.next, applied)
    }
}

/// The same slot in the plugin host's chain: a config binding is replaced by one of the same
/// name and scope.
fn same_slot(a: &PluginConfig, b: &PluginConfig) -> bool {
    a.name == b.name && a.scope == b.scope
}

fn scope(scope: &PluginScopeConfig) -> String {
    match scope {
        PluginScopeConfig::Global => "global".to_owned(),
        PluginScopeConfig::Tenant(t) => format!("tenant {t}"),
        PluginScopeConfig::Model(m) => format!("model {m}"),
    }
}

/// Compiling takes milliseconds to seconds: on the blocking pool.
async fn load(host: &Arc<PluginHost>, spec: BindingSpec) -> Result<Arc<Binding>, String> {
    let host = Arc::clone(host);
    match tokio::task::spawn_blocking(move || host.load(spec)).await {
        Ok(Ok(binding)) => Ok(Arc::new(binding)),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err("loading the plugin panicked".to_owned()),
    }
}

/// A digest of a file source's bytes (change detection only: the loader checks the component).
fn file_digest(source: &PluginSourceConfig) -> Result<Option<u64>, String> {
    match source {
        PluginSourceConfig::Builtin(_) => Ok(None),
        PluginSourceConfig::File(path) => {
            let bytes = std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
            let mut hasher = DefaultHasher::new();
            hasher.write(&bytes);
            Ok(Some(hasher.finish()))
        }
    }
}
