//! The shipped `router` component as a routing policy: `--policies sluice` runs the very
//! WebAssembly component the gateway embeds, through the gateway's plugin host (wasmtime, the
//! binding's limits and deadline), so the benchmark's figures are figures for what ships.
//!
//! Each decision converts the harness's candidates to the plugin contract's types, calls the
//! chain's `route` hook and maps the answer back, as the gateway's forward stage does. The call
//! is synchronous for this component (it imports no capability that waits on I/O): its future
//! is complete when first polled, so no runtime is needed and virtual time is not disturbed.

use futures_util::FutureExt;
use sluice_plugin_host::types::{
    Api, Candidate as WitCandidate, CandidateStats as WitStats, EngineMetrics as WitMetrics, Health as WitHealth,
    PrefixOverlap as WitOverlap, RouteRequest,
};
use sluice_plugin_host::{Builtins, EngineSettings, HostSettings, PluginHost};
use sluice_routing::{Candidate, CandidateId, Decision, Health, RequestSummary, RoutingPolicy};

use super::BenchError;

/// The tenant the harness's requests belong to (the router binding is global).
const TENANT: &str = "bench";

pub struct ShippedRouter {
    host: PluginHost,
}

impl std::fmt::Debug for ShippedRouter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShippedRouter").finish_non_exhaustive()
    }
}

impl ShippedRouter {
    /// A plugin host with the built-in `router` bound as the gateway binds it.
    pub fn new() -> Result<Self, BenchError> {
        let settings = HostSettings {
            // One decision at a time: a few instances are plenty.
            engine: EngineSettings { max_instances: 8, ..EngineSettings::default() },
            ..HostSettings::default()
        };
        let builtins = Builtins { router: true, ratelimit: false };
        let host = PluginHost::with_bindings(settings, &prometheus::Registry::new(), Vec::new(), builtins)
            .map_err(|e| BenchError::Plugin(e.to_string()))?;
        Ok(Self { host })
    }
}

fn candidate(c: &Candidate) -> WitCandidate {
    WitCandidate {
        id: c.id.0,
        stats: WitStats {
            in_flight_requests: c.stats.in_flight_requests,
            in_flight_prefill_tokens: c.stats.in_flight_prefill_tokens,
            metrics: c.stats.metrics.map(|m| WitMetrics {
                running: m.running,
                waiting: m.waiting,
                kv_usage: m.kv_usage,
                prefix_cache_hit_rate: m.prefix_cache_hit_rate,
                // The harness does not track how old its metrics are; the router reads none.
                age_ms: 0,
            }),
            health: match c.stats.health {
                Health::Healthy => WitHealth::Healthy,
                Health::Degraded => WitHealth::Degraded,
                Health::Unhealthy => WitHealth::Unhealthy,
            },
        },
        overlap: WitOverlap { blocks: c.overlap.blocks, tokens: c.overlap.tokens },
    }
}

impl RoutingPolicy for ShippedRouter {
    fn name(&self) -> &str {
        "sluice"
    }

    fn choose(&self, request: &RequestSummary<'_>, candidates: &[Candidate]) -> Decision {
        let route = RouteRequest {
            tenant: TENANT.to_owned(),
            model: request.model.to_owned(),
            api: Api::ChatCompletions,
            session: None,
            prompt_tokens: request.prompt_tokens,
            block_size: request.block_size,
            block_hashes: request.block_hashes.iter().map(|h| h.0).collect(),
            max_output_tokens: request.max_output_tokens,
        };
        let wit: Vec<WitCandidate> = candidates.iter().map(candidate).collect();
        let chain = self.host.chain();
        // A failing or abstaining router leaves the choice to the host, as in the gateway.
        match chain.route(TENANT, &route, &wit).now_or_never() {
            Some(Ok(Some(id))) => Decision::Route(CandidateId(id)),
            Some(Ok(None) | Err(_)) | None => Decision::Abstain,
        }
    }
}
