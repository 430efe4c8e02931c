//! Reloading the config file while serving (`SIGHUP`, `POST /admin/api/reload`).
//!
//! A reload reads and validates the file, then checks everything that can fail — the TLS
//! certificate files, the `[[plugins]]` components that changed — before it applies anything,
//! so a file that does not load leaves the running configuration whole. Then, in order:
//!
//! - with a store, the file's tenants, keys, limits and pools are reconciled exactly as at
//!   start (`sluice_store::bootstrap::reconcile`: what the file declares is written, what it
//!   owned and no longer declares is removed — a key revoked, an endpoint taken out — and what
//!   the admin API made is left alone), the pools take the new `[upstream]` settings, and the
//!   store's snapshot is applied before the reload answers (other replicas follow through the
//!   store's change notification);
//! - the TLS certificate is re-read from `[server.tls]` (new connections get it);
//! - changed `[[plugins]]` bindings are activated in their slots.
//!
//! Listeners, the admin token, `[database]`, `[redis]`, `[plugin_host]` and `[response_cache]`
//! are read once at start: a change there is reported in `restart_required` and waits for a
//! restart. Nothing a reload does closes a connection or interrupts a request.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};

use http::StatusCode;
use sluice_admin::{ApiError, ReloadReport};
use sluice_config::{Config, ConfigError};
use sluice_proxy::Gateway;
use sluice_store::StoreError;

use crate::reload_plugins::ConfigBindings;
use crate::store::StoreReload;
use crate::tls::{CertChange, LoadedCert, ReloadingCert};

/// Where a reload reads its configuration: `Config::load` of the file `sluice serve` was given.
pub type ConfigSource = Arc<dyn Fn() -> Result<Config, ConfigError> + Send + Sync>;

/// How the data listener got its certificate, for what a reload may do with it.
#[derive(Clone)]
pub(crate) enum TlsSource {
    /// Plain TCP.
    None,
    /// `[server.tls]` files: re-read on reload.
    Files(Arc<ReloadingCert>),
    /// An acceptor handed to `Sluice::build_with` (tests, the demo): `[server.tls]` is not used.
    Given,
}

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("this gateway was not started from a config file it could reload")]
    NoSource,
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The file loads, but something it names does not (a certificate, a plugin component).
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
    #[error("writing the file's tenants and pools to the store: {0}")]
    Store(StoreError),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ReloadError {
    /// The admin API's answer: `400 invalid_config` naming the field for a file that does not
    /// load, the store's own mapping for a database that does not answer.
    pub fn to_api(&self) -> ApiError {
        let invalid = |param: Option<&str>| {
            let api = ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_config",
                format!("config not reloaded, the running configuration stays in force: {self}"),
            );
            match param {
                Some(field) => api.with_param(field),
                None => api,
            }
        };
        match self {
            ReloadError::NoSource => ApiError::new(StatusCode::CONFLICT, "reload_unavailable", self.to_string()),
            ReloadError::Config(ConfigError::Invalid { field, .. }) | ReloadError::Invalid { field, .. } => {
                invalid(Some(field.as_str()))
            }
            ReloadError::Config(ConfigError::Read { .. } | ConfigError::Parse(_) | ConfigError::Env { .. }) => {
                invalid(None)
            }
            ReloadError::Store(StoreError::Invalid { field, .. }) => invalid(Some(*field)),
            ReloadError::Store(error) => ApiError::from(error.clone()),
            ReloadError::Internal(detail) => {
                tracing::error!(%detail, "reload failed");
                ApiError::internal()
            }
        }
    }
}

/// What was in force after the last reload; held for the whole of a reload, so reloads run one
/// at a time.
struct InForce {
    config: Arc<Config>,
    plugins: ConfigBindings,
}

pub struct Reloader {
    source: Mutex<Option<ConfigSource>>,
    in_force: tokio::sync::Mutex<InForce>,
    gateway: Arc<Gateway>,
    store: Option<StoreReload>,
    tls: TlsSource,
}

impl Reloader {
    pub(crate) fn new(config: Arc<Config>, gateway: Arc<Gateway>, store: Option<StoreReload>, tls: TlsSource) -> Self {
        let plugins = ConfigBindings::of(&config);
        Reloader {
            source: Mutex::new(None),
            in_force: tokio::sync::Mutex::new(InForce { config, plugins }),
            gateway,
            store,
            tls,
        }
    }

