//! From [`RawConfig`] to [`Config`]: defaults filled in, every rule checked, secrets resolved.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::Duration;

use std::path::PathBuf;

use sluice_store_model::EngineFlavor;

use crate::raw::{
    RawAutoscaling, RawConfig, RawDatabase, RawEndpoint, RawPlugin, RawPluginScope, RawRedis, RawResponseAffinity,
    RawResponseCache, RawServer, RawUpstream,
};
use crate::{
    ApiKeyConfig, AutoscalingConfig, Config, ConfigError, ConnectionLimits, DEFAULT_ADMIN_MAX_CONNECTIONS,
    DEFAULT_AUTOSCALING, DEFAULT_CONNECTION_IDLE_TIMEOUT, DEFAULT_ENGINE_METRICS, DEFAULT_HEADER_READ_TIMEOUT,
    DEFAULT_HTTP2_MAX_CONCURRENT_STREAMS, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_CONNECTIONS_PER_IP,
    DEFAULT_PREFIX_GUESS_TTL, DEFAULT_PREFIX_INDEX_BLOCKS, DEFAULT_RESPONSE_AFFINITY_ENTRIES,
    DEFAULT_RESPONSE_AFFINITY_TTL, DEFAULT_RESPONSE_CACHE_BYTES, DEFAULT_RESPONSE_CACHE_ENTRY_BYTES,
    DEFAULT_WRITE_TIMEOUT, DatabaseConfig, EjectionConfig, EndpointConfig, EngineMetricsConfig, HealthConfig,
    PLUGIN_CAPABILITIES, PluginBreakerConfig, PluginConfig, PluginHostConfig, PluginIsolationConfig, PluginScopeConfig,
    PluginSourceConfig, PoolConfig, PrefixIndexConfig, RedisConfig, RedisFallbackConfig, RedisLimitsMode,
    ResponseAffinityConfig, ResponseCacheBackend, ResponseCacheConfig, ServerConfig, TenantConfig, TlsConfig,
    UpstreamConfig, WorkerApis, secret,
};

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9090";
/// Large enough for long-context prompts and a few inline images.
pub const DEFAULT_MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
/// Sixteen bodies of the largest size at once; a parsed body costs several times its size (see
/// docs/reliability.md), so this keeps bodies to a few GiB at worst.
pub const DEFAULT_MAX_INFLIGHT_BODY_BYTES: usize = 256 * 1024 * 1024;
/// By default one tenant may hold a quarter of the body budget (at least one body of the
/// largest size): a flood from one tenant leaves three quarters to the others.
const DEFAULT_TENANT_BODY_SHARE_DIVISOR: usize = 4;

/// A store rule's refusal, placed under `prefix` (`tenants[0].limits` + `.requests_per_minute`).
fn store_error(prefix: &str, error: sluice_store_model::StoreError) -> ConfigError {
    match error {
        sluice_store_model::StoreError::Invalid { field, message } => {
            ConfigError::invalid(format!("{prefix}.{field}"), message)
        }
        other => ConfigError::invalid(prefix, other.to_string()),
    }
}

