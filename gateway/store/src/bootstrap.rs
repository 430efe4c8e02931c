//! The config file's `[[tenants]]` and `[[pools]]` imported into the store at start.
//!
//! Idempotent, and safe when several replicas start at once: only what is missing or differs
//! is written (so a restart writes nothing and adds no audit rows), and a conflict with a
//! replica that got there first counts as done. What the file states wins: a `[tenants.limits]`
//! table or a `priority` replaces the stored value at each start. Nothing the file does not
//! mention is touched: tenants, keys and endpoints created through the admin API stay.

use std::collections::HashSet;

use sluice_config::{Config, PoolConfig, TenantConfig};
use sluice_store_model::keys::{KeyDigest, display_prefix};
use sluice_store_model::{
    Actor, Backend, EngineFlavor, Limits, NewEndpoint, NewKey, NewPool, NewTenant, Priority, StoreError, TenantPatch,
};

/// What an import changed, for the start-up log.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Imported {
    pub tenants: usize,
    pub keys: usize,
    pub limits: usize,
    pub pools: usize,
    pub endpoints: usize,
}

pub async fn import(store: &dyn Backend, config: &Config) -> Result<Imported, StoreError> {
    let actor = Actor::bootstrap();
    let mut imported = Imported::default();
    for tenant in &config.tenants {
        import_tenant(store, &actor, tenant, &mut imported).await?;
    }
    for pool in &config.pools {
        import_pool(store, &actor, pool, &mut imported).await?;
    }
    Ok(imported)
}

async fn import_tenant(
    store: &dyn Backend,
    actor: &Actor,
    config: &TenantConfig,
    imported: &mut Imported,
) -> Result<(), StoreError> {
    let priority = config.priority.as_deref().map(parse_priority);
    let new =
        NewTenant { name: config.name.clone(), priority: priority.unwrap_or_default(), status: Default::default() };
    match store.create_tenant(actor, &new).await {
        Ok(_) => imported.tenants += 1,
        Err(StoreError::Conflict(_)) => {}
        Err(e) => return Err(e),
    }
    let detail = store.get_tenant(&config.name).await?;
    if let Some(priority) = priority
        && detail.tenant.priority != priority
    {
        let patch = TenantPatch { priority: Some(priority), status: None };
        store.update_tenant(actor, &config.name, &patch).await?;
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
            store.set_limits(actor, &config.name, &limits).await?;
            imported.limits += 1;
        }
    }
    // Keys are matched by digest: the store never saw the secrets.
    let snapshot_keys = store.snapshot().await?;
    let known: HashSet<KeyDigest> = snapshot_keys.tenants.iter().flat_map(|t| t.keys.iter().map(|k| k.hash)).collect();
    for key in &config.api_keys {
        let digest = KeyDigest::of(key.expose());
        if known.contains(&digest) {
            continue;
        }
        let new = NewKey { name: Some("bootstrap".into()), prefix: display_prefix(key.expose()), digest };
        match store.create_key(actor, &config.name, &new).await {
            Ok(_) => imported.keys += 1,
            // Either another replica imported it a moment ago, or the key exists but was
            // revoked through the admin API: a revocation must survive restarts.
            Err(StoreError::Conflict(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

async fn import_pool(
    store: &dyn Backend,
    actor: &Actor,
    config: &PoolConfig,
    imported: &mut Imported,
) -> Result<(), StoreError> {
    let new = NewPool { name: config.name.clone(), models: config.models.clone() };
    match store.create_pool(actor, &new).await {
        Ok(_) => imported.pools += 1,
        Err(StoreError::Conflict(_)) => {}
        Err(e) => return Err(e),
    }
    let stored = store.get_pool(&config.name).await?;
    for endpoint in &config.endpoints {
        let url = endpoint.url.to_string().trim_end_matches('/').to_owned();
        if let Some(existing) = stored.endpoints.iter().find(|e| e.name == endpoint.name) {
            if existing.url == url && existing.http2 == endpoint.http2 {
                continue;
            }
            // The file says where this endpoint is now: replace the stored one.
            match store.remove_endpoint(actor, &config.name, &endpoint.name).await {
                Ok(_) | Err(StoreError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let new = NewEndpoint {
            name: endpoint.name.clone(),
            url,
            flavor: EngineFlavor::default(),
            weight: 1,
            http2: endpoint.http2,
        };
        match store.add_endpoint(actor, &config.name, &new).await {
            Ok(_) => imported.endpoints += 1,
            Err(StoreError::Conflict(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn parse_priority(text: &str) -> Priority {
    // Validated by sluice-config.
    match text {
        "high" => Priority::High,
        "low" => Priority::Low,
        _ => Priority::Normal,
    }
}
