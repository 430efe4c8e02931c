-- Admin-granted capabilities and per-binding limits for stored plugins.
--
-- plugin_versions.granted: the capability names (a JSON array) an admin granted the version
-- the last time it was activated; NULL until it is first activated. Grants belong to a version,
-- not to the plugin, because each version imports its own set: rolling back re-activates the
-- older version with the grants it was approved with, never with the newer version's.
ALTER TABLE plugin_versions ADD COLUMN granted JSONB CHECK (granted IS NULL OR jsonb_typeof(granted) = 'array');

-- Before this migration a stored version was granted exactly what it imports, the capabilities
-- in its manifest. The versions active now keep those grants, so an upgrade changes nothing
-- that runs; versions not active get none until an admin activates them.
UPDATE plugin_versions v
SET granted = CASE WHEN jsonb_typeof(v.manifest -> 'capabilities') = 'array'
                   THEN v.manifest -> 'capabilities' ELSE '[]'::jsonb END
FROM plugins p
WHERE p.id = v.plugin_id AND p.active_version = v.version;

-- A binding's deadline per call and memory limit; NULL keeps the host's defaults. The admin API
-- holds them to the host's maxima; these checks only keep nonsense out.
ALTER TABLE plugin_bindings ADD COLUMN timeout_ms BIGINT CHECK (timeout_ms >= 1);
ALTER TABLE plugin_bindings ADD COLUMN max_memory_bytes BIGINT CHECK (max_memory_bytes >= 1048576);