pub fn validate(raw: RawConfig, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
    let listen = addr("server.listen", raw.server.listen.as_deref().unwrap_or(DEFAULT_LISTEN))?;
    let admin_listen = addr("server.admin_listen", raw.server.admin_listen.as_deref().unwrap_or(DEFAULT_ADMIN_LISTEN))?;
    if listen == admin_listen && listen.port() != 0 {
        return Err(ConfigError::invalid("server.admin_listen", "must differ from server.listen"));
    }
    let max_body_bytes = raw.server.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES);
    if max_body_bytes == 0 {
        return Err(ConfigError::invalid("server.max_body_bytes", "must be greater than 0"));
    }
    let max_inflight_body_bytes = raw.server.max_inflight_body_bytes.unwrap_or(DEFAULT_MAX_INFLIGHT_BODY_BYTES);
    if max_inflight_body_bytes < max_body_bytes {
        return Err(ConfigError::invalid(
            "server.max_inflight_body_bytes",
            format!("must be at least server.max_body_bytes ({max_body_bytes}): a body of the largest size must fit"),
        ));
    }
    let max_inflight_body_bytes_per_tenant = raw
        .server
        .max_inflight_body_bytes_per_tenant
        .unwrap_or((max_inflight_body_bytes / DEFAULT_TENANT_BODY_SHARE_DIVISOR).max(max_body_bytes));
    if !(max_body_bytes..=max_inflight_body_bytes).contains(&max_inflight_body_bytes_per_tenant) {
        return Err(ConfigError::invalid(
            "server.max_inflight_body_bytes_per_tenant",
            format!(
                "must be between server.max_body_bytes ({max_body_bytes}) and server.max_inflight_body_bytes \
                 ({max_inflight_body_bytes})"
            ),
        ));
    }
    if raw.server.request_body_timeout.is_some_and(|d| d.is_zero()) {
        return Err(ConfigError::invalid("server.request_body_timeout", "must be greater than 0"));
    }
    let connections = connection_limits(&raw.server)?;
    let admin_max_connections = raw.server.admin_max_connections.unwrap_or(DEFAULT_ADMIN_MAX_CONNECTIONS);
    if admin_max_connections == 0 {
        return Err(ConfigError::invalid("server.admin_max_connections", "must be at least 1"));
    }
    let server = ServerConfig {
        listen,
        admin_listen,
        max_body_bytes,
        max_inflight_body_bytes,
        max_inflight_body_bytes_per_tenant,
        request_body_timeout: raw.server.request_body_timeout.unwrap_or(Duration::from_secs(60)),
        shutdown_grace: raw.server.shutdown_grace.unwrap_or(Duration::from_secs(30)),
        tls: raw.server.tls.map(|t| TlsConfig { cert: t.cert.into(), key: t.key.into() }),
        connections,
        admin_max_connections,
    };

    let admin = crate::admin::admin(raw.admin, env)?;
    let database = database(raw.database, env)?;
    let redis = redis(raw.redis, env)?;
    let response_cache = response_cache(raw.response_cache, redis.is_some())?;
    let response_affinity = response_affinity(&raw.response_affinity)?;
    let autoscaling = autoscaling(&raw.autoscaling)?;

    let defaults = upstream(&raw.upstream, None);
    check_upstream("upstream", &defaults)?;
    let mut pools = Vec::with_capacity(raw.pools.len());
    let mut pool_names = HashSet::new();
    let mut model_owner: HashMap<String, String> = HashMap::new();
    for (i, p) in raw.pools.into_iter().enumerate() {
        let field = format!("pools[{i}]");
        if p.name.trim().is_empty() {
            return Err(ConfigError::invalid(format!("{field}.name"), "must not be empty"));
        }
        if !pool_names.insert(p.name.clone()) {
            return Err(ConfigError::invalid(format!("{field}.name"), format!("duplicate pool name {:?}", p.name)));
        }
        if p.models.is_empty() {
            return Err(ConfigError::invalid(format!("{field}.models"), "a pool must serve at least one model"));
        }
        for (j, m) in p.models.iter().enumerate() {
            if m.trim().is_empty() {
                return Err(ConfigError::invalid(format!("{field}.models[{j}]"), "must not be empty"));
            }
            if let Some(owner) = model_owner.insert(m.clone(), p.name.clone()) {
                return Err(ConfigError::invalid(
                    format!("{field}.models[{j}]"),
                    format!("model {m:?} is already served by pool {owner:?}; a model belongs to one pool"),
                ));
            }
        }
        if p.endpoints.is_empty() {
            return Err(ConfigError::invalid(format!("{field}.endpoints"), "a pool needs at least one endpoint"));
        }
        let mut endpoints = Vec::with_capacity(p.endpoints.len());
        let mut endpoint_names = HashSet::new();
        for (j, e) in p.endpoints.into_iter().enumerate() {
            let efield = format!("{field}.endpoints[{j}]");
            let endpoint = endpoint(&efield, e)?;
            if !endpoint_names.insert(endpoint.name.clone()) {
                return Err(ConfigError::invalid(
                    efield,
                    format!("duplicate endpoint {:?} in this pool", endpoint.name),
                ));
            }
            endpoints.push(endpoint);
        }
        let upstream = upstream(&p.upstream, Some(&raw.upstream));
        check_upstream(&format!("{field}.upstream"), &upstream)?;
        let apis = match &p.apis {
            Some(names) => {
                WorkerApis::parse(names).map_err(|reason| ConfigError::invalid(format!("{field}.apis"), reason))?
            }
            None => WorkerApis::default(),
        };
        pools.push(PoolConfig { name: p.name, models: p.models, endpoints, apis, upstream });
    }

    let mut tenants = Vec::with_capacity(raw.tenants.len());
    let mut tenant_names = HashSet::new();
    let mut keys_seen = HashSet::new();
    for (i, t) in raw.tenants.into_iter().enumerate() {
        let field = format!("tenants[{i}]");
        sluice_store_model::validate::name("name", &t.name)
            .map_err(|e| ConfigError::invalid(format!("{field}.name"), e.to_string()))?;
        if !tenant_names.insert(t.name.clone()) {
            return Err(ConfigError::invalid(format!("{field}.name"), format!("duplicate tenant {:?}", t.name)));
        }
        let mut api_keys = Vec::with_capacity(t.api_keys.len());
        for (j, entry) in t.api_keys.iter().enumerate() {
            let kfield = format!("{field}.api_keys[{j}]");
            let key = secret::resolve(entry.reference(), env).map_err(|e| ConfigError::invalid(&kfield, e))?;
            if key.expose().len() < 8 {
                return Err(ConfigError::invalid(kfield, "an API key must be at least 8 characters"));
            }
            if !keys_seen.insert(key.expose().to_owned()) {
                return Err(ConfigError::invalid(kfield, "this API key is already used by another entry"));
            }
            let limits = entry.limits();
            if let Some(l) = &limits {
                sluice_store_model::validate::scope_limits(l)
                    .map_err(|e| store_error(&format!("{kfield}.limits"), e))?;
            }
            api_keys.push(ApiKeyConfig { key, limits });
        }
        if let Some(p) = &t.priority
            && !matches!(p.as_str(), "high" | "normal" | "low")
        {
            return Err(ConfigError::invalid(format!("{field}.priority"), "must be \"high\", \"normal\" or \"low\""));
        }
        if let Some(l) = &t.limits {
            let limits = sluice_store_model::Limits {
                requests_per_minute: l.requests_per_minute,
                tokens_per_minute: l.tokens_per_minute,
                max_concurrency: l.max_concurrency,
                monthly_token_budget: l.monthly_token_budget,
                allowed_models: l.allowed_models.clone(),
            };
            sluice_store_model::validate::limits(&limits).map_err(|e| store_error(&format!("{field}.limits"), e))?;
        }
        let model_limits = match t.model_limits {
            None => None,
            Some(models) => {
                let mut list = Vec::with_capacity(models.len());
                for (model, limits) in models {
                    let mfield = format!("{field}.model_limits.{model:?}");
                    sluice_store_model::validate::model_limits(&model, &limits).map_err(|e| match e {
                        // The model's name and "no limit at all" are the table's own faults.
                        sluice_store_model::StoreError::Invalid { field: "model" | "limits", message } => {
                            ConfigError::invalid(&mfield, message)
                        }
                        other => store_error(&mfield, other),
                    })?;
                    list.push(sluice_store_model::ModelLimits { model, limits });
                }
                Some(list)
            }
        };
        tenants.push(TenantConfig { name: t.name, api_keys, priority: t.priority, limits: t.limits, model_limits });
    }

    let plugin_host = PluginHostConfig {
        cache_dir: raw.plugin_host.cache_dir.map(PathBuf::from),
        max_instances: raw.plugin_host.max_instances.unwrap_or(DEFAULT_PLUGIN_INSTANCES),
        max_memory_bytes: raw.plugin_host.max_memory_bytes.unwrap_or(DEFAULT_PLUGIN_ENGINE_MEMORY),
        max_timeout: raw.plugin_host.max_timeout.unwrap_or(DEFAULT_PLUGIN_MAX_TIMEOUT),
        builtin_router: raw.plugin_host.builtin_router.unwrap_or(true),
        builtin_ratelimit: raw.plugin_host.builtin_ratelimit.unwrap_or(true),
    };
    if plugin_host.max_instances == 0 {
        return Err(ConfigError::invalid("plugin_host.max_instances", "must be at least 1"));
    }
    if plugin_host.max_timeout.is_zero() || plugin_host.max_timeout > Duration::from_secs(10) {
        return Err(ConfigError::invalid("plugin_host.max_timeout", "must be between 1ms and 10s"));
    }
    if plugin_host.max_memory_bytes < 1 << 20 {
        return Err(ConfigError::invalid("plugin_host.max_memory_bytes", "must be at least 1 MiB (1048576)"));
    }
    let mut plugins = Vec::with_capacity(raw.plugins.len());
    let mut plugin_names = HashSet::new();
    for (i, p) in raw.plugins.into_iter().enumerate() {
        let plugin = plugin(&format!("plugins[{i}]"), p, &plugin_host)?;
        if !plugin_names.insert((plugin.name.clone(), plugin.scope.clone())) {
            return Err(ConfigError::invalid(
                format!("plugins[{i}].name"),
                format!("duplicate plugin {:?} for the same scope", plugin.name),
            ));
        }
        plugins.push(plugin);
    }

    Ok(Config {
        server,
        admin,
        database,
        redis,
        response_cache,
        response_affinity,
        autoscaling,
        upstream: defaults,
        pools,
        tenants,
        plugin_host,
        plugins,
    })
}

