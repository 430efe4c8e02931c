//! Plugins: versions with their bytes (content-addressed by SHA-256), activation, bindings.

use serde_json::json;
use sluice_store_model::{
    ActivePlugin, Actor, Binding, NewBinding, NewPluginVersion, Plugin, PluginVersion, Scope, StoreError,
};
use sqlx::PgConnection;

use crate::audit::record;
use crate::codec::{self, now_ms, ts};
use crate::error::db;

fn target(plugin: &str) -> String {
    format!("plugin/{plugin}")
}

pub(crate) async fn add_version(
    conn: &mut PgConnection,
    actor: &Actor,
    upload: &NewPluginVersion,
) -> Result<PluginVersion, StoreError> {
    let name = &upload.plugin;
    let now = now_ms();
    // Creates the plugin on its first upload; the no-op update locks its row either way, so
    // concurrent uploads of one plugin number their versions one after the other.
    let plugin_id = sqlx::query_scalar!(
        r#"
        INSERT INTO plugins (name, created_ms) VALUES ($1, $2)
        ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name
        RETURNING id
        "#,
        name,
        now
    )
    .fetch_one(&mut *conn)
    .await
    .map_err(db)?;
    let same = sqlx::query_scalar!(
        "SELECT version FROM plugin_versions WHERE plugin_id = $1 AND sha256 = $2",
        plugin_id,
        upload.sha256
    )
    .fetch_optional(&mut *conn)
    .await
    .map_err(db)?;
    if let Some(version) = same {
        return Err(StoreError::Conflict(format!(
            "plugin {name:?} version {version} has the same bytes (sha256 {})",
            upload.sha256
        )));
    }
    let size_bytes =
        i64::try_from(upload.bytes.len()).map_err(|_| StoreError::invalid("bytes", "the upload is too large"))?;
    let version = sqlx::query_scalar!(
        r#"
        INSERT INTO plugin_versions (plugin_id, version, sha256, bytes, manifest, created_ms)
        SELECT $1, COALESCE(MAX(version), 0) + 1, $2, $3, $4, $5 FROM plugin_versions WHERE plugin_id = $1
        RETURNING version
        "#,
        plugin_id,
        upload.sha256,
        upload.bytes,
        upload.manifest,
        now,
    )
    .fetch_one(&mut *conn)
    .await
    .map_err(db)?;
    let detail = json!({ "version": version, "sha256": upload.sha256, "size_bytes": size_bytes });
    record(conn, actor, "plugin.upload", &target(name), detail).await?;
    Ok(PluginVersion {
        plugin: name.clone(),
        version,
        sha256: upload.sha256.clone(),
        size_bytes,
        manifest: upload.manifest.clone(),
        granted: None,
        created_at: ts(now),
    })
}

pub(crate) async fn list(conn: &mut PgConnection) -> Result<Vec<Plugin>, StoreError> {
    let rows = sqlx::query!(
        r#"
        SELECT p.id, p.name, p.active_version, v.granted AS "granted?", p.created_ms
        FROM plugins p LEFT JOIN plugin_versions v ON v.plugin_id = p.id AND v.version = p.active_version
        ORDER BY p.name COLLATE "C"
        "#
    )
    .fetch_all(conn)
    .await
    .map_err(db)?;
    rows.into_iter()
        .map(|r| {
            Ok(Plugin {
                id: r.id,
                name: r.name,
                active_version: r.active_version,
                granted: granted(r.granted)?.unwrap_or_default(),
                created_at: ts(r.created_ms),
            })
        })
        .collect()
}

fn granted(value: Option<serde_json::Value>) -> Result<Option<Vec<String>>, StoreError> {
    value.map(|v| codec::string_list("plugin_versions.granted", v)).transpose()
}