    pub(crate) fn set_source(&self, source: ConfigSource) {
        *self.source.lock().unwrap_or_else(PoisonError::into_inner) = Some(source);
    }

    /// Reads the config file again and applies what can change at runtime; logs the outcome.
    pub async fn reload(&self) -> Result<ReloadReport, ReloadError> {
        match self.run().await {
            Ok(report) => {
                tracing::info!(
                    applied = ?report.applied, restart_required = ?report.restart_required,
                    "configuration reloaded"
                );
                Ok(report)
            }
            Err(error) => {
                tracing::error!(%error, "configuration not reloaded; the running configuration stays in force");
                Err(error)
            }
        }
    }

    async fn run(&self) -> Result<ReloadReport, ReloadError> {
        let source = self.source.lock().unwrap_or_else(PoisonError::into_inner).clone();
        let source = source.ok_or(ReloadError::NoSource)?;
        let mut in_force = self.in_force.lock().await;
        // Reads files and resolves `file:` secrets: on the blocking pool.
        let new = tokio::task::spawn_blocking(move || source())
            .await
            .map_err(|_| ReloadError::Internal("reading the config panicked".to_owned()))??;
        let new = Arc::new(new);
        let mut report = ReloadReport {
            applied: Vec::new(),
            restart_required: restart_required(&in_force.config, &new, self.store.is_some(), &self.tls),
        };

        // Everything that can fail, before anything is applied.
        let cert = match (&self.tls, &new.server.tls) {
            (TlsSource::Files(_), Some(files)) => {
                let files = files.clone();
                let loaded = tokio::task::spawn_blocking(move || LoadedCert::read(&files))
                    .await
                    .map_err(|_| ReloadError::Internal("reading the certificate panicked".to_owned()))?
                    .map_err(|e| ReloadError::Invalid { field: "server.tls".to_owned(), reason: e.to_string() })?;
                Some(loaded)
            }
            _ => None,
        };
        let plugins = in_force.plugins.plan(&new, &self.gateway.plugins).await?;

        if let Some(store) = &self.store {
            let reconciled = store.apply(&new).await.map_err(ReloadError::Store)?;
            report.applied.extend(reconciled.changes.iter().map(|change| format!("store: {change}")));
            report.applied.extend(reconciled.notices.iter().map(|notice| format!("store: not applied: {notice}")));
            if upstream_changed(&in_force.config, &new) {
                report.applied.push(
                    "upstream: the pools' timeouts, retries, queue and health-check settings replaced".to_owned(),
                );
            }
        }
        if let (TlsSource::Files(served), Some(cert)) = (&self.tls, cert) {
            let path = served.files().cert;
            if served.install(cert) == CertChange::Replaced {
                report
                    .applied
                    .push(format!("server.tls: certificate re-read from {}; new connections use it", path.display()));
            }
        }
        let mut plugins = plugins;
        report.restart_required.append(&mut plugins.restart_required);
        let (bindings, applied) = plugins.apply(&self.gateway.plugins);
        report.applied.extend(applied);
        in_force.plugins = bindings;
        in_force.config = new;
        Ok(report)
    }
}

impl sluice_admin::Reload for Reloader {
    fn reload(&self) -> Pin<Box<dyn Future<Output = Result<ReloadReport, ApiError>> + Send + '_>> {
        Box::pin(async move { Reloader::reload(self).await.map_err(|e| e.to_api()) })
    }
}

/// Whether any pool's upstream settings (or the defaults) differ.
fn upstream_changed(old: &Config, new: &Config) -> bool {
    old.upstream != new.upstream
        || new
            .pools
            .iter()
            .any(|p| old.pools.iter().find(|o| o.name == p.name).is_none_or(|o| o.upstream != p.upstream))
}

