//! The config file's `[[tenants]]` and `[[pools]]` reconciled into the store, at start and on
//! every reload: the file owns what it declares.
//!
//! - What the file names is created, or adopted when it already exists (made through the admin
//!   API, or imported before ownership was recorded and no longer known as the file's from the
//!   audit log); what it states — a tenant's `priority`, `[tenants.limits]`,
//!   `[tenants.model_limits]` (models it does not name lose theirs), a key's `limits`, a pool's
//!   `models` and `apis` (the default when it names none), an endpoint's URL and protocol —
//!   replaces the stored value.
//! - What the file owned and no longer names is removed: a tenant is deleted (keys, limits and
//!   SLOs with it), a key revoked, a pool deleted (endpoints with it), an endpoint removed.
//!   Removals come after additions, so a renamed endpoint is serving before the old one goes.
//! - What the admin API made and the file does not name is never touched.
//! - A revoked key stays revoked even while the file still lists it (a [`Notice`] says so).
//!
//! Idempotent, and safe when several replicas start at once: only what differs is written (a
//! restart writes nothing and adds no audit rows), and a conflict or a missing row left by a
//! replica that got there first counts as done. Every replica must run the same file: one with
//! an older file removes what a newer one added.

mod change;

use std::collections::{HashMap, HashSet};

pub use change::{Change, Notice};
use sluice_config::{Config, PoolConfig, TenantConfig};
use sluice_store_model::keys::{KeyDigest, display_prefix};
use sluice_store_model::{
    Actor, Adopt, Backend, ConfigOwned, Limits, ModelLimits, NewEndpoint, NewKey, NewPool, NewTenant, Priority,
    ScopeLimits, StoreError, TenantPatch,
};

/// What a reconciliation did, in the order it did it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Reconciled {
    pub changes: Vec<Change>,
    pub notices: Vec<Notice>,
}

impl Reconciled {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty() && self.notices.is_empty()
    }
}

pub async fn reconcile(store: &dyn Backend, config: &Config) -> Result<Reconciled, StoreError> {
    let run = Run { store, actor: Actor::bootstrap(), owned: store.config_owned().await?, out: Reconciled::default() };
    run.go(config).await
}

struct Run<'a> {
    store: &'a dyn Backend,
    actor: Actor,
    /// What the file owned before this run: what it may remove.
    owned: ConfigOwned,
    out: Reconciled,
}

