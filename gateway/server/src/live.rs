//! What the live view and the admin API read from the running gateway.

use std::sync::Arc;
use std::time::Instant;

use sluice_admin::PluginInspector;
use sluice_live::{
    EngineLive, LiveSources, QueueDepths, RegistryPlugins, SloLookup, SloTarget, WorkerHealth, WorkerSource,
    WorkerState,
};
use sluice_proxy::Gateway;
use sluice_proxy::upstream::engine_metrics::EngineTelemetry;
use sluice_store::model::validate::BindingMaxima;
use sluice_store::slo::Slos;

/// SLO targets for the live view, from the same table the usage writer counts goodput with.
pub struct SloLookupFromTable(pub Arc<Slos>);

impl SloLookup for SloLookupFromTable {
    fn slo(&self, tenant: &str, model: &str) -> Option<SloTarget> {
        let target = self.0.current().target(tenant, model)?;
        let ms = |d: std::time::Duration| u32::try_from(d.as_millis()).unwrap_or(u32::MAX);
        Some(SloTarget { ttft_ms: target.ttft.map(ms), tpot_ms: target.tpot.map(ms), attainment: target.attainment })
    }
}

/// Every endpoint of every pool in service, with what its engine's metrics said when the proxy
/// last read them (the same figures its route plugins get).
struct GatewayWorkers(Arc<Gateway>);

impl WorkerSource for GatewayWorkers {
    fn workers(&self) -> Vec<WorkerState> {
        let upstreams = self.0.upstreams();
        let now = Instant::now();
        upstreams
            .pools
            .iter()
            .flat_map(|pool| {
                pool.endpoints.iter().map(|e| WorkerState {
                    pool: pool.name.to_string(),
                    name: e.name.to_string(),
                    in_flight: e.in_flight() as u64,
                    health: if e.is_drained() {
                        WorkerHealth::Drained
                    } else if e.is_ejected() {
                        WorkerHealth::Ejected
                    } else if e.is_healthy() {
                        WorkerHealth::Healthy
                    } else {
                        WorkerHealth::Unhealthy
                    },
                    engine: engine_live(&e.engine, now),
                })
            })
            .collect()
    }
}

fn engine_live(engine: &EngineTelemetry, now: Instant) -> Option<EngineLive> {
    let sample = engine.last()?;
    Some(EngineLive {
        running: sample.reading.running,
        waiting: sample.reading.waiting,
        kv_cache_usage: sample.reading.kv_cache_usage,
        prefix_cache_hit_rate: sample.prefix_hit_rate,
        age_ms: u64::try_from(sample.age(now).as_millis()).unwrap_or(u64::MAX),
    })
}

/// Requests waiting in each pool's admission queue, by tenant.
fn queue_depths(gateway: &Gateway) -> QueueDepths {
    let mut depths = QueueDepths::new();
    for pool in &gateway.upstreams().pools {
        let Some(queue) = &pool.queue else { continue };
        let waiting = queue.depths();
        if !waiting.is_empty() {
            depths.insert(pool.name.to_string(), waiting.into_iter().map(|(t, n)| (t.to_string(), n as u64)).collect());
        }
    }
    depths
}

pub fn sources(gateway: &Arc<Gateway>) -> LiveSources {
    let in_flight = gateway.metrics.in_flight().clone();
    let queues = Arc::clone(gateway);
    LiveSources {
        in_flight: Some(Arc::new(move || u64::try_from(in_flight.get()).unwrap_or(0))),
        workers: Some(Arc::new(GatewayWorkers(Arc::clone(gateway)))),
        queues: Some(Arc::new(move || queue_depths(&queues))),
        plugins: Some(Arc::new(RegistryPlugins(gateway.metrics.registry().clone()))),
        panels: Vec::new(),
    }
}

/// Uploaded plugins are compiled and checked by the gateway's own plugin host, so a component
/// the admin API accepts is one the gateway can run.
pub struct HostInspector(pub Arc<Gateway>);

impl PluginInspector for HostInspector {
    fn inspect(&self, wasm: &[u8]) -> Result<serde_json::Value, String> {
        self.0.plugins.inspect("upload", wasm).map(|m| m.to_json()).map_err(|e| e.to_string())
    }

    /// This gateway's own ceilings: `[plugin_host] max_timeout` and `max_memory_bytes`.
    fn binding_maxima(&self) -> BindingMaxima {
        let host = &self.0.plugins;
        BindingMaxima {
            timeout_ms: u32::try_from(host.max_timeout().as_millis()).unwrap_or(u32::MAX),
            memory_bytes: u64::try_from(host.engine().settings().max_memory_bytes).unwrap_or(u64::MAX),
        }
    }

    fn is_builtin(&self, name: &str) -> bool {
        crate::builtins::PUBLISHED.contains(&name)
    }
}