fn connection_limits(raw: &RawServer) -> Result<ConnectionLimits, ConfigError> {
    let max = raw.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS);
    if max == 0 {
        return Err(ConfigError::invalid("server.max_connections", "must be at least 1"));
    }
    // Unset, the per-client cap follows a small global one down rather than exceeding it.
    let max_per_ip = raw.max_connections_per_ip.unwrap_or(DEFAULT_MAX_CONNECTIONS_PER_IP.min(max));
    if max_per_ip == 0 || max_per_ip > max {
        return Err(ConfigError::invalid(
            "server.max_connections_per_ip",
            format!("must be between 1 and server.max_connections ({max})"),
        ));
    }
    let limits = ConnectionLimits {
        max,
        max_per_ip,
        header_read_timeout: raw.header_read_timeout.unwrap_or(DEFAULT_HEADER_READ_TIMEOUT),
        idle_timeout: raw.idle_timeout.unwrap_or(DEFAULT_CONNECTION_IDLE_TIMEOUT),
        write_timeout: raw.write_timeout.unwrap_or(DEFAULT_WRITE_TIMEOUT),
        http2_max_concurrent_streams: raw.http2_max_concurrent_streams.unwrap_or(DEFAULT_HTTP2_MAX_CONCURRENT_STREAMS),
    };
    for (name, d) in [
        ("server.header_read_timeout", limits.header_read_timeout),
        ("server.idle_timeout", limits.idle_timeout),
        ("server.write_timeout", limits.write_timeout),
    ] {
        if d.is_zero() {
            return Err(ConfigError::invalid(name, "must be greater than 0"));
        }
    }
    if limits.http2_max_concurrent_streams == 0 {
        return Err(ConfigError::invalid("server.http2_max_concurrent_streams", "must be at least 1"));
    }
    Ok(limits)
}

