//! Plugins, their uploaded versions (bytes kept beside the metadata) and their bindings.

use serde_json::json;
use sluice_store_model::{
    ActivePlugin, Actor, Binding, NewBinding, NewPluginVersion, Plugin, PluginVersion, Scope, StoreError,
};
use sqlx::{SqliteConnection, SqlitePool};

use crate::codec::{self, now_ms, ts};
use crate::error::{db, json};
use crate::tenants;
use crate::write::{self, Audit};

struct PluginRow {
    id: i64,
    name: String,
    active_version: Option<i64>,
    /// The active version's grants (JSON), `None` while no version is active.
    granted: Option<String>,
    created_ms: i64,
}

/// A `granted` column: a JSON array of capability names, or NULL.
fn granted(text: Option<String>) -> Result<Option<Vec<String>>, StoreError> {
    text.map(|t| serde_json::from_str(&t).map_err(|e| json("plugin version grants", e))).transpose()
}

impl TryFrom<PluginRow> for Plugin {
    type Error = StoreError;

    fn try_from(row: PluginRow) -> Result<Self, StoreError> {
        Ok(Plugin {
            id: row.id,
            name: row.name,
            active_version: row.active_version.map(|v| codec::to_i32("active version", v)).transpose()?,
            granted: granted(row.granted)?.unwrap_or_default(),
            created_at: ts(row.created_ms),
        })
    }
}

struct VersionRow {
    plugin: String,
    version: i64,
    sha256: String,
    size_bytes: i64,
    manifest: String,
    granted: Option<String>,
    created_ms: i64,
}

impl TryFrom<VersionRow> for PluginVersion {
    type Error = StoreError;

    fn try_from(row: VersionRow) -> Result<Self, StoreError> {
        Ok(PluginVersion {
            plugin: row.plugin,
            version: codec::to_i32("plugin version", row.version)?,
            sha256: row.sha256,
            size_bytes: row.size_bytes,
            manifest: serde_json::from_str(&row.manifest).map_err(|e| json("plugin manifest", e))?,
            granted: granted(row.granted)?,
            created_at: ts(row.created_ms),
        })
    }
}

async fn read(conn: &mut SqliteConnection, name: &str) -> Result<Plugin, StoreError> {
    sqlx::query_as!(
        PluginRow,
        r#"SELECT p.id, p.name, p.active_version, v.granted AS "granted?: String", p.created_ms
           FROM plugins p LEFT JOIN plugin_versions v ON v.plugin_id = p.id AND v.version = p.active_version
           WHERE p.name = ?"#,
        name
    )
    .fetch_optional(conn)
    .await
    .map_err(db)?
    .ok_or_else(|| StoreError::not_found("plugin", name))?
    .try_into()
}

async fn read_version(conn: &mut SqliteConnection, plugin_id: i64, version: i64) -> Result<PluginVersion, StoreError> {
    sqlx::query_as!(
        VersionRow,
        r#"SELECT p.name AS plugin, v.version, v.sha256, length(v.bytes) AS "size_bytes!: i64", v.manifest,
                  v.granted, v.created_ms
           FROM plugin_versions v JOIN plugins p ON p.id = v.plugin_id
           WHERE v.plugin_id = ? AND v.version = ?"#,
        plugin_id,
        version
    )
    .fetch_optional(conn)
    .await
    .map_err(db)?
    .ok_or_else(|| StoreError::not_found("plugin version", version.to_string()))?
    .try_into()
}

pub(crate) async fn add_version(
    pool: &SqlitePool,
    actor: &Actor,
    new: &NewPluginVersion,
) -> Result<PluginVersion, StoreError> {
    let manifest = new.manifest.to_string();
    let mut tx = write::begin(pool).await?;
    let now = now_ms();
    sqlx::query!("INSERT INTO plugins (name, created_ms) VALUES (?, ?) ON CONFLICT (name) DO NOTHING", new.plugin, now)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    let plugin = read(&mut tx, &new.plugin).await?;
    let same = sqlx::query_scalar!(
        "SELECT version FROM plugin_versions WHERE plugin_id = ? AND sha256 = ?",
        plugin.id,
        new.sha256
    )
    .fetch_optional(&mut *tx)
    .await
    .map_err(db)?;
    if let Some(version) = same {
        return Err(StoreError::Conflict(format!(
            "plugin {:?} version {version} has the same bytes (sha256 {})",
            new.plugin, new.sha256
        )));
    }
    let version = sqlx::query_scalar!(
        r#"SELECT COALESCE(MAX(version), 0) + 1 AS "version!: i64" FROM plugin_versions WHERE plugin_id = ?"#,
        plugin.id
    )
    .fetch_one(&mut *tx)
    .await
    .map_err(db)?;
    sqlx::query!(
        "INSERT INTO plugin_versions (plugin_id, version, sha256, bytes, manifest, created_ms) VALUES (?, ?, ?, ?, ?, ?)",
        plugin.id,
        version,
        new.sha256,
        new.bytes,
        manifest,
        now,
    )
    .execute(&mut *tx)
    .await
    .map_err(db)?;
    let stored = read_version(&mut tx, plugin.id, version).await?;
    let audit = Audit {
        actor,
        action: "plugin.upload",
        target: format!("plugin/{}", new.plugin),
        detail: json!({ "version": stored.version, "sha256": stored.sha256, "size_bytes": stored.size_bytes }),
    };
    write::commit(tx, audit).await?;
    Ok(stored)
}

