//! `sluice_plugin_*` metrics, labelled by the binding's plugin name (bounded by config).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

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
/// Distinct (name, label) series one plugin may create through the `metrics` capability, and
/// all plugins together: one plugin cannot use up the others' share.
const MAX_CUSTOM_SERIES_PER_PLUGIN: usize = 64;
const MAX_CUSTOM_SERIES: usize = 1024;

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

/// One binding's breaker series, resolved once.
#[derive(Clone)]
pub struct BreakerMetrics {
    pub state: IntGauge,
    /// To closed, half-open, open.
    pub transitions: [IntCounter; 3],
    pub short_circuits: IntCounter,
}

#[derive(Clone)]
pub struct PluginMetrics {
    calls: IntCounterVec,
    errors: IntCounterVec,
    duration: HistogramVec,
    instantiations: IntCounterVec,
    custom_total: IntCounterVec,
    custom_value: HistogramVec,
    custom_series: std::sync::Arc<Mutex<CustomSeries>>,
    log_dropped: IntCounterVec,
    breaker_state: IntGaugeVec,
    breaker_transitions: IntCounterVec,
    short_circuits: IntCounterVec,
    limit_decisions: IntCounterVec,
    limit_remaining: IntGaugeVec,
    pub limits: LimitsMetrics,
}

/// The shared limits backend's health: round trips, fallbacks, and whether it is degraded.
#[derive(Debug, Clone)]
pub struct LimitsMetrics {
    pub backend_seconds: prometheus::Histogram,
    pub fallbacks: prometheus::IntCounter,
    pub errors: prometheus::IntCounter,
    pub degraded: prometheus::IntGauge,
}