fn database(raw: RawDatabase, env: &dyn Fn(&str) -> Option<String>) -> Result<DatabaseConfig, ConfigError> {
    let url_ref = raw.url.or_else(|| env("DATABASE_URL").map(|_| "env:DATABASE_URL".to_owned()));
    let url =
        url_ref.map(|r| secret::resolve(&r, env).map_err(|e| ConfigError::invalid("database.url", e))).transpose()?;
    if let Some(url) = &url {
        let text = url.expose();
        if !(text.starts_with("postgres://") || text.starts_with("postgresql://")) {
            return Err(ConfigError::invalid(
                "database.url",
                "must be a postgres:// URL (leave it unset for the embedded SQLite store in the data directory)",
            ));
        }
    }
    let usage_flush_interval = raw.usage_flush_interval.unwrap_or(Duration::from_secs(5));
    if usage_flush_interval.is_zero() {
        return Err(ConfigError::invalid("database.usage_flush_interval", "must be greater than 0"));
    }
    Ok(DatabaseConfig { url, migrate: raw.migrate.unwrap_or(true), usage_flush_interval })
}

fn redis(raw: RawRedis, env: &dyn Fn(&str) -> Option<String>) -> Result<Option<RedisConfig>, ConfigError> {
    let url_ref = raw.url.or_else(|| env("REDIS_URL").map(|_| "env:REDIS_URL".to_owned()));
    let Some(url_ref) = url_ref else {
        return Ok(None);
    };
    let url = secret::resolve(&url_ref, env).map_err(|e| ConfigError::invalid("redis.url", e))?;
    let text = url.expose();
    if !(text.starts_with("redis://") || text.starts_with("rediss://") || text.starts_with("unix://")) {
        return Err(ConfigError::invalid("redis.url", "must be a redis://, rediss:// or unix:// URL"));
    }
    let timeout = raw.timeout.unwrap_or(Duration::from_millis(50));
    if timeout.is_zero() || timeout > Duration::from_secs(5) {
        return Err(ConfigError::invalid("redis.timeout", "must be between 1ms and 5s"));
    }
    let on_unavailable = match raw.on_unavailable.as_deref() {
        None | Some("local") => RedisFallbackConfig::Local,
        Some("closed") => RedisFallbackConfig::Closed,
        Some(other) => {
            return Err(ConfigError::invalid(
                "redis.on_unavailable",
                format!("{other:?}: expected \"local\" or \"closed\""),
            ));
        }
    };
    let replicas = raw.replicas.unwrap_or(1);
    if replicas == 0 {
        return Err(ConfigError::invalid("redis.replicas", "must be at least 1"));
    }
    let key_prefix = raw.key_prefix.unwrap_or_else(|| "sluice:".to_owned());
    if key_prefix.len() > 64 || key_prefix.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(ConfigError::invalid("redis.key_prefix", "at most 64 characters, no spaces or control characters"));
    }
    let limits = match raw.limits.as_deref() {
        None | Some("leased") => RedisLimitsMode::Leased,
        Some("exact") => RedisLimitsMode::Exact,
        Some(other) => {
            return Err(ConfigError::invalid("redis.limits", format!("{other:?}: expected \"leased\" or \"exact\"")));
        }
    };
    Ok(Some(RedisConfig { url, timeout, on_unavailable, replicas, key_prefix, limits }))
}

