//! From [`RawConfig`] to [`Config`]: defaults filled in, every rule checked, secrets resolved.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::Duration;

use crate::raw::{RawConfig, RawEndpoint, RawUpstream};
use crate::{
    AdminConfig, Config, ConfigError, EjectionConfig, EndpointConfig, HealthConfig, PoolConfig, ServerConfig,
    TenantConfig, TlsConfig, UpstreamConfig, secret,
};

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9090";
/// Large enough for long-context prompts and a few inline images.
pub const DEFAULT_MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

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
    if raw.server.request_body_timeout.is_some_and(|d| d.is_zero()) {
        return Err(ConfigError::invalid("server.request_body_timeout", "must be greater than 0"));
    }
    let server = ServerConfig {
        listen,
        admin_listen,
        max_body_bytes,
        request_body_timeout: raw.server.request_body_timeout.unwrap_or(Duration::from_secs(60)),
        shutdown_grace: raw.server.shutdown_grace.unwrap_or(Duration::from_secs(30)),
        tls: raw.server.tls.map(|t| TlsConfig { cert: t.cert.into(), key: t.key.into() }),
    };

    let admin = AdminConfig {
        token: raw
            .admin
            .token
            .map(|r| secret::resolve(&r, env).map_err(|e| ConfigError::invalid("admin.token", e)))
            .transpose()?,
    };

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
        pools.push(PoolConfig { name: p.name, models: p.models, endpoints, upstream });
    }

    let mut tenants = Vec::with_capacity(raw.tenants.len());
    let mut tenant_names = HashSet::new();
    let mut keys_seen = HashSet::new();
    for (i, t) in raw.tenants.into_iter().enumerate() {
        let field = format!("tenants[{i}]");
        if t.name.trim().is_empty() {
            return Err(ConfigError::invalid(format!("{field}.name"), "must not be empty"));
        }
        if !tenant_names.insert(t.name.clone()) {
            return Err(ConfigError::invalid(format!("{field}.name"), format!("duplicate tenant {:?}", t.name)));
        }
        let mut api_keys = Vec::with_capacity(t.api_keys.len());
        for (j, reference) in t.api_keys.iter().enumerate() {
            let kfield = format!("{field}.api_keys[{j}]");
            let key = secret::resolve(reference, env).map_err(|e| ConfigError::invalid(&kfield, e))?;
            if key.expose().len() < 8 {
                return Err(ConfigError::invalid(kfield, "an API key must be at least 8 characters"));
            }
            if !keys_seen.insert(key.expose().to_owned()) {
                return Err(ConfigError::invalid(kfield, "this API key is already used by another entry"));
            }
            api_keys.push(key);
        }
        tenants.push(TenantConfig { name: t.name, api_keys });
    }

    Ok(Config { server, admin, pools, tenants })
}

fn addr(field: &str, value: &str) -> Result<SocketAddr, ConfigError> {
    value.parse().map_err(|_| ConfigError::invalid(field, format!("{value:?} is not an address like 127.0.0.1:8080")))
}

fn endpoint(field: &str, raw: RawEndpoint) -> Result<EndpointConfig, ConfigError> {
    let (url, name, http2) = match raw {
        RawEndpoint::Url(url) => (url, None, false),
        RawEndpoint::Table(t) => (t.url, t.name, t.http2),
    };
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
    Ok(EndpointConfig { name, url: uri, http2 })
}

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
    ];
    for (name, d) in non_zero {
        if d.is_zero() {
            return Err(ConfigError::invalid(format!("{field}.{name}"), "must be greater than 0"));
        }
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
