//! What can go wrong with a plugin, at load or during a call. Every variant names the plugin
//! and its version; [`PluginError::kind`] is the low-cardinality label for metrics.

use std::time::Duration;

/// Why a plugin failed. Load errors (`Compile`, `Incompatible`, `NotGranted`, `MissingExport`,
/// `Io`, `InvalidBinding`) keep a new version from being activated; call errors (`Trap`,
/// `Timeout`, `Limit`, `OutputLimit`, `Instantiate`, `CircuitOpen`, `Overloaded`) go to the
/// binding's failure policy.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PluginError {
    #[error("plugin {plugin}: cannot read {path}: {reason}")]
    Io { plugin: String, path: String, reason: String },
    #[error("plugin {plugin}@{version}: not a valid WebAssembly component: {reason}")]
    Compile { plugin: String, version: String, reason: String },
    #[error("plugin {plugin}@{version} does not satisfy sluice:policy@0.2.0: {reason}")]
    Incompatible { plugin: String, version: String, reason: String },
    #[error("plugin {plugin}@{version} imports {import} but its binding does not grant capability `{capability}`")]
    NotGranted { plugin: String, version: String, import: String, capability: String },
    #[error("plugin {plugin}@{version} does not export {export}, which its binding requires")]
    MissingExport { plugin: String, version: String, export: String },
    #[error("plugin {plugin}@{version} trapped in {hook}: {message}")]
    Trap { plugin: String, version: String, hook: &'static str, message: String },
    #[error("plugin {plugin}@{version} ran past its {deadline:?} deadline in {hook}")]
    Timeout { plugin: String, version: String, hook: &'static str, deadline: Duration },
    #[error("plugin {plugin}@{version} hit its {limit} limit in {hook}")]
    Limit { plugin: String, version: String, hook: &'static str, limit: String },
    #[error("plugin {plugin}@{version} returned output over its limits in {hook}: {reason}")]
    OutputLimit { plugin: String, version: String, hook: &'static str, reason: String },
    #[error("plugin {plugin}@{version} was not called in {hook}: its circuit breaker is open after repeated failures")]
    CircuitOpen { plugin: String, version: String, hook: &'static str },
    #[error(
        "plugin {plugin}@{version} was not called in {hook}: its binding's concurrent calls stayed at their cap until the deadline"
    )]
    Overloaded { plugin: String, version: String, hook: &'static str },
    #[error("plugin {plugin}@{version}: could not instantiate: {reason}")]
    Instantiate { plugin: String, version: String, reason: String },
    #[error("plugin {plugin}: invalid binding: {reason}")]
    InvalidBinding { plugin: String, reason: String },
}

impl PluginError {
    /// The metric label: one of a fixed set.
    pub fn kind(&self) -> &'static str {
        match self {
            PluginError::Io { .. } => "io",
            PluginError::Compile { .. } => "compile",
            PluginError::Incompatible { .. } => "incompatible",
            PluginError::NotGranted { .. } => "not_granted",
            PluginError::MissingExport { .. } => "missing_export",
            PluginError::Trap { .. } => "trap",
            PluginError::Timeout { .. } => "timeout",
            PluginError::Limit { .. } => "limit",
            PluginError::OutputLimit { .. } => "output_limit",
            PluginError::CircuitOpen { .. } => "circuit_open",
            PluginError::Overloaded { .. } => "overloaded",
            PluginError::Instantiate { .. } => "instantiate",
            PluginError::InvalidBinding { .. } => "invalid_binding",
        }
    }

    /// Whether the failure is the plugin's own misbehaviour, which its circuit breaker counts.
    pub fn trips_breaker(&self) -> bool {
        matches!(
            self,
            PluginError::Trap { .. }
                | PluginError::Timeout { .. }
                | PluginError::Limit { .. }
                | PluginError::OutputLimit { .. }
        )
    }

    /// The plugin's name.
    pub fn plugin(&self) -> &str {
        match self {
            PluginError::Io { plugin, .. }
            | PluginError::Compile { plugin, .. }
            | PluginError::Incompatible { plugin, .. }
            | PluginError::NotGranted { plugin, .. }
            | PluginError::MissingExport { plugin, .. }
            | PluginError::Trap { plugin, .. }
            | PluginError::Timeout { plugin, .. }
            | PluginError::Limit { plugin, .. }
            | PluginError::OutputLimit { plugin, .. }
            | PluginError::CircuitOpen { plugin, .. }
            | PluginError::Overloaded { plugin, .. }
            | PluginError::Instantiate { plugin, .. }
            | PluginError::InvalidBinding { plugin, .. } => plugin,
        }
    }
}
