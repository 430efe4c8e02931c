//! The built-in `cache` plugin published in the store, so that the admin API binds it like any
//! uploaded plugin: globally, per tenant or per model.
//!
//! At start each gateway makes sure that the plugin of the built-in's name has the component
//! this binary carries as a version, and that this version is the active one, granted the
//! built-in's default capabilities. The name is reserved: the admin API refuses uploads to it
//! (see `HostInspector::is_builtin`), so every version of it is a built-in of some Sluice
//! release and the most recently started gateway's is the one that runs. Replicas starting
//! together race harmlessly: an identical upload is a conflict naming the version the other
//! replica stored, and activating the active version is skipped. A plugin of that name uploaded
//! before the name was reserved (its versions lack the built-in mark in their manifest) is left
//! alone, with a warning.
//!
//! `router` and `ratelimit` are not published: every gateway binds them already (unless its
//! `[plugin_host]` says otherwise), and a stored binding beside the default one would run them
//! twice — each request counted twice against its limits.

use sha2::{Digest, Sha256};
use sluice_plugin_host::{Capability, PluginHost, builtin};
use sluice_store::Backend;
use sluice_store::model::{Actor, NewPluginVersion, StoreError};

/// The built-ins bound through the store.
pub const PUBLISHED: [&str; 1] = ["cache"];

/// Set to `true` in the manifest of every version a gateway published.
const BUILTIN_MARK: &str = "builtin";

/// Publishes [`PUBLISHED`]; returns the names whose store entry changed.
pub async fn publish(store: &dyn Backend, host: &PluginHost) -> Result<Vec<&'static str>, StoreError> {
    let mut changed = Vec::new();
    for name in PUBLISHED {
        let Some(bytes) = builtin::component(name) else { continue };
        if publish_one(store, host, name, bytes).await? {
            changed.push(name);
        }
    }
    Ok(changed)
}

async fn publish_one(store: &dyn Backend, host: &PluginHost, name: &str, bytes: &[u8]) -> Result<bool, StoreError> {
    let sha256 = hex::encode(Sha256::digest(bytes));
    let versions = match store.list_plugin_versions(name).await {
        Ok(versions) => versions,
        Err(StoreError::NotFound { .. }) => Vec::new(),
        Err(error) => return Err(error),
    };
    if versions.iter().any(|v| v.manifest.get(BUILTIN_MARK) != Some(&serde_json::Value::Bool(true))) {
        tracing::warn!(
            plugin = name,
            "a plugin named like the built-in was uploaded before the name was reserved; the built-in is not \
             published (rename that plugin to bind the built-in through the admin API)"
        );
        return Ok(false);
    }
    let mut changed = false;
    let version = match versions.iter().find(|v| v.sha256 == sha256).map(|v| v.version) {
        Some(version) => version,
        None => {
            // The binary's own component: a refusal here is a build defect, reported as such.
            let mut manifest = host
                .inspect(name, bytes)
                .map_err(|e| StoreError::Database(format!("the built-in plugin {name} does not load: {e}")))?
                .to_json();
            if let Some(fields) = manifest.as_object_mut() {
                fields.insert(BUILTIN_MARK.to_owned(), serde_json::Value::Bool(true));
            }
            let upload =
                NewPluginVersion { plugin: name.to_owned(), bytes: bytes.to_vec(), sha256: sha256.clone(), manifest };
            match store.add_plugin_version(&Actor::bootstrap(), &upload).await {
                Ok(stored) => {
                    changed = true;
                    stored.version
                }
                // Another replica stored the same bytes first.
                Err(StoreError::Conflict(_)) => stored_version(store, name, &sha256).await?.ok_or_else(|| {
                    StoreError::Database(format!("built-in plugin {name}: upload conflict without a version"))
                })?,
                Err(error) => return Err(error),
            }
        }
    };
    let active = store.list_plugins().await?.into_iter().find(|p| p.name == name).and_then(|p| p.active_version);
    if active != Some(version) {
        let granted = builtin::capabilities(name);
        let grants: Vec<String> =
            Capability::ALL.into_iter().filter(|c| granted.has(*c)).map(|c| c.name().to_owned()).collect();
        store.activate_plugin_version(&Actor::bootstrap(), name, version, &grants).await?;
        changed = true;
    }
    Ok(changed)
}

/// The version of `name` whose bytes hash to `sha256`, if the store has one.
async fn stored_version(store: &dyn Backend, name: &str, sha256: &str) -> Result<Option<i32>, StoreError> {
    match store.list_plugin_versions(name).await {
        Ok(versions) => Ok(versions.into_iter().find(|v| v.sha256 == sha256).map(|v| v.version)),
        Err(StoreError::NotFound { .. }) => Ok(None),
        Err(error) => Err(error),
    }
}