#[derive(Debug, Default)]
struct CustomSeries {
    series: HashSet<(String, String, String)>,
    per_plugin: HashMap<String, usize>,
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
            log_dropped: IntCounterVec::new(
                Opts::new(
                    "sluice_plugin_log_dropped_total",
                    "Plugin log lines dropped because the plugin logged more than its per-second budget.",
                ),
                &["plugin"],
            )?,
            breaker_state: IntGaugeVec::new(
                Opts::new(
                    "sluice_plugin_breaker_state",
                    "Each binding's circuit breaker: 0 closed, 1 half-open (probing), 2 open (the plugin is \
                     skipped and its failure policy applies).",
                ),
                &["plugin", "binding"],
            )?,
            breaker_transitions: IntCounterVec::new(
                Opts::new("sluice_plugin_breaker_transitions_total", "Circuit breaker state changes, by new state."),
                &["plugin", "binding", "state"],
            )?,
            limit_decisions: IntCounterVec::new(
                Opts::new(
                    "sluice_limits_decisions_total",
                    "Decisions of the limits capability, by plugin, tenant and outcome (granted, refused, \
                     unavailable).",
                ),
                &["plugin", "tenant", "outcome"],
            )?,
            limit_remaining: IntGaugeVec::new(
                Opts::new(
                    "sluice_limits_remaining",
                    "What the tenant's last limited answer had left, as its x-ratelimit-remaining-* headers \
                     said, by plugin, tenant and kind (requests, tokens).",
                ),
                &["plugin", "tenant", "kind"],
            )?,
            limits: LimitsMetrics {
                backend_seconds: prometheus::Histogram::with_opts(
                    HistogramOpts::new(
                        "sluice_limits_backend_duration_seconds",
                        "Round trips of limits decisions to the shared backend (Redis).",
                    )
                    .buckets(vec![0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1]),
                )?,
                fallbacks: prometheus::IntCounter::new(
                    "sluice_limits_fallbacks_total",
                    "Limits decisions made without the shared backend (its fallback: local or closed).",
                )?,
                errors: prometheus::IntCounter::new(
                    "sluice_limits_backend_errors_total",
                    "Failed or timed-out calls to the shared limits backend.",
                )?,
                degraded: prometheus::IntGauge::new(
                    "sluice_limits_backend_degraded",
                    "1 while the shared limits backend is unreachable and decisions use the fallback.",
                )?,
            },
            short_circuits: IntCounterVec::new(
                Opts::new(
                    "sluice_plugin_short_circuits_total",
                    "Plugin calls not made because the binding's breaker was open.",
                ),
                &["plugin"],
            )?,
        };
        registry.register(Box::new(m.calls.clone()))?;
        registry.register(Box::new(m.errors.clone()))?;
        registry.register(Box::new(m.duration.clone()))?;
        registry.register(Box::new(m.instantiations.clone()))?;
        registry.register(Box::new(m.custom_total.clone()))?;
        registry.register(Box::new(m.custom_value.clone()))?;
        registry.register(Box::new(m.log_dropped.clone()))?;
        registry.register(Box::new(m.breaker_state.clone()))?;
        registry.register(Box::new(m.breaker_transitions.clone()))?;
        registry.register(Box::new(m.short_circuits.clone()))?;
        registry.register(Box::new(m.limit_decisions.clone()))?;
        registry.register(Box::new(m.limit_remaining.clone()))?;
        registry.register(Box::new(m.limits.backend_seconds.clone()))?;
        registry.register(Box::new(m.limits.fallbacks.clone()))?;
        registry.register(Box::new(m.limits.errors.clone()))?;
        registry.register(Box::new(m.limits.degraded.clone()))?;
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

    /// The series a standing plan's grants update, resolved once per plan: `granted` decisions
    /// of `plugin` for `tenant`, and the remaining gauges of the kinds its headers show.
    pub fn limit_series(&self, plugin: &str, tenant: &str, kinds: [bool; 2]) -> LimitSeries {
        let gauge =
            |kind: &str, shown: bool| shown.then(|| self.limit_remaining.with_label_values(&[plugin, tenant, kind]));
        LimitSeries {
            granted: self.limit_decisions.with_label_values(&[plugin, tenant, "granted"]),
            remaining: [gauge("requests", kinds[0]), gauge("tokens", kinds[1])],
        }
    }

    pub fn limit_decision(&self, plugin: &str, tenant: &str, outcome: &str) {
        self.limit_decisions.with_label_values(&[plugin, tenant, outcome]).inc();
    }

    /// What the `x-ratelimit-remaining-*` headers of a tenant's answer said.
    pub fn limit_remaining(&self, plugin: &str, tenant: &str, remaining: [Option<u64>; 2]) {
        for (kind, left) in ["requests", "tokens"].into_iter().zip(remaining) {
            if let Some(left) = left {
                self.limit_remaining
                    .with_label_values(&[plugin, tenant, kind])
                    .set(i64::try_from(left).unwrap_or(i64::MAX));
            }
        }
    }

    pub fn error(&self, plugin: &str, kind: &str) {
        self.errors.with_label_values(&[plugin, kind]).inc();
    }

    /// Whether the series may exist: names and labels are short `[a-z0-9_]` words, each plugin
    /// keeps at most [`MAX_CUSTOM_SERIES_PER_PLUGIN`] of them and the gateway
    /// [`MAX_CUSTOM_SERIES`].
    fn admit(&self, plugin: &str, name: &str, label: &str) -> bool {
        let word = |s: &str| {
            !s.is_empty()
                && s.len() <= 32
                && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        };
        if !word(name) || !(label.is_empty() || word(label)) {
            return false;
        }
        let Ok(mut custom) = self.custom_series.lock() else { return false };
        let key = (plugin.to_owned(), name.to_owned(), label.to_owned());
        if custom.series.contains(&key) {
            return true;
        }
        let mine = custom.per_plugin.get(plugin).copied().unwrap_or(0);
        if mine >= MAX_CUSTOM_SERIES_PER_PLUGIN || custom.series.len() >= MAX_CUSTOM_SERIES {
            return false;
        }
        custom.series.insert(key);
        *custom.per_plugin.entry(plugin.to_owned()).or_default() += 1;
        true
    }

    pub fn log_dropped(&self, plugin: &str) {
        self.log_dropped.with_label_values(&[plugin]).inc();
    }

    /// The breaker series of one binding.
    pub fn breaker(&self, plugin: &str, binding: &str) -> BreakerMetrics {
        BreakerMetrics {
            state: self.breaker_state.with_label_values(&[plugin, binding]),
            transitions: ["closed", "half_open", "open"]
                .map(|state| self.breaker_transitions.with_label_values(&[plugin, binding, state])),
            short_circuits: self.short_circuits.with_label_values(&[plugin]),
        }
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

/// One tenant's `granted` decisions and remaining gauges, as [`PluginMetrics::limit_decision`]
/// and [`PluginMetrics::limit_remaining`] update them, without a label lookup per request.
#[derive(Debug, Clone)]
pub struct LimitSeries {
    granted: IntCounter,
    remaining: [Option<IntGauge>; 2],
}

impl LimitSeries {
    /// A grant whose headers said `remaining` (requests, tokens).
    pub fn granted(&self, remaining: [Option<u64>; 2]) {
        self.granted.inc();
        for (gauge, left) in self.remaining.iter().zip(remaining) {
            if let (Some(gauge), Some(left)) = (gauge, left) {
                gauge.set(i64::try_from(left).unwrap_or(i64::MAX));
            }
        }
    }
}
