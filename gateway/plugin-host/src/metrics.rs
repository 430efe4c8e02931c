//! `sluice_plugin_*` metrics, labelled by the binding's plugin name (bounded by config).

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use prometheus::{Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry};

use crate::loader::Hook;

/// Plugin calls take microseconds; the top buckets catch deadlines.
const DURATION_BUCKETS: &[f64] = &[
    0.000_001,
    0.000_002_5,
    0.000_005,
    0.000_01,
    0.000_025,
    0.000_05,
    0.000_1,
    0.000_25,
    0.000_5,
    0.001,
    0.005,
    0.01,
    0.05,
    0.1,
];
/// Distinct (plugin, name, label) series the `metrics` capability may create.
const MAX_CUSTOM_SERIES: usize = 256;

/// One plugin's call counters and durations, by hook (in [`Hook::ALL`] order).
#[derive(Clone)]
pub struct CallMetrics {
    hooks: [(IntCounter, Histogram); Hook::COUNT],
    instantiations: IntCounter,
}

impl CallMetrics {
    pub fn call(&self, hook: Hook, took: Duration) {
        if let Some((calls, duration)) = self.hooks.get(hook.index()) {
            calls.inc();
            duration.observe(took.as_secs_f64());
        }
    }

    pub fn instantiated(&self) {
        self.instantiations.inc();
    }
}

#[derive(Clone)]
pub struct PluginMetrics {
    calls: IntCounterVec,
    errors: IntCounterVec,
    duration: HistogramVec,
    instantiations: IntCounterVec,
    custom_total: IntCounterVec,
    custom_value: HistogramVec,
    custom_series: std::sync::Arc<Mutex<HashSet<(String, String, String)>>>,
}

impl std::fmt::Debug for PluginMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PluginMetrics")
    }
}

impl PluginMetrics {
    /// Registers the families in `registry`.
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = PluginMetrics {
            calls: IntCounterVec::new(
                Opts::new("sluice_plugin_calls_total", "Plugin hook calls, by plugin and hook."),
                &["plugin", "hook"],
            )?,
            errors: IntCounterVec::new(
                Opts::new(
                    "sluice_plugin_errors_total",
                    "Plugin failures, by plugin and kind (trap, timeout, limit, instantiate, ...).",
                ),
                &["plugin", "kind"],
            )?,
            duration: HistogramVec::new(
                HistogramOpts::new(
                    "sluice_plugin_duration_seconds",
                    "Time in a plugin hook, instantiation included, by plugin and hook.",
                )
                .buckets(DURATION_BUCKETS.to_vec()),
                &["plugin", "hook"],
            )?,
            instantiations: IntCounterVec::new(
                Opts::new("sluice_plugin_instantiations_total", "Plugin instances created, by plugin."),
                &["plugin"],
            )?,
            custom_total: IntCounterVec::new(
                Opts::new("sluice_plugin_custom_total", "Counters plugins keep through the metrics capability."),
                &["plugin", "name", "label"],
            )?,
            custom_value: HistogramVec::new(
                HistogramOpts::new(
                    "sluice_plugin_custom_value",
                    "Values plugins observe through the metrics capability.",
                ),
                &["plugin", "name", "label"],
            )?,
            custom_series: std::sync::Arc::default(),
        };
        registry.register(Box::new(m.calls.clone()))?;
        registry.register(Box::new(m.errors.clone()))?;
        registry.register(Box::new(m.duration.clone()))?;
        registry.register(Box::new(m.instantiations.clone()))?;
        registry.register(Box::new(m.custom_total.clone()))?;
        registry.register(Box::new(m.custom_value.clone()))?;
        Ok(m)
    }

    /// The per-call series of one plugin, resolved once: a binding records every call without a
    /// label lookup.
    pub fn for_plugin(&self, plugin: &str) -> CallMetrics {
        let per_hook = |hook: Hook| {
            (
                self.calls.with_label_values(&[plugin, hook.name()]),
                self.duration.with_label_values(&[plugin, hook.name()]),
            )
        };
        CallMetrics { hooks: Hook::ALL.map(per_hook), instantiations: self.instantiations.with_label_values(&[plugin]) }
    }

    pub fn error(&self, plugin: &str, kind: &str) {
        self.errors.with_label_values(&[plugin, kind]).inc();
    }

    /// Whether the series may exist: names and labels are short `[a-z0-9_]` words and each
    /// gateway keeps at most [`MAX_CUSTOM_SERIES`] of them.
    fn admit(&self, plugin: &str, name: &str, label: &str) -> bool {
        let word = |s: &str| {
            !s.is_empty()
                && s.len() <= 32
                && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        };
        if !word(name) || !(label.is_empty() || word(label)) {
            return false;
        }
        let Ok(mut series) = self.custom_series.lock() else { return false };
        let key = (plugin.to_owned(), name.to_owned(), label.to_owned());
        series.contains(&key) || (series.len() < MAX_CUSTOM_SERIES && series.insert(key))
    }

    pub fn custom_add(&self, plugin: &str, name: &str, label: &str, value: u64) -> bool {
        let ok = self.admit(plugin, name, label);
        if ok {
            self.custom_total.with_label_values(&[plugin, name, label]).inc_by(value);
        }
        ok
    }

    pub fn custom_observe(&self, plugin: &str, name: &str, label: &str, value: f64) -> bool {
        let ok = self.admit(plugin, name, label);
        if ok {
            self.custom_value.with_label_values(&[plugin, name, label]).observe(value);
        }
        ok
    }
}