fn response_cache(raw: RawResponseCache, has_redis: bool) -> Result<ResponseCacheConfig, ConfigError> {
    let backend = match raw.backend.as_deref() {
        None if has_redis => ResponseCacheBackend::Redis,
        None | Some("memory") => ResponseCacheBackend::Memory,
        Some("redis") if has_redis => ResponseCacheBackend::Redis,
        Some("redis") => {
            return Err(ConfigError::invalid("response_cache.backend", "\"redis\" needs [redis] url (or REDIS_URL)"));
        }
        Some(other) => {
            return Err(ConfigError::invalid(
                "response_cache.backend",
                format!("{other:?}: expected \"memory\" or \"redis\""),
            ));
        }
    };
    let max_bytes = raw.max_bytes.unwrap_or(DEFAULT_RESPONSE_CACHE_BYTES);
    if max_bytes < 1 << 20 {
        return Err(ConfigError::invalid("response_cache.max_bytes", "must be at least 1 MiB (1048576)"));
    }
    let max_entry_bytes = raw.max_entry_bytes.unwrap_or(DEFAULT_RESPONSE_CACHE_ENTRY_BYTES);
    if max_entry_bytes == 0 || max_entry_bytes > 64 << 20 || max_entry_bytes > max_bytes {
        return Err(ConfigError::invalid(
            "response_cache.max_entry_bytes",
            "must be between 1 and 64 MiB, and at most response_cache.max_bytes",
        ));
    }
    Ok(ResponseCacheConfig { backend, max_bytes, max_entry_bytes })
}

/// The longest `[autoscaling] window`, in intervals.
const MAX_AUTOSCALING_TICKS: u32 = 60;

fn autoscaling(raw: &RawAutoscaling) -> Result<AutoscalingConfig, ConfigError> {
    let interval = raw.interval.unwrap_or(DEFAULT_AUTOSCALING.interval);
    let window = raw.window.unwrap_or(DEFAULT_AUTOSCALING.window);
    if interval < Duration::from_millis(100) {
        return Err(ConfigError::invalid("autoscaling.interval", "must be at least 100ms"));
    }
    // Each interval of the window keeps up to a few thousand samples per pool.
    if window < interval || interval.checked_mul(MAX_AUTOSCALING_TICKS).is_none_or(|most| window > most) {
        return Err(ConfigError::invalid(
            "autoscaling.window",
            format!("must be between interval and {MAX_AUTOSCALING_TICKS} intervals"),
        ));
    }
    Ok(AutoscalingConfig { interval, window })
}

fn response_affinity(raw: &RawResponseAffinity) -> Result<ResponseAffinityConfig, ConfigError> {
    let ttl = raw.ttl.unwrap_or(DEFAULT_RESPONSE_AFFINITY_TTL);
    if ttl < Duration::from_secs(1) || ttl > Duration::from_secs(30 * 24 * 3600) {
        return Err(ConfigError::invalid("response_affinity.ttl", "must be between 1s and 720h (30 days)"));
    }
    let max_entries = raw.max_entries.unwrap_or(DEFAULT_RESPONSE_AFFINITY_ENTRIES);
    if max_entries == 0 {
        return Err(ConfigError::invalid("response_affinity.max_entries", "must be at least 1"));
    }
    Ok(ResponseAffinityConfig { ttl, max_entries })
}

pub const DEFAULT_PLUGIN_INSTANCES: u32 = 1000;
pub const DEFAULT_PLUGIN_ENGINE_MEMORY: usize = 64 << 20;
pub const DEFAULT_PLUGIN_MEMORY: usize = 16 << 20;
pub const DEFAULT_PLUGIN_TIMEOUT: Duration = Duration::from_millis(10);
pub const DEFAULT_REUSE_MAX_CALLS: u32 = 10_000;
pub const DEFAULT_REUSE_MAX_AGE: Duration = Duration::from_secs(60);
pub const DEFAULT_PLUGIN_MAX_TIMEOUT: Duration = Duration::from_secs(1);
pub const DEFAULT_BREAKER: PluginBreakerConfig =
    PluginBreakerConfig { failures: 5, window: Duration::from_secs(10), cooldown: Duration::from_secs(5), probes: 2 };
/// Built-in plugins accepted as `builtin:<name>`.
pub const BUILTIN_PLUGINS: &[&str] = &["router", "ratelimit", "cache"];