/// Newest first, without the bytes.
pub(crate) async fn list_versions(conn: &mut PgConnection, plugin: &str) -> Result<Vec<PluginVersion>, StoreError> {
    let plugin_id = sqlx::query_scalar!("SELECT id FROM plugins WHERE name = $1", plugin)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db)?
        .ok_or_else(|| StoreError::not_found("plugin", plugin))?;
    let rows = sqlx::query!(
        r#"
        SELECT version, sha256, octet_length(bytes)::bigint AS "size_bytes!", manifest, granted, created_ms
        FROM plugin_versions WHERE plugin_id = $1 ORDER BY version DESC
        "#,
        plugin_id
    )
    .fetch_all(conn)
    .await
    .map_err(db)?;
    rows.into_iter()
        .map(|r| {
            Ok(PluginVersion {
                plugin: plugin.to_owned(),
                version: r.version,
                sha256: r.sha256,
                size_bytes: r.size_bytes,
                manifest: r.manifest,
                granted: granted(r.granted)?,
                created_at: ts(r.created_ms),
            })
        })
        .collect()
}

pub(crate) async fn bytes(conn: &mut PgConnection, sha256: &str) -> Result<Vec<u8>, StoreError> {
    sqlx::query_scalar!("SELECT bytes FROM plugin_versions WHERE sha256 = $1 LIMIT 1", sha256)
        .fetch_optional(conn)
        .await
        .map_err(db)?
        .ok_or_else(|| StoreError::not_found("plugin bytes", sha256))
}

pub(crate) async fn activate(
    conn: &mut PgConnection,
    actor: &Actor,
    plugin: &str,
    version: i32,
    grants: &[String],
) -> Result<Plugin, StoreError> {
    let granted = codec::json_list(grants);
    // The grants go with the version (a later rollback to it grants the same); the plugin row
    // then points at it. Both in this transaction, so no snapshot sees one without the other.
    let found = sqlx::query_scalar!(
        r#"
        UPDATE plugin_versions v SET granted = $3
        FROM plugins p
        WHERE p.name = $1 AND v.plugin_id = p.id AND v.version = $2
        RETURNING v.sha256
        "#,
        plugin,
        version,
        granted
    )
    .fetch_optional(&mut *conn)
    .await
    .map_err(db)?;
    let Some(sha256) = found else {
        let exists = sqlx::query_scalar!("SELECT id FROM plugins WHERE name = $1", plugin)
            .fetch_optional(&mut *conn)
            .await
            .map_err(db)?;
        return Err(match exists {
            Some(_) => StoreError::not_found("plugin version", format!("{plugin}@{version}")),
            None => StoreError::not_found("plugin", plugin),
        });
    };
    let row = sqlx::query!(
        r#"
        UPDATE plugins SET active_version = $2 WHERE name = $1
        RETURNING id, name, active_version, created_ms
        "#,
        plugin,
        version
    )
    .fetch_one(&mut *conn)
    .await
    .map_err(db)?;
    let detail = json!({ "version": version, "sha256": sha256, "grants": grants });
    record(conn, actor, "plugin.activate", &target(plugin), detail).await?;
    Ok(Plugin {
        id: row.id,
        name: row.name,
        active_version: row.active_version,
        granted: grants.to_vec(),
        created_at: ts(row.created_ms),
    })
}

/// Plugins with an active version, by name, for the snapshot.
pub(crate) async fn active(conn: &mut PgConnection) -> Result<Vec<ActivePlugin>, StoreError> {
    let rows = sqlx::query!(
        r#"
        SELECT p.name, v.version, v.sha256, v.granted
        FROM plugins p JOIN plugin_versions v ON v.plugin_id = p.id AND v.version = p.active_version
        ORDER BY p.name COLLATE "C"
        "#
    )
    .fetch_all(conn)
    .await
    .map_err(db)?;
    rows.into_iter()
        .map(|r| {
            Ok(ActivePlugin {
                name: r.name,
                version: r.version,
                sha256: r.sha256,
                // Activation always stores grants; none stored means none granted.
                granted: granted(r.granted)?.unwrap_or_default(),
            })
        })
        .collect()
}

