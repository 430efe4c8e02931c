//! The plugin host built from config: `[plugin_host]` and the global `[[plugins]]` bindings,
//! with the built-in router and rate limiter bound unless plugins of the same names replace them,
//! and `limits` shared through Redis when `[redis]` is set.

use std::sync::Arc;

use prometheus::Registry;
use sluice_config::{
    Config, PluginConfig, PluginIsolationConfig, PluginScopeConfig, PluginSourceConfig, RedisFallbackConfig,
    RedisLimitsMode,
};
use sluice_plugin_host::{
    BindingSpec, BreakerSettings, Builtins, CallLimits, Capability, EngineSettings, FailurePolicy, Fallback, Hook,
    HostError, HostSettings, Isolation, LeaseSettings, Origin, OutputLimits, PluginHost, PluginSource, Scope,
    SharedMode, SharedSettings,
};

pub fn host(config: &Config, registry: &Registry) -> Result<PluginHost, HostError> {
    let settings = HostSettings {
        engine: EngineSettings {
            max_instances: config.plugin_host.max_instances,
            max_memory_bytes: config.plugin_host.max_memory_bytes,
            ..EngineSettings::default()
        },
        cache_dir: config.plugin_host.cache_dir.clone(),
        // A plugin's rewritten body is held to the limit a client's body is.
        output: OutputLimits { max_body_bytes: config.server.max_body_bytes, ..OutputLimits::default() },
        max_timeout: config.plugin_host.max_timeout,
        shared_limits: config.redis.as_ref().map(|r| SharedSettings {
            url: r.url.expose().to_owned(),
            timeout: r.timeout,
            fallback: match r.on_unavailable {
                RedisFallbackConfig::Local => Fallback::Local { replicas: r.replicas },
                RedisFallbackConfig::Closed => Fallback::Closed,
            },
            key_prefix: r.key_prefix.clone(),
            mode: match r.limits {
                RedisLimitsMode::Leased => SharedMode::Leased(LeaseSettings::default()),
                RedisLimitsMode::Exact => SharedMode::Exact,
            },
        }),
    };
    let specs = config.plugins.iter().map(spec).collect();
    let builtins =
        Builtins { router: config.plugin_host.builtin_router, ratelimit: config.plugin_host.builtin_ratelimit };
    PluginHost::with_bindings(settings, registry, specs, builtins)
}

/// A `[[plugins]]` entry as a binding.
pub fn spec(p: &PluginConfig) -> BindingSpec {
    let source = match &p.source {
        PluginSourceConfig::Builtin(name) => PluginSource::Builtin(name.clone()),
        PluginSourceConfig::File(path) => PluginSource::File(path.clone()),
    };
    BindingSpec {
        name: p.name.clone(),
        source,
        origin: Origin::Config,
        scope: match &p.scope {
            PluginScopeConfig::Global => Scope::Global,
            PluginScopeConfig::Tenant(t) => Scope::Tenant(Arc::from(t.as_str())),
            PluginScopeConfig::Model(m) => Scope::Model(Arc::from(m.as_str())),
        },
        // A built-in needs no list: it is granted what it uses. Config validation admits only
        // known names.
        capabilities: match &p.source {
            PluginSourceConfig::Builtin(name) if p.capabilities.is_empty() => {
                sluice_plugin_host::builtin::capabilities(name)
            }
            _ => p.capabilities.iter().filter_map(|c| Capability::parse(c)).collect(),
        },
        isolation: match p.isolation {
            PluginIsolationConfig::PerRequest => Isolation::PerRequest,
            PluginIsolationConfig::Reuse { max_calls, max_age } => Isolation::Reuse { max_calls, max_age },
        },
        failure: if p.fail_closed { FailurePolicy::Closed } else { FailurePolicy::Open },
        order: p.order,
        limits: CallLimits { timeout: p.timeout, memory_bytes: p.max_memory_bytes },
        config_json: p.config_json.clone(),
        http_allow: p.http_allow.clone(),
        // A plugin replacing the built-in router must route.
        required: if p.name == "router" { vec![Hook::Route] } else { Vec::new() },
        breaker: BreakerSettings {
            failures: p.breaker.failures,
            window: p.breaker.window,
            cooldown: p.breaker.cooldown,
            probes: p.breaker.probes,
        },
        max_concurrent_calls: p.max_concurrent_calls,
        state_namespace: p.state_namespace.clone(),
        only_limited_tenants: false,
    }
}