fn plugin(field: &str, p: RawPlugin, host: &PluginHostConfig) -> Result<PluginConfig, ConfigError> {
    let name_ok = !p.name.is_empty()
        && p.name.len() <= 64
        && p.name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if !name_ok {
        return Err(ConfigError::invalid(
            format!("{field}.name"),
            format!("{:?} must be 1-64 characters of a-z, 0-9, '-' and '_' (it becomes a metric label)", p.name),
        ));
    }
    let source = match p.source.strip_prefix("builtin:") {
        Some(b) if BUILTIN_PLUGINS.contains(&b) => PluginSourceConfig::Builtin(b.to_owned()),
        Some(b) => {
            return Err(ConfigError::invalid(
                format!("{field}.source"),
                format!("no built-in plugin {b:?}; built-ins: {}", BUILTIN_PLUGINS.join(", ")),
            ));
        }
        None if p.source.trim().is_empty() => {
            return Err(ConfigError::invalid(format!("{field}.source"), "must be builtin:<name> or a path"));
        }
        None => PluginSourceConfig::File(PathBuf::from(&p.source)),
    };
    for (j, c) in p.capabilities.iter().enumerate() {
        if !PLUGIN_CAPABILITIES.contains(&c.as_str()) {
            return Err(ConfigError::invalid(
                format!("{field}.capabilities[{j}]"),
                format!("unknown capability {c:?}; known: {}", PLUGIN_CAPABILITIES.join(", ")),
            ));
        }
    }
    let max_calls = p.reuse_max_calls.unwrap_or(DEFAULT_REUSE_MAX_CALLS);
    let max_age = p.reuse_max_age.unwrap_or(DEFAULT_REUSE_MAX_AGE);
    let isolation = match p.isolation.as_deref() {
        None | Some("reuse") => PluginIsolationConfig::Reuse { max_calls, max_age },
        Some("per-request") => PluginIsolationConfig::PerRequest,
        Some(other) => {
            return Err(ConfigError::invalid(
                format!("{field}.isolation"),
                format!("{other:?} must be \"per-request\" or \"reuse\""),
            ));
        }
    };
    if max_calls == 0 || max_age.is_zero() {
        return Err(ConfigError::invalid(
            format!("{field}.reuse_max_calls"),
            "reuse_max_calls and reuse_max_age must be greater than 0",
        ));
    }
    let fail_closed = match p.failure.as_deref() {
        // A cache that fails must not take the API down: its requests go to a worker instead.
        None if matches!(&source, PluginSourceConfig::Builtin(b) if b == "cache") => false,
        None | Some("closed") => true,
        Some("open") => false,
        Some(other) => {
            return Err(ConfigError::invalid(
                format!("{field}.failure"),
                format!("{other:?} must be \"closed\" or \"open\""),
            ));
        }
    };
    let timeout = p.timeout.unwrap_or(DEFAULT_PLUGIN_TIMEOUT);
    // The operator writes both this and `plugin_host.max_timeout`, which bounds the bindings
    // made through the admin API: a config-file binding keeps the full range.
    if timeout.is_zero() || timeout > Duration::from_secs(10) {
        return Err(ConfigError::invalid(format!("{field}.timeout"), "must be between 1ms and 10s"));
    }
    let max_memory_bytes = p.max_memory_bytes.unwrap_or(DEFAULT_PLUGIN_MEMORY.min(host.max_memory_bytes));
    if max_memory_bytes < 1 << 20 || max_memory_bytes > host.max_memory_bytes {
        return Err(ConfigError::invalid(
            format!("{field}.max_memory_bytes"),
            format!("must be between 1 MiB and plugin_host.max_memory_bytes ({})", host.max_memory_bytes),
        ));
    }
    let config_json = serde_json::to_string(&p.config)
        .map_err(|e| ConfigError::invalid(format!("{field}.config"), format!("cannot be expressed as JSON: {e}")))?;
    for (j, host) in p.http_allow.iter().enumerate() {
        let authority = (!host.contains('/') && !host.contains('@'))
            .then(|| host.parse::<http::uri::Authority>().ok())
            .flatten()
            .filter(|a| {
                // Exactly `host` or `host:port` as parsed: a port that is not a number does
                // not round-trip.
                let exact = a.port_u16().map_or_else(|| a.host().to_owned(), |p| format!("{}:{p}", a.host()));
                !a.host().is_empty() && exact.eq_ignore_ascii_case(host)
            });
        if authority.is_none() {
            return Err(ConfigError::invalid(
                format!("{field}.http_allow[{j}]"),
                format!("{host:?} must be a host or host:port, without scheme or path"),
            ));
        }
    }
    let scope = match p.scope {
        None => PluginScopeConfig::Global,
        Some(RawPluginScope { tenant: Some(t), model: None }) if !t.is_empty() => PluginScopeConfig::Tenant(t),
        Some(RawPluginScope { tenant: None, model: Some(m) }) if !m.is_empty() => PluginScopeConfig::Model(m),
        Some(_) => {
            return Err(ConfigError::invalid(
                format!("{field}.scope"),
                "must name exactly one non-empty tenant or model: { tenant = \"acme\" } or { model = \"llama-3-8b\" }",
            ));
        }
    };
    if let Some(ns) = &p.state_namespace
        && !(1..=64).contains(&ns.len())
    {
        return Err(ConfigError::invalid(format!("{field}.state_namespace"), "must be 1-64 characters"));
    }
    if p.max_concurrent_calls == Some(0) {
        return Err(ConfigError::invalid(format!("{field}.max_concurrent_calls"), "must be at least 1"));
    }
    let breaker = PluginBreakerConfig {
        failures: p.breaker.failures.unwrap_or(DEFAULT_BREAKER.failures),
        window: p.breaker.window.unwrap_or(DEFAULT_BREAKER.window),
        cooldown: p.breaker.cooldown.unwrap_or(DEFAULT_BREAKER.cooldown),
        probes: p.breaker.probes.unwrap_or(DEFAULT_BREAKER.probes),
    };
    if breaker.failures > 0 && (breaker.window.is_zero() || breaker.cooldown.is_zero() || breaker.probes == 0) {
        return Err(ConfigError::invalid(
            format!("{field}.breaker"),
            "window and cooldown must be greater than 0 and probes at least 1 (failures = 0 turns the breaker off)",
        ));
    }
    Ok(PluginConfig {
        name: p.name,
        scope,
        max_concurrent_calls: p.max_concurrent_calls,
        state_namespace: p.state_namespace,
        breaker,
        source,
        capabilities: p.capabilities,
        isolation,
        fail_closed,
        order: p.order.unwrap_or(0),
        timeout,
        max_memory_bytes,
        config_json,
        http_allow: p.http_allow,
    })
}

