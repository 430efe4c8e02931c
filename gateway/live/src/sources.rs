//! What the hub reads from the rest of the gateway once a second. The server implements these
//! over its own state; nothing here knows the proxy's types.

use std::sync::Arc;
use std::time::Duration;

use crate::frame::{EngineLive, SloTarget, WorkerHealth};

/// The SLO that applies to a tenant's requests for a model (the model's own, else the tenant's
/// `*`), from the server's snapshot. Called once per finished request, so it must be a lookup
/// in memory.
pub trait SloLookup: Send + Sync {
    fn slo(&self, tenant: &str, model: &str) -> Option<SloTarget>;
}

impl<F> SloLookup for F
where
    F: Fn(&str, &str) -> Option<SloTarget> + Send + Sync,
{
    fn slo(&self, tenant: &str, model: &str) -> Option<SloTarget> {
        self(tenant, model)
    }
}

/// Queue depths by pool, then tenant, as [`crate::LiveFrame::queues`] carries them.
pub type QueueDepths = std::collections::BTreeMap<String, std::collections::BTreeMap<String, u64>>;

/// One upstream endpoint as the gateway sees it now.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerState {
    pub pool: String,
    pub name: String,
    pub in_flight: u64,
    pub health: WorkerHealth,
    /// What the engine's own metrics said at the gateway's last read of them (the proxy reads
    /// them for routing); `None` for engines that are not read or have not answered yet.
    pub engine: Option<EngineLive>,
}

/// The endpoints of every pool, in pool order.
pub trait WorkerSource: Send + Sync {
    fn workers(&self) -> Vec<WorkerState>;
}

/// One plugin's counters since the gateway started.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PluginTotals {
    pub plugin: String,
    pub calls: u64,
    pub errors: u64,
    /// Time spent in the plugin's hooks, summed over calls.
    pub busy: Duration,
    /// Its bindings whose circuit breaker is open, and half-open (probing).
    pub breakers_open: u32,
    pub breakers_half_open: u32,
    /// Calls not made because a breaker was open.
    pub short_circuits: u64,
}

/// Cumulative plugin counters; the hub turns them into per-second rates.
pub trait PluginSource: Send + Sync {
    fn totals(&self) -> Vec<PluginTotals>;
}

/// A further panel: a name and, once a second, a JSON value (or `None` to leave it out of this
/// frame). `elapsed` is the interval since the previous call, for sources that report rates.
pub trait PanelSource: Send + Sync {
    fn name(&self) -> &str;
    fn sample(&self, elapsed: Duration) -> Option<serde_json::Value>;
}

/// Everything the ticker reads besides the request records. All optional: a hub without
/// sources still reports traffic.
#[derive(Default, Clone)]
pub struct LiveSources {
    /// Requests in flight in the whole gateway (its `sluice_requests_in_flight` gauge).
    pub in_flight: Option<Arc<dyn Fn() -> u64 + Send + Sync>>,
    pub workers: Option<Arc<dyn WorkerSource>>,
    /// Requests waiting in saturated pools' admission queues, by pool, then tenant.
    pub queues: Option<Arc<dyn Fn() -> QueueDepths + Send + Sync>>,
    pub plugins: Option<Arc<dyn PluginSource>>,
    pub panels: Vec<Arc<dyn PanelSource>>,
}

impl std::fmt::Debug for LiveSources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveSources")
            .field("in_flight", &self.in_flight.is_some())
            .field("workers", &self.workers.is_some())
            .field("queues", &self.queues.is_some())
            .field("plugins", &self.plugins.is_some())
            .field("panels", &self.panels.iter().map(|p| p.name().to_owned()).collect::<Vec<_>>())
            .finish()
    }
}

/// Reads the plugin host's `sluice_plugin_calls_total`, `sluice_plugin_errors_total`,
/// `sluice_plugin_duration_seconds`, `sluice_plugin_breaker_state` and
/// `sluice_plugin_short_circuits_total` from the gateway's registry (`Metrics::registry()`).
#[derive(Clone)]
pub struct RegistryPlugins(pub prometheus::Registry);

impl PluginSource for RegistryPlugins {
    fn totals(&self) -> Vec<PluginTotals> {
        use std::collections::BTreeMap;
        let mut by_plugin: BTreeMap<String, PluginTotals> = BTreeMap::new();
        for family in self.0.gather() {
            let name = family.name();
            for metric in family.get_metric() {
                let Some(plugin) = metric.get_label().iter().find(|l| l.name() == "plugin").map(|l| l.value()) else {
                    continue;
                };
                let entry = by_plugin
                    .entry(plugin.to_owned())
                    .or_insert_with(|| PluginTotals { plugin: plugin.to_owned(), ..PluginTotals::default() });
                match name {
                    "sluice_plugin_calls_total" => entry.calls += metric.get_counter().get_value() as u64,
                    "sluice_plugin_errors_total" => entry.errors += metric.get_counter().get_value() as u64,
                    "sluice_plugin_duration_seconds" => {
                        let secs = metric.get_histogram().get_sample_sum();
                        entry.busy += Duration::try_from_secs_f64(secs).unwrap_or_default();
                    }
                    "sluice_plugin_breaker_state" => match metric.get_gauge().get_value() as i64 {
                        1 => entry.breakers_half_open += 1,
                        2 => entry.breakers_open += 1,
                        _ => {}
                    },
                    "sluice_plugin_short_circuits_total" => {
                        entry.short_circuits += metric.get_counter().get_value() as u64;
                    }
                    _ => {}
                }
            }
        }
        by_plugin
            .into_values()
            .filter(|p| {
                p.calls > 0 || p.errors > 0 || p.short_circuits > 0 || p.breakers_open + p.breakers_half_open > 0
            })
            .collect()
    }
}
