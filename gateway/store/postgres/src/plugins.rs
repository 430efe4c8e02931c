//! Plugins: versions with their bytes (content-addressed by SHA-256), activation, bindings.

use serde_json::json;
use sluice_store_model::{
    ActivePlugin, Actor, Binding, FailurePolicy, NewPluginVersion, Plugin, PluginVersion, Scope, StoreError,
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
        created_at: ts(now),
    })
}

pub(crate) async fn list(conn: &mut PgConnection) -> Result<Vec<Plugin>, StoreError> {
    let rows = sqlx::query!(r#"SELECT id, name, active_version, created_ms FROM plugins ORDER BY name COLLATE "C""#)
        .fetch_all(conn)
        .await
        .map_err(db)?;
    Ok(rows
        .into_iter()
        .map(|r| Plugin { id: r.id, name: r.name, active_version: r.active_version, created_at: ts(r.created_ms) })
        .collect())
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
        SELECT version, sha256, octet_length(bytes)::bigint AS "size_bytes!", manifest, created_ms
        FROM plugin_versions WHERE plugin_id = $1 ORDER BY version DESC
        "#,
        plugin_id
    )
    .fetch_all(conn)
    .await
    .map_err(db)?;
    Ok(rows
        .into_iter()
        .map(|r| PluginVersion {
            plugin: plugin.to_owned(),
            version: r.version,
            sha256: r.sha256,
            size_bytes: r.size_bytes,
            manifest: r.manifest,
            created_at: ts(r.created_ms),
        })
        .collect())
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
) -> Result<Plugin, StoreError> {
    let row = sqlx::query!(
        r#"
        UPDATE plugins p SET active_version = $2
        WHERE p.name = $1 AND EXISTS (SELECT 1 FROM plugin_versions v WHERE v.plugin_id = p.id AND v.version = $2)
        RETURNING id, name, active_version, created_ms
        "#,
        plugin,
        version
    )
    .fetch_optional(&mut *conn)
    .await
    .map_err(db)?;
    let Some(row) = row else {
        let exists = sqlx::query_scalar!("SELECT id FROM plugins WHERE name = $1", plugin)
            .fetch_optional(&mut *conn)
            .await
            .map_err(db)?;
        return Err(match exists {
            Some(_) => StoreError::not_found("plugin version", format!("{plugin}@{version}")),
            None => StoreError::not_found("plugin", plugin),
        });
    };
    record(conn, actor, "plugin.activate", &target(plugin), json!({ "version": version })).await?;
    Ok(Plugin { id: row.id, name: row.name, active_version: row.active_version, created_at: ts(row.created_ms) })
}

/// Plugins with an active version, by name, for the snapshot.
pub(crate) async fn active(conn: &mut PgConnection) -> Result<Vec<ActivePlugin>, StoreError> {
    let rows = sqlx::query!(
        r#"
        SELECT p.name, v.version, v.sha256
        FROM plugins p JOIN plugin_versions v ON v.plugin_id = p.id AND v.version = p.active_version
        ORDER BY p.name COLLATE "C"
        "#
    )
    .fetch_all(conn)
    .await
    .map_err(db)?;
    Ok(rows.into_iter().map(|r| ActivePlugin { name: r.name, version: r.version, sha256: r.sha256 }).collect())
}

pub(crate) async fn bind(
    conn: &mut PgConnection,
    actor: &Actor,
    plugin: &str,
    scope: &Scope,
    order: i32,
    failure_policy: FailurePolicy,
    config: &serde_json::Value,
) -> Result<Binding, StoreError> {
    let plugin_id = sqlx::query_scalar!("SELECT id FROM plugins WHERE name = $1 FOR KEY SHARE", plugin)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db)?
        .ok_or_else(|| StoreError::not_found("plugin", plugin))?;
    // Deleting a tenant deletes its bindings; the lock keeps a binding from slipping in meanwhile.
    if let Scope::Tenant(tenant) = scope {
        crate::tenants::lock_id(conn, tenant).await?;
    }
    let (kind, name) = codec::scope_columns(scope);
    let row = sqlx::query!(
        r#"
        INSERT INTO plugin_bindings (plugin_id, scope_kind, scope_name, ord, failure_policy, config, created_ms)
        VALUES ($1, $2, $3, $4, $5, $6, $7)
        RETURNING id, created_ms
        "#,
        plugin_id,
        kind,
        name,
        order,
        codec::policy_str(failure_policy),
        config,
        now_ms(),
    )
    .fetch_one(&mut *conn)
    .await
    .map_err(db)?;
    let detail = json!({ "plugin": plugin, "scope": scope, "order": order, "failure_policy": failure_policy });
    record(conn, actor, "plugin.bind", &format!("binding/{}", row.id), detail).await?;
    Ok(Binding {
        id: row.id,
        plugin: plugin.to_owned(),
        scope: scope.clone(),
        order,
        failure_policy,
        config: config.clone(),
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
        SELECT b.id, p.name AS plugin, b.scope_kind, b.scope_name, b.ord, b.failure_policy, b.config, b.created_ms
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
                created_at: ts(r.created_ms),
            })
        })
        .collect()
}