/// The settings read once at start that differ between `old` and `new`, by field path.
fn restart_required(old: &Config, new: &Config, has_store: bool, tls: &TlsSource) -> Vec<String> {
    let mut out = Vec::new();
    let mut check = |changed: bool, field: &str| {
        if changed {
            out.push(field.to_owned());
        }
    };
    let (o, n) = (&old.server, &new.server);
    check(o.listen != n.listen, "server.listen");
    check(o.admin_listen != n.admin_listen, "server.admin_listen");
    check(o.max_body_bytes != n.max_body_bytes, "server.max_body_bytes");
    check(o.max_inflight_body_bytes != n.max_inflight_body_bytes, "server.max_inflight_body_bytes");
    check(
        o.max_inflight_body_bytes_per_tenant != n.max_inflight_body_bytes_per_tenant,
        "server.max_inflight_body_bytes_per_tenant",
    );
    check(o.request_body_timeout != n.request_body_timeout, "server.request_body_timeout");
    check(o.shutdown_grace != n.shutdown_grace, "server.shutdown_grace");
    // Files can be re-read; turning TLS on or off changes the listener.
    let tls_changed = match tls {
        TlsSource::Files(_) => n.tls.is_none(),
        TlsSource::None => n.tls.is_some(),
        TlsSource::Given => false,
    };
    check(tls_changed, "server.tls");
    let secret = |s: &Option<sluice_config::Secret>| s.as_ref().map(|s| s.expose().to_owned());
    check(secret(&old.admin.token) != secret(&new.admin.token), "admin.token");
    let (od, nd) = (&old.database, &new.database);
    check(
        secret(&od.url) != secret(&nd.url)
            || od.migrate != nd.migrate
            || od.usage_flush_interval != nd.usage_flush_interval,
        "database",
    );
    let redis = |r: &Option<sluice_config::RedisConfig>| {
        r.as_ref().map(|r| {
            (r.url.expose().to_owned(), r.timeout, r.on_unavailable, r.replicas, r.key_prefix.clone(), r.limits)
        })
    };
    check(redis(&old.redis) != redis(&new.redis), "redis");
    check(old.plugin_host != new.plugin_host, "plugin_host");
    check(old.response_cache != new.response_cache, "response_cache");
    if !has_store {
        // Without a store the gateway serves the tenants and pools it was built with. (Their
        // secrets print as `***`: a changed key alone goes unnoticed here.)
        check(format!("{:?}", old.tenants) != format!("{:?}", new.tenants), "tenants");
        check(format!("{:?}", old.pools) != format!("{:?}", new.pools), "pools");
        check(old.upstream != new.upstream, "upstream");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        Config::from_toml(text, &[], &|_| None).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn listeners_and_connections_to_other_services_wait_for_a_restart() {
        let old =
            config("[server]\nlisten = \"127.0.0.1:8080\"\n[admin]\ntoken = \"a-0123456789abcdef0123456789abcdef\"\n");
        let new = config(
            "[server]\nlisten = \"127.0.0.1:8081\"\n[admin]\ntoken = \"b-0123456789abcdef0123456789abcdef\"\n\
             [database]\nusage_flush_interval = \"1s\"\n[plugin_host]\nbuiltin_router = false\n",
        );
        assert_eq!(
            restart_required(&old, &new, true, &TlsSource::None),
            ["server.listen", "admin.token", "database", "plugin_host"]
        );
        assert!(restart_required(&old, &old, true, &TlsSource::None).is_empty());
    }

    #[test]
    fn tenants_and_pools_need_a_restart_only_without_a_store() {
        let old = config("");
        let new = config("[[tenants]]\nname = \"beta\"\napi_keys = [\"sk-beta-0123456789\"]\n");
        assert!(restart_required(&old, &new, true, &TlsSource::None).is_empty());
        assert_eq!(restart_required(&old, &new, false, &TlsSource::None), ["tenants"]);
    }

    #[test]
    fn an_invalid_file_answers_400_naming_the_field() {
        let error = ReloadError::Config(ConfigError::Invalid {
            field: "pools[0].endpoints[1]".to_owned(),
            reason: "not a URL".to_owned(),
        });
        let api = error.to_api();
        assert_eq!(api.status, StatusCode::BAD_REQUEST);
        assert_eq!(api.code, "invalid_config");
        assert_eq!(api.param.as_deref(), Some("pools[0].endpoints[1]"));
        assert!(api.message.contains("pools[0].endpoints[1]: not a URL"), "{}", api.message);
    }
}