pub(crate) async fn list(pool: &SqlitePool) -> Result<Vec<Plugin>, StoreError> {
    sqlx::query_as!(
        PluginRow,
        r#"SELECT p.id, p.name, p.active_version, v.granted AS "granted?: String", p.created_ms
           FROM plugins p LEFT JOIN plugin_versions v ON v.plugin_id = p.id AND v.version = p.active_version
           ORDER BY p.name"#
    )
    .fetch_all(pool)
    .await
    .map_err(db)?
    .into_iter()
    .map(Plugin::try_from)
    .collect()
}

pub(crate) async fn list_versions(pool: &SqlitePool, name: &str) -> Result<Vec<PluginVersion>, StoreError> {
    let mut tx = pool.begin().await.map_err(db)?;
    let plugin = read(&mut tx, name).await?;
    let rows = sqlx::query_as!(
        VersionRow,
        r#"SELECT p.name AS plugin, v.version, v.sha256, length(v.bytes) AS "size_bytes!: i64", v.manifest,
                  v.granted, v.created_ms
           FROM plugin_versions v JOIN plugins p ON p.id = v.plugin_id
           WHERE v.plugin_id = ?
           ORDER BY v.version DESC"#,
        plugin.id
    )
    .fetch_all(&mut *tx)
    .await
    .map_err(db)?;
    tx.commit().await.map_err(db)?;
    rows.into_iter().map(PluginVersion::try_from).collect()
}

pub(crate) async fn bytes(pool: &SqlitePool, sha256: &str) -> Result<Vec<u8>, StoreError> {
    sqlx::query_scalar!("SELECT bytes FROM plugin_versions WHERE sha256 = ? LIMIT 1", sha256)
        .fetch_optional(pool)
        .await
        .map_err(db)?
        .ok_or_else(|| StoreError::not_found("plugin version", sha256))
}

pub(crate) async fn activate(
    pool: &SqlitePool,
    actor: &Actor,
    name: &str,
    version: i32,
    grants: &[String],
) -> Result<Plugin, StoreError> {
    let granted = serde_json::Value::from(grants.to_vec()).to_string();
    let mut tx = write::begin(pool).await?;
    let plugin = read(&mut tx, name).await?;
    let chosen = read_version(&mut tx, plugin.id, i64::from(version)).await?;
    // The grants go with the version, so that a later rollback to it grants the same again.
    sqlx::query!(
        "UPDATE plugin_versions SET granted = ? WHERE plugin_id = ? AND version = ?",
        granted,
        plugin.id,
        version
    )
    .execute(&mut *tx)
    .await
    .map_err(db)?;
    sqlx::query!("UPDATE plugins SET active_version = ? WHERE id = ?", version, plugin.id)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    let activated = read(&mut tx, name).await?;
    let audit = Audit {
        actor,
        action: "plugin.activate",
        target: format!("plugin/{name}"),
        detail: json!({
            "version": version, "previous": plugin.active_version, "sha256": chosen.sha256, "grants": grants,
        }),
    };
    write::commit(tx, audit).await?;
    Ok(activated)
}

struct BindingRow {
    id: i64,
    plugin: String,
    scope_kind: String,
    scope_name: Option<String>,
    ord: i64,
    failure_policy: String,
    config: String,
    timeout_ms: Option<i64>,
    max_memory_bytes: Option<i64>,
    created_ms: i64,
}

impl TryFrom<BindingRow> for Binding {
    type Error = StoreError;

    fn try_from(row: BindingRow) -> Result<Self, StoreError> {
        Ok(Binding {
            id: row.id,
            plugin: row.plugin,
            scope: codec::scope(&row.scope_kind, row.scope_name)?,
            order: codec::to_i32("binding order", row.ord)?,
            failure_policy: codec::policy(&row.failure_policy)?,
            config: serde_json::from_str(&row.config).map_err(|e| json("binding config", e))?,
            timeout_ms: row.timeout_ms.map(|t| codec::to_u32("binding timeout_ms", t)).transpose()?,
            max_memory_bytes: codec::to_u64("binding max_memory_bytes", row.max_memory_bytes)?,
            created_at: ts(row.created_ms),
        })
    }
}