/// A missing row or a duplicate left by a replica doing the same work counts as done.
fn done_by_another_replica<T>(result: Result<T, StoreError>) -> Result<Option<T>, StoreError> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(StoreError::Conflict(_) | StoreError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

impl Run<'_> {
    async fn go(mut self, config: &Config) -> Result<Reconciled, StoreError> {
        // Keys are matched by digest: the store never saw the secrets.
        let snapshot = self.store.snapshot().await?;
        let active: HashMap<KeyDigest, (String, i64, ScopeLimits)> = snapshot
            .tenants
            .iter()
            .flat_map(|t| t.keys.iter().map(|k| (k.hash, (t.tenant.name.clone(), k.id, k.limits))))
            .collect();
        for tenant in &config.tenants {
            self.tenant(tenant, &active).await?;
        }
        for pool in &config.pools {
            self.pool(pool).await?;
        }
        if config.tenants.is_empty() && config.pools.is_empty() {
            // A file that declares nothing is far more often a replica started without its
            // file (or with the wrong one) than an operator removing every tenant and pool:
            // removing what the file owned would revoke every key it gave out.
            if !(self.owned.tenants.is_empty() && self.owned.pools.is_empty()) {
                tracing::warn!(
                    tenants = self.owned.tenants.len(),
                    pools = self.owned.pools.len(),
                    "the config file declares no tenants and no pools; what an earlier file declared is kept \
                     (declare at least one tenant or pool for the file's removals to apply)"
                );
            }
        } else {
            self.remove_undeclared(config).await?;
        }
        Ok(self.out)
    }

    async fn tenant(
        &mut self,
        config: &TenantConfig,
        active: &HashMap<KeyDigest, (String, i64, ScopeLimits)>,
    ) -> Result<(), StoreError> {
        let name = &config.name;
        let priority = config.priority.as_deref().map(parse_priority);
        let new = NewTenant { name: name.clone(), priority: priority.unwrap_or_default(), status: Default::default() };
        match self.store.create_tenant(&self.actor, &new).await {
            Ok(_) => self.out.changes.push(Change::TenantCreated { tenant: name.clone() }),
            Err(StoreError::Conflict(_)) => {
                if !self.owned.tenants.contains(name)
                    && self.store.adopt(&self.actor, &Adopt::Tenant(name.clone())).await?
                {
                    self.out.changes.push(Change::TenantAdopted { tenant: name.clone() });
                }
            }
            Err(e) => return Err(e),
        }
        let detail = self.store.get_tenant(name).await?;
        if let Some(priority) = priority
            && detail.tenant.priority != priority
        {
            let patch = TenantPatch { priority: Some(priority), status: None };
            self.store.update_tenant(&self.actor, name, &patch).await?;
            self.updated(name, "priority".to_owned());
        }
        if let Some(raw) = &config.limits {
            let limits = Limits {
                requests_per_minute: raw.requests_per_minute,
                tokens_per_minute: raw.tokens_per_minute,
                max_concurrency: raw.max_concurrency,
                monthly_token_budget: raw.monthly_token_budget,
                allowed_models: raw.allowed_models.clone(),
            };
            if detail.limits != limits {
                self.store.set_limits(&self.actor, name, &limits).await?;
                self.updated(name, "limits".to_owned());
            }
        }
        if let Some(models) = &config.model_limits {
            self.model_limits(name, &detail.model_limits, models).await?;
        }
        for key in &config.api_keys {
            self.key(name, key.key.expose(), key.limits, active).await?;
        }
        Ok(())
    }

    fn updated(&mut self, tenant: &str, what: String) {
        self.out.changes.push(Change::TenantUpdated { tenant: tenant.to_owned(), what });
    }

    async fn key(
        &mut self,
        tenant: &str,
        secret: &str,
        limits: Option<ScopeLimits>,
        active: &HashMap<KeyDigest, (String, i64, ScopeLimits)>,
    ) -> Result<(), StoreError> {
        let digest = KeyDigest::of(secret);
        let prefix = display_prefix(secret);
        let owned = self.owned.keys.iter().find(|k| k.digest == digest);
        let stored = match (owned, active.get(&digest)) {
            (Some(owned), _) if owned.revoked => {
                self.out.notices.push(Notice::KeyRevoked { tenant: owned.tenant.clone(), prefix });
                return Ok(());
            }
            (_, Some((holder, _, _))) if holder != tenant => {
                // Still the other tenant's (the removal pass revokes it there if the file owned
                // it): a secret cannot move, since a revoked digest stays taken.
                self.out.notices.push(Notice::KeyTaken { tenant: tenant.to_owned(), prefix });
                return Ok(());
            }
            (Some(_), Some(&(_, id, current))) => (id, current),
            (None, Some(&(_, id, current))) => {
                let adopt = Adopt::Key { tenant: tenant.to_owned(), id };
                if done_by_another_replica(self.store.adopt(&self.actor, &adopt).await)? == Some(true) {
                    self.out.changes.push(Change::KeyAdopted { tenant: tenant.to_owned(), prefix: prefix.clone() });
                }
                (id, current)
            }
            (_, None) => {
                let new = NewKey { name: Some("bootstrap".into()), prefix: prefix.clone(), digest };
                match self.store.create_key(&self.actor, tenant, &new).await {
                    Ok(created) => {
                        self.out.changes.push(Change::KeyCreated { tenant: tenant.to_owned(), prefix: prefix.clone() });
                        (created.id, created.limits)
                    }
                    // Another replica created it a moment ago, or a revoked key the file does
                    // not own holds the digest (revoked through the admin API before ownership
                    // was recorded): a revocation survives restarts either way.
                    Err(StoreError::Conflict(_)) => {
                        let now = self.store.config_owned().await?;
                        let ours = now.keys.iter().any(|k| k.digest == digest && k.tenant == tenant && !k.revoked);
                        if !ours {
                            self.out.notices.push(Notice::KeyTaken { tenant: tenant.to_owned(), prefix });
                        }
                        return Ok(());
                    }
                    Err(e) => return Err(e),
                }
            }
        };
        let (id, current) = stored;
        if let Some(wanted) = limits
            && current != wanted
            && done_by_another_replica(self.store.set_key_limits(&self.actor, tenant, id, &wanted).await)?.is_some()
        {
            self.out.changes.push(Change::KeyLimitsSet { tenant: tenant.to_owned(), prefix });
        }
        Ok(())
    }

    /// Makes the tenant's stored per-model limits exactly `wanted`, writing only what differs.
    async fn model_limits(
        &mut self,
        tenant: &str,
        stored: &[ModelLimits],
        wanted: &[ModelLimits],
    ) -> Result<(), StoreError> {
        for entry in wanted {
            if !stored.contains(entry) {
                self.store.set_model_limits(&self.actor, tenant, &entry.model, &entry.limits).await?;
                self.updated(tenant, format!("model_limits[{}]", entry.model));
            }
        }
        for entry in stored {
            if !wanted.iter().any(|w| w.model == entry.model)
                && done_by_another_replica(self.store.delete_model_limits(&self.actor, tenant, &entry.model).await)?
                    .is_some()
            {
                self.updated(tenant, format!("model_limits[{}] removed", entry.model));
            }
        }
        Ok(())
    }

    async fn pool(&mut self, config: &PoolConfig) -> Result<(), StoreError> {
        let name = &config.name;
        let apis = config.apis.to_pool_apis();
        let new = NewPool { name: name.clone(), models: config.models.clone(), apis: Some(apis.clone()) };
        match self.store.create_pool(&self.actor, &new).await {
            Ok(_) => self.out.changes.push(Change::PoolCreated { pool: name.clone() }),
            Err(StoreError::Conflict(_)) => {
                if !self.owned.pools.contains(name) && self.store.adopt(&self.actor, &Adopt::Pool(name.clone())).await?
                {
                    self.out.changes.push(Change::PoolAdopted { pool: name.clone() });
                }
            }
            Err(e) => return Err(e),
        }
        let stored = self.store.get_pool(name).await?;
        if stored.models != config.models {
            self.store.set_pool_models(&self.actor, name, &config.models).await?;
            self.out.changes.push(Change::PoolModelsChanged { pool: name.clone(), models: config.models.clone() });
        }
        if stored.apis != apis {
            self.store.set_pool_apis(&self.actor, name, &apis).await?;
            let names = apis.iter().map(|a| a.name().to_owned()).collect();
            self.out.changes.push(Change::PoolApisChanged { pool: name.clone(), apis: names });
        }
        for endpoint in &config.endpoints {
            let url = endpoint.url.to_string().trim_end_matches('/').to_owned();
            let existing = stored.endpoints.iter().find(|e| e.name == endpoint.name);
            let owned = self.owned.endpoints.iter().any(|(p, e)| p == name && *e == endpoint.name);
            let replaced = match existing {
                Some(existing)
                    if existing.url == url
                        && existing.http2 == endpoint.http2
                        && existing.flavor == endpoint.engine =>
                {
                    let adopt = Adopt::Endpoint { pool: name.clone(), name: endpoint.name.clone() };
                    if !owned && done_by_another_replica(self.store.adopt(&self.actor, &adopt).await)? == Some(true) {
                        self.out
                            .changes
                            .push(Change::EndpointAdopted { pool: name.clone(), endpoint: endpoint.name.clone() });
                    }
                    continue;
                }
                // The file says where this endpoint is now, or what engine runs there: replace
                // the stored one.
                Some(_) => {
                    done_by_another_replica(self.store.remove_endpoint(&self.actor, name, &endpoint.name).await)?;
                    true
                }
                None => false,
            };
            let new = NewEndpoint {
                name: endpoint.name.clone(),
                url: url.clone(),
                flavor: endpoint.engine,
                weight: 1,
                http2: endpoint.http2,
            };
            if done_by_another_replica(self.store.add_endpoint(&self.actor, name, &new).await)?.is_some() {
                let (pool, endpoint) = (name.clone(), endpoint.name.clone());
                self.out.changes.push(if replaced {
                    Change::EndpointReplaced { pool, endpoint, url }
                } else {
                    Change::EndpointAdded { pool, endpoint, url }
                });
            }
        }
        Ok(())
    }

    /// Removes what the file owned and no longer names.
    async fn remove_undeclared(&mut self, config: &Config) -> Result<(), StoreError> {
        let owned = std::mem::take(&mut self.owned);
        let tenants: HashMap<&str, HashSet<KeyDigest>> = config
            .tenants
            .iter()
            .map(|t| (t.name.as_str(), t.api_keys.iter().map(|k| KeyDigest::of(k.key.expose())).collect()))
            .collect();
        let pools: HashMap<&str, &PoolConfig> = config.pools.iter().map(|p| (p.name.as_str(), p)).collect();
        let deleted_tenant = |tenant: &str| !tenants.contains_key(tenant) && owned.tenants.iter().any(|t| t == tenant);
        let deleted_pool = |pool: &str| !pools.contains_key(pool) && owned.pools.iter().any(|p| p == pool);

        for (pool, endpoint) in &owned.endpoints {
            let declared = pools.get(pool.as_str()).is_some_and(|p| p.endpoints.iter().any(|e| e.name == *endpoint));
            if !declared
                && !deleted_pool(pool.as_str())
                && done_by_another_replica(self.store.remove_endpoint(&self.actor, pool, endpoint).await)?.is_some()
            {
                self.out.changes.push(Change::EndpointRemoved { pool: pool.clone(), endpoint: endpoint.clone() });
            }
        }
        for pool in owned.pools.iter().filter(|p| deleted_pool(p.as_str())) {
            if done_by_another_replica(self.store.delete_pool(&self.actor, pool).await)?.is_some() {
                self.out.changes.push(Change::PoolRemoved { pool: pool.clone() });
            }
        }
        for key in owned.keys.iter().filter(|k| !k.revoked && !deleted_tenant(k.tenant.as_str())) {
            let declared = tenants.get(key.tenant.as_str()).is_some_and(|digests| digests.contains(&key.digest));
            if declared {
                continue;
            }
            // `revoke_key` returns a key revoked a moment ago by another replica unchanged.
            if done_by_another_replica(self.store.revoke_key(&self.actor, &key.tenant, key.id).await)?.is_some() {
                self.out.changes.push(Change::KeyRevoked { tenant: key.tenant.clone(), prefix: key.prefix.clone() });
            }
        }
        for tenant in owned.tenants.iter().filter(|t| deleted_tenant(t.as_str())) {
            if done_by_another_replica(self.store.delete_tenant(&self.actor, tenant).await)?.is_some() {
                self.out.changes.push(Change::TenantRemoved { tenant: tenant.clone() });
            }
        }
        Ok(())
    }
}

fn parse_priority(text: &str) -> Priority {
    // Validated by sluice-config.
    match text {
        "high" => Priority::High,
        "low" => Priority::Low,
        _ => Priority::Normal,
    }
}
