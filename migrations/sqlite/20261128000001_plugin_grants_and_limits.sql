-- Admin-granted capabilities and per-binding limits for stored plugins (the twin of
-- migrations/postgres/20261128000001_plugin_grants_and_limits.sql; see it for the reasons).
--
-- plugin_versions.granted: the capability names (a JSON array) granted at the version's last
-- activation; NULL until it is first activated.
ALTER TABLE plugin_versions ADD COLUMN granted TEXT CHECK (granted IS NULL OR json_type(granted) = 'array');

-- The versions active now keep the grants they had implicitly: what they import.
UPDATE plugin_versions
SET granted = CASE WHEN json_type(manifest, '$.capabilities') = 'array'
                   THEN json_extract(manifest, '$.capabilities') ELSE '[]' END
WHERE EXISTS (
    SELECT 1 FROM plugins p WHERE p.id = plugin_versions.plugin_id AND p.active_version = plugin_versions.version
);

-- A binding's deadline per call and memory limit; NULL keeps the host's defaults.
ALTER TABLE plugin_bindings ADD COLUMN timeout_ms INTEGER CHECK (timeout_ms >= 1);
ALTER TABLE plugin_bindings ADD COLUMN max_memory_bytes INTEGER CHECK (max_memory_bytes >= 1048576);