fn addr(field: &str, value: &str) -> Result<SocketAddr, ConfigError> {
    value.parse().map_err(|_| ConfigError::invalid(field, format!("{value:?} is not an address like 127.0.0.1:8080")))
}

fn endpoint(field: &str, raw: RawEndpoint) -> Result<EndpointConfig, ConfigError> {
    let (url, name, http2, max_in_flight, engine) = match raw {
        RawEndpoint::Url(url) => (url, None, false, None, None),
        RawEndpoint::Table(t) => (t.url, t.name, t.http2, t.max_in_flight, t.engine),
    };
    if max_in_flight == Some(0) {
        return Err(ConfigError::invalid(format!("{field}.max_in_flight"), "must be at least 1"));
    }
    let trimmed = url.trim_end_matches('/');
    let uri: http::Uri =
        trimmed.parse().map_err(|e| ConfigError::invalid(field, format!("{url:?} is not a URL: {e}")))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err(ConfigError::invalid(field, format!("{url:?} must start with http:// or https://"))),
    }
    let Some(authority) = uri.authority() else {
        return Err(ConfigError::invalid(field, format!("{url:?} has no host")));
    };
    if uri.query().is_some() {
        return Err(ConfigError::invalid(field, format!("{url:?} must not have a query string")));
    }
    let name = name.unwrap_or_else(|| authority.to_string());
    // A string here rather than the enum: an untagged endpoint that fails to deserialize says
    // only that it matched no variant, where this names the key and the choices.
    let engine = match engine.as_deref() {
        None => EngineFlavor::default(),
        Some(name) => serde_json::from_value(serde_json::Value::String(name.to_owned())).map_err(|_| {
            ConfigError::invalid(
                format!("{field}.engine"),
                format!("{name:?} is not one of \"vllm\", \"sglang\", \"trtllm\", \"llama_cpp\", \"openai\""),
            )
        })?,
    };
    Ok(EndpointConfig { name, url: uri, http2, max_in_flight, engine })
}

pub const DEFAULT_QUEUE_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_MAX_QUEUED: usize = 1024;