pub(crate) async fn bind(pool: &SqlitePool, actor: &Actor, new: &NewBinding) -> Result<Binding, StoreError> {
    let name = new.plugin.as_str();
    let (kind, scope_name) = codec::scope_parts(&new.scope);
    let policy = codec::policy_str(new.failure_policy);
    let config_text = new.config.to_string();
    let timeout_ms = new.timeout_ms.map(i64::from);
    let max_memory_bytes = codec::to_i64("max_memory_bytes", new.max_memory_bytes)?;
    let mut tx = write::begin(pool).await?;
    let plugin = read(&mut tx, name).await?;
    if let Scope::Tenant(tenant) = &new.scope {
        // Tenant bindings name their tenant (so that they can be removed with it) rather than
        // reference it, so its existence is checked here.
        tenants::id_of(&mut tx, tenant).await?;
    }
    let now = now_ms();
    let id = sqlx::query!(
        "INSERT INTO plugin_bindings
            (plugin_id, scope_kind, scope_name, ord, failure_policy, config, timeout_ms, max_memory_bytes, created_ms)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        plugin.id,
        kind,
        scope_name,
        new.order,
        policy,
        config_text,
        timeout_ms,
        max_memory_bytes,
        now,
    )
    .execute(&mut *tx)
    .await
    .map_err(db)?
    .last_insert_rowid();
    let binding = read_binding(&mut tx, id).await?;
    let audit = Audit {
        actor,
        action: "plugin.bind",
        target: format!("binding/{id}"),
        detail: json!({
            "plugin": name, "scope": new.scope, "order": new.order, "failure_policy": policy,
            "timeout_ms": new.timeout_ms, "max_memory_bytes": new.max_memory_bytes,
        }),
    };
    write::commit(tx, audit).await?;
    Ok(binding)
}

async fn read_binding(conn: &mut SqliteConnection, id: i64) -> Result<Binding, StoreError> {
    sqlx::query_as!(
        BindingRow,
        "SELECT b.id, p.name AS plugin, b.scope_kind, b.scope_name, b.ord, b.failure_policy, b.config,
                b.timeout_ms, b.max_memory_bytes, b.created_ms
         FROM plugin_bindings b JOIN plugins p ON p.id = b.plugin_id
         WHERE b.id = ?",
        id
    )
    .fetch_optional(conn)
    .await
    .map_err(db)?
    .ok_or_else(|| StoreError::not_found("binding", id.to_string()))?
    .try_into()
}

pub(crate) async fn unbind(pool: &SqlitePool, actor: &Actor, binding_id: i64) -> Result<(), StoreError> {
    let mut tx = write::begin(pool).await?;
    let binding = read_binding(&mut tx, binding_id).await?;
    sqlx::query!("DELETE FROM plugin_bindings WHERE id = ?", binding_id).execute(&mut *tx).await.map_err(db)?;
    let audit = Audit {
        actor,
        action: "plugin.unbind",
        target: format!("binding/{binding_id}"),
        detail: json!({ "plugin": binding.plugin, "scope": binding.scope }),
    };
    write::commit(tx, audit).await
}

/// Ordered by `order`, then id.
pub(crate) async fn bindings_in(conn: &mut SqliteConnection) -> Result<Vec<Binding>, StoreError> {
    sqlx::query_as!(
        BindingRow,
        "SELECT b.id, p.name AS plugin, b.scope_kind, b.scope_name, b.ord, b.failure_policy, b.config,
                b.timeout_ms, b.max_memory_bytes, b.created_ms
         FROM plugin_bindings b JOIN plugins p ON p.id = b.plugin_id
         ORDER BY b.ord, b.id"
    )
    .fetch_all(conn)
    .await
    .map_err(db)?
    .into_iter()
    .map(Binding::try_from)
    .collect()
}

pub(crate) async fn bindings(pool: &SqlitePool) -> Result<Vec<Binding>, StoreError> {
    let mut conn = pool.acquire().await.map_err(db)?;
    bindings_in(&mut conn).await
}

/// The versions that bindings run: each plugin's active version, by name.
pub(crate) async fn active_in(conn: &mut SqliteConnection) -> Result<Vec<ActivePlugin>, StoreError> {
    let rows = sqlx::query!(
        "SELECT p.name, v.version, v.sha256, v.granted
         FROM plugins p JOIN plugin_versions v ON v.plugin_id = p.id AND v.version = p.active_version
         ORDER BY p.name"
    )
    .fetch_all(conn)
    .await
    .map_err(db)?;
    rows.into_iter()
        .map(|r| {
            Ok(ActivePlugin {
                name: r.name,
                version: codec::to_i32("plugin version", r.version)?,
                sha256: r.sha256,
                // Activation always stores grants; none stored means none granted.
                granted: granted(r.granted)?.unwrap_or_default(),
            })
        })
        .collect()
}