pub(crate) async fn bind(conn: &mut PgConnection, actor: &Actor, new: &NewBinding) -> Result<Binding, StoreError> {
    let plugin = new.plugin.as_str();
    let timeout_ms = new.timeout_ms.map(i64::from);
    let max_memory_bytes = codec::to_i64("max_memory_bytes", new.max_memory_bytes)?;
    let plugin_id = sqlx::query_scalar!("SELECT id FROM plugins WHERE name = $1 FOR KEY SHARE", plugin)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db)?
        .ok_or_else(|| StoreError::not_found("plugin", plugin))?;
    // Deleting a tenant deletes its bindings; the lock keeps a binding from slipping in meanwhile.
    if let Scope::Tenant(tenant) = &new.scope {
        crate::tenants::lock_id(conn, tenant).await?;
    }
    let (kind, name) = codec::scope_columns(&new.scope);
    let row = sqlx::query!(
        r#"
        INSERT INTO plugin_bindings
            (plugin_id, scope_kind, scope_name, ord, failure_policy, config, timeout_ms, max_memory_bytes, created_ms)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
        RETURNING id, created_ms
        "#,
        plugin_id,
        kind,
        name,
        new.order,
        codec::policy_str(new.failure_policy),
        new.config,
        timeout_ms,
        max_memory_bytes,
        now_ms(),
    )
    .fetch_one(&mut *conn)
    .await
    .map_err(db)?;
    let detail = json!({
        "plugin": plugin, "scope": new.scope, "order": new.order, "failure_policy": new.failure_policy,
        "timeout_ms": new.timeout_ms, "max_memory_bytes": new.max_memory_bytes,
    });
    record(conn, actor, "plugin.bind", &format!("binding/{}", row.id), detail).await?;
    Ok(Binding {
        id: row.id,
        plugin: plugin.to_owned(),
        scope: new.scope.clone(),
        order: new.order,
        failure_policy: new.failure_policy,
        config: new.config.clone(),
        timeout_ms: new.timeout_ms,
        max_memory_bytes: new.max_memory_bytes,
        created_at: ts(row.created_ms),
    })
}

pub(crate) async fn unbind(conn: &mut PgConnection, actor: &Actor, binding_id: i64) -> Result<(), StoreError> {
    let plugin = sqlx::query_scalar!(
        r#"
        DELETE FROM plugin_bindings b USING plugins p
        WHERE b.id = $1 AND p.id = b.plugin_id
        RETURNING p.name
        "#,
        binding_id
    )
    .fetch_optional(&mut *conn)
    .await
    .map_err(db)?
    .ok_or_else(|| StoreError::not_found("binding", binding_id.to_string()))?;
    record(conn, actor, "plugin.unbind", &format!("binding/{binding_id}"), json!({ "plugin": plugin })).await?;
    Ok(())
}

/// By order, then id (creation), which is the order the gateway runs them in.
pub(crate) async fn bindings(conn: &mut PgConnection) -> Result<Vec<Binding>, StoreError> {
    let rows = sqlx::query!(
        r#"
        SELECT b.id, p.name AS plugin, b.scope_kind, b.scope_name, b.ord, b.failure_policy, b.config,
               b.timeout_ms, b.max_memory_bytes, b.created_ms
        FROM plugin_bindings b JOIN plugins p ON p.id = b.plugin_id
        ORDER BY b.ord, b.id
        "#
    )
    .fetch_all(conn)
    .await
    .map_err(db)?;
    rows.into_iter()
        .map(|r| {
            Ok(Binding {
                id: r.id,
                plugin: r.plugin,
                scope: codec::scope(&r.scope_kind, r.scope_name)?,
                order: r.ord,
                failure_policy: codec::policy(&r.failure_policy)?,
                config: r.config,
                timeout_ms: codec::timeout_ms(r.timeout_ms)?,
                max_memory_bytes: codec::to_u64("binding max_memory_bytes", r.max_memory_bytes)?,
                created_at: ts(r.created_ms),
            })
        })
        .collect()
}
