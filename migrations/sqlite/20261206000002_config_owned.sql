-- The twin of migrations/postgres/20261206000002_config_owned.sql (see it for the reasons).
-- Who owns each tenant, API key, pool and endpoint: 'config' for what the config file declares
-- (created or adopted by its reconciliation at start and on reload, which also removes it when
-- the file stops declaring it), 'api' for everything else. The admin API cannot delete what the
-- file owns; see docs/configuration.md, "Who owns what".
ALTER TABLE tenants ADD COLUMN managed_by TEXT NOT NULL DEFAULT 'api' CHECK (managed_by IN ('config', 'api'));
ALTER TABLE api_keys ADD COLUMN managed_by TEXT NOT NULL DEFAULT 'api' CHECK (managed_by IN ('config', 'api'));
ALTER TABLE pools ADD COLUMN managed_by TEXT NOT NULL DEFAULT 'api' CHECK (managed_by IN ('config', 'api'));
ALTER TABLE endpoints ADD COLUMN managed_by TEXT NOT NULL DEFAULT 'api' CHECK (managed_by IN ('config', 'api'));

-- Rows the config file's import wrote before ownership was recorded: the audit log knows them
-- (actor 'bootstrap'). A name created several times belongs to whoever created it last.
UPDATE tenants AS t SET managed_by = 'config'
WHERE (
    SELECT a.actor FROM audit_log a
    WHERE a.action = 'tenant.create' AND a.target = t.name
    ORDER BY a.id DESC LIMIT 1
) = 'bootstrap';

UPDATE api_keys AS k SET managed_by = 'config'
WHERE EXISTS (
    SELECT 1 FROM audit_log a JOIN tenants t ON t.id = k.tenant_id
    WHERE a.action = 'key.create' AND a.actor = 'bootstrap' AND a.target = t.name || '/key/' || k.id
);

UPDATE pools AS p SET managed_by = 'config'
WHERE (
    SELECT a.actor FROM audit_log a
    WHERE a.action = 'pool.create' AND a.target = 'pool/' || p.name
    ORDER BY a.id DESC LIMIT 1
) = 'bootstrap';

UPDATE endpoints AS e SET managed_by = 'config'
WHERE (
    SELECT a.actor FROM audit_log a JOIN pools p ON p.id = e.pool_id
    WHERE a.action = 'endpoint.add' AND a.target = 'pool/' || p.name || '/endpoint/' || e.name
    ORDER BY a.id DESC LIMIT 1
) = 'bootstrap';