/// Pool-level values win over the global `[upstream]` table, which wins over built-in defaults.
pub fn upstream(raw: &RawUpstream, global: Option<&RawUpstream>) -> UpstreamConfig {
    let pick = |f: fn(&RawUpstream) -> Option<Duration>, default: Duration| {
        f(raw).or_else(|| global.and_then(f)).unwrap_or(default)
    };
    let pick_u32 =
        |f: fn(&RawUpstream) -> Option<u32>, default: u32| f(raw).or_else(|| global.and_then(f)).unwrap_or(default);
    UpstreamConfig {
        connect_timeout: pick(|u| u.connect_timeout, Duration::from_secs(2)),
        first_byte_timeout: pick(|u| u.first_byte_timeout, Duration::from_secs(120)),
        idle_timeout: pick(|u| u.idle_timeout, Duration::from_secs(60)),
        total_timeout: pick(|u| u.total_timeout, Duration::from_secs(1800)),
        max_retries: pick_u32(|u| u.max_retries, 2),
        max_idle_connections_per_endpoint: raw
            .max_idle_connections_per_endpoint
            .or_else(|| global.and_then(|g| g.max_idle_connections_per_endpoint))
            .unwrap_or(256),
        max_in_flight: raw.max_in_flight.or_else(|| global.and_then(|g| g.max_in_flight)),
        queue_timeout: pick(|u| u.queue_timeout, DEFAULT_QUEUE_TIMEOUT),
        max_queued: raw.max_queued.or_else(|| global.and_then(|g| g.max_queued)).unwrap_or(DEFAULT_MAX_QUEUED),
        health: HealthConfig {
            path: raw
                .health
                .path
                .clone()
                .or_else(|| global.and_then(|g| g.health.path.clone()))
                .unwrap_or_else(|| "/health".to_owned()),
            interval: pick(|u| u.health.interval, Duration::from_secs(5)),
            timeout: pick(|u| u.health.timeout, Duration::from_secs(2)),
            unhealthy_threshold: pick_u32(|u| u.health.unhealthy_threshold, 2),
            healthy_threshold: pick_u32(|u| u.health.healthy_threshold, 1),
        },
        ejection: EjectionConfig {
            consecutive_failures: pick_u32(|u| u.ejection.consecutive_failures, 3),
            base: pick(|u| u.ejection.base, Duration::from_secs(5)),
            max: pick(|u| u.ejection.max, Duration::from_secs(120)),
        },
        prefix_index: PrefixIndexConfig {
            guess_ttl: pick(|u| u.prefix_index.guess_ttl, DEFAULT_PREFIX_GUESS_TTL),
            max_blocks: raw
                .prefix_index
                .max_blocks
                .or_else(|| global.and_then(|g| g.prefix_index.max_blocks))
                .unwrap_or(DEFAULT_PREFIX_INDEX_BLOCKS),
        },
        engine_metrics: EngineMetricsConfig {
            interval: pick(|u| u.engine_metrics.interval, DEFAULT_ENGINE_METRICS.interval),
            timeout: pick(|u| u.engine_metrics.timeout, DEFAULT_ENGINE_METRICS.timeout),
            max_age: pick(|u| u.engine_metrics.max_age, DEFAULT_ENGINE_METRICS.max_age),
        },
    }
}

fn check_upstream(field: &str, u: &UpstreamConfig) -> Result<(), ConfigError> {
    let non_zero = [
        ("connect_timeout", u.connect_timeout),
        ("first_byte_timeout", u.first_byte_timeout),
        ("idle_timeout", u.idle_timeout),
        ("total_timeout", u.total_timeout),
        ("health.interval", u.health.interval),
        ("health.timeout", u.health.timeout),
        ("ejection.base", u.ejection.base),
        ("queue_timeout", u.queue_timeout),
        ("prefix_index.guess_ttl", u.prefix_index.guess_ttl),
        ("engine_metrics.interval", u.engine_metrics.interval),
        ("engine_metrics.timeout", u.engine_metrics.timeout),
        ("engine_metrics.max_age", u.engine_metrics.max_age),
    ];
    for (name, d) in non_zero {
        if d.is_zero() {
            return Err(ConfigError::invalid(format!("{field}.{name}"), "must be greater than 0"));
        }
    }
    if u.max_in_flight == Some(0) {
        return Err(ConfigError::invalid(format!("{field}.max_in_flight"), "must be at least 1"));
    }
    if u.max_queued == 0 {
        return Err(ConfigError::invalid(format!("{field}.max_queued"), "must be at least 1"));
    }
    if u.prefix_index.max_blocks == 0 {
        return Err(ConfigError::invalid(format!("{field}.prefix_index.max_blocks"), "must be at least 1"));
    }
    if u.engine_metrics.max_age < u.engine_metrics.interval {
        return Err(ConfigError::invalid(
            format!("{field}.engine_metrics.max_age"),
            "must be at least engine_metrics.interval (else every reading is too old to use)",
        ));
    }
    if u.ejection.max < u.ejection.base {
        return Err(ConfigError::invalid(format!("{field}.ejection.max"), "must be at least ejection.base"));
    }
    if u.health.unhealthy_threshold == 0 || u.health.healthy_threshold == 0 || u.ejection.consecutive_failures == 0 {
        return Err(ConfigError::invalid(
            field,
            "health thresholds and ejection.consecutive_failures must be at least 1",
        ));
    }
    if !u.health.path.starts_with('/') {
        return Err(ConfigError::invalid(format!("{field}.health.path"), "must start with /"));
    }
    Ok(())
}
