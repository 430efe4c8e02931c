//! The config file's `[[tenants]]` and `[[pools]]` imported into the store at start.
//!
//! Idempotent, and safe when several replicas start at once: only what is missing or differs
//! is written (so a restart writes nothing and adds no audit rows), and a conflict with a
//! replica that got there first counts as done. What the file states wins: a `[tenants.limits]`
//! table, a `[tenants.model_limits]` table (every model's entry: models it does not name lose
//! theirs), a key's `limits` or a `priority` replaces the stored value at each start. Nothing
//! the file does not mention is touched: tenants, keys and endpoints created through the admin
//! API stay, and so do the limits of keys written without a `limits` table.

use std::collections::HashMap;

use sluice_config::{Config, PoolConfig, TenantConfig};
use sluice_store_model::keys::{KeyDigest, display_prefix};
use sluice_store_model::{
    Actor, Backend, EngineFlavor, Limits, ModelLimits, NewEndpoint, NewKey, NewPool, NewTenant, Priority, ScopeLimits,
    StoreError, TenantPatch,
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
    if let Some(models) = &config.model_limits {
        import_model_limits(store, actor, &config.name, &detail.model_limits, models, imported).await?;
    }
    // Keys are matched by digest: the store never saw the secrets. Revoked keys are not in the
    // snapshot; their limits are left alone.
    let snapshot_keys = store.snapshot().await?;
    let known: HashMap<KeyDigest, (&str, i64, ScopeLimits)> = snapshot_keys
        .tenants
        .iter()
        .flat_map(|t| t.keys.iter().map(|k| (k.hash, (t.tenant.name.as_str(), k.id, k.limits))))
        .collect();
    for key in &config.api_keys {
        let digest = KeyDigest::of(key.key.expose());
        let stored = match known.get(&digest) {
            Some(&(tenant, id, limits)) => (tenant == config.name).then_some((id, limits)),
            None => {
                let new = NewKey { name: Some("bootstrap".into()), prefix: display_prefix(key.key.expose()), digest };
                match store.create_key(actor, &config.name, &new).await {
                    Ok(created) => {
                        imported.keys += 1;
                        Some((created.id, created.limits))
                    }
                    // Either another replica imported it a moment ago, or the key exists but
                    // was revoked through the admin API: a revocation must survive restarts.
                    Err(StoreError::Conflict(_)) => None,
                    Err(e) => return Err(e),
                }
            }
        };
        if let (Some((id, current)), Some(wanted)) = (stored, key.limits)
            && current != wanted
        {
            match store.set_key_limits(actor, &config.name, id, &wanted).await {
                Ok(_) => imported.limits += 1,
                // Revoked or moved by the admin API between the snapshot and now.
                Err(StoreError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

/// Makes the tenant's stored per-model limits exactly `wanted`, writing only what differs.
async fn import_model_limits(
    store: &dyn Backend,
    actor: &Actor,
    tenant: &str,
    stored: &[ModelLimits],
    wanted: &[ModelLimits],
    imported: &mut Imported,
) -> Result<(), StoreError> {
    for entry in wanted {
        if !stored.contains(entry) {
            store.set_model_limits(actor, tenant, &entry.model, &entry.limits).await?;
            imported.limits += 1;
        }
    }
    for entry in stored {
        if !wanted.iter().any(|w| w.model == entry.model) {
            match store.delete_model_limits(actor, tenant, &entry.model).await {
                Ok(()) => imported.limits += 1,
                // Another replica removed it a moment ago.
                Err(StoreError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
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
