-- Sluice's state on the embedded SQLite store: the twin of postgres/20261127000001_initial.sql,
-- with the same tables, columns, constraints and names. Differences are SQLite's spelling only:
-- INTEGER PRIMARY KEY AUTOINCREMENT (ids are never reused, like BIGSERIAL), BLOB for bytes, TEXT
-- checked with json_valid for JSONB, INTEGER 0/1 for booleans. STRICT makes SQLite refuse values
-- of the wrong type instead of storing them as given.

CREATE TABLE tenants (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT NOT NULL UNIQUE,
    status      TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended')),
    priority    TEXT NOT NULL DEFAULT 'normal' CHECK (priority IN ('high', 'normal', 'low')),
    created_ms  INTEGER NOT NULL,
    updated_ms  INTEGER NOT NULL
) STRICT;

-- Only a display prefix and the SHA-256 of each key; the secret is never stored.
CREATE TABLE api_keys (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id   INTEGER NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name        TEXT,
    prefix      TEXT NOT NULL,
    sha256      BLOB NOT NULL UNIQUE CHECK (length(sha256) = 32),
    created_ms  INTEGER NOT NULL,
    revoked_ms  INTEGER
) STRICT;
CREATE INDEX api_keys_tenant ON api_keys (tenant_id);

-- NULL means unlimited.
CREATE TABLE tenant_limits (
    tenant_id             INTEGER PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    requests_per_minute   INTEGER CHECK (requests_per_minute >= 0),
    tokens_per_minute     INTEGER CHECK (tokens_per_minute >= 0),
    max_concurrency       INTEGER CHECK (max_concurrency >= 0),
    monthly_token_budget  INTEGER CHECK (monthly_token_budget >= 0),
    allowed_models        TEXT CHECK (allowed_models IS NULL OR json_valid(allowed_models))
) STRICT;

-- model '*' applies to every model without its own row.
CREATE TABLE slos (
    tenant_id          INTEGER NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    model              TEXT NOT NULL,
    ttft_p95_ms        INTEGER CHECK (ttft_p95_ms > 0),
    tpot_p95_ms        INTEGER CHECK (tpot_p95_ms > 0),
    target_attainment  REAL NOT NULL CHECK (target_attainment > 0 AND target_attainment <= 1),
    PRIMARY KEY (tenant_id, model)
) STRICT;

CREATE TABLE pools (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT NOT NULL UNIQUE,
    models      TEXT NOT NULL CHECK (json_valid(models)),
    created_ms  INTEGER NOT NULL
) STRICT;

CREATE TABLE endpoints (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    pool_id     INTEGER NOT NULL REFERENCES pools (id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    url         TEXT NOT NULL,
    flavor      TEXT NOT NULL DEFAULT 'vllm' CHECK (flavor IN ('vllm', 'sglang', 'trtllm', 'llama_cpp', 'openai')),
    weight      INTEGER NOT NULL DEFAULT 1 CHECK (weight >= 0),
    http2       INTEGER NOT NULL DEFAULT 0 CHECK (http2 IN (0, 1)),
    drained     INTEGER NOT NULL DEFAULT 0 CHECK (drained IN (0, 1)),
    created_ms  INTEGER NOT NULL,
    UNIQUE (pool_id, name)
) STRICT;

CREATE TABLE plugins (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    name            TEXT NOT NULL UNIQUE,
    active_version  INTEGER,
    created_ms      INTEGER NOT NULL
) STRICT;

CREATE TABLE plugin_versions (
    plugin_id   INTEGER NOT NULL REFERENCES plugins (id) ON DELETE CASCADE,
    version     INTEGER NOT NULL CHECK (version >= 1),
    sha256      TEXT NOT NULL,
    bytes       BLOB NOT NULL,
    manifest    TEXT NOT NULL CHECK (json_valid(manifest)),
    created_ms  INTEGER NOT NULL,
    PRIMARY KEY (plugin_id, version),
    UNIQUE (plugin_id, sha256)
) STRICT;
CREATE INDEX plugin_versions_sha256 ON plugin_versions (sha256);

-- scope_kind 'global' has scope_name NULL; 'tenant' and 'model' name their target.
CREATE TABLE plugin_bindings (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    plugin_id       INTEGER NOT NULL REFERENCES plugins (id) ON DELETE CASCADE,
    scope_kind      TEXT NOT NULL CHECK (scope_kind IN ('global', 'tenant', 'model')),
    scope_name      TEXT,
    ord             INTEGER NOT NULL DEFAULT 0,
    failure_policy  TEXT NOT NULL DEFAULT 'open' CHECK (failure_policy IN ('open', 'closed')),
    config          TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(config)),
    created_ms      INTEGER NOT NULL,
    CHECK ((scope_kind = 'global') = (scope_name IS NULL))
) STRICT;

-- One row per tenant, model and minute; replicas add their deltas into it. Tenant and model
-- are names, not foreign keys, so that usage outlives a deleted tenant or retired model.
CREATE TABLE usage_minutely (
    tenant             TEXT NOT NULL,
    model              TEXT NOT NULL,
    minute             INTEGER NOT NULL,
    requests           INTEGER NOT NULL DEFAULT 0,
    errors             INTEGER NOT NULL DEFAULT 0,
    prompt_tokens      INTEGER NOT NULL DEFAULT 0,
    cached_tokens      INTEGER NOT NULL DEFAULT 0,
    completion_tokens  INTEGER NOT NULL DEFAULT 0,
    slo_met            INTEGER NOT NULL DEFAULT 0,
    ttft_count         INTEGER NOT NULL DEFAULT 0,
    ttft_sum_ms        INTEGER NOT NULL DEFAULT 0,
    ttft_max_ms        INTEGER NOT NULL DEFAULT 0,
    tpot_count         INTEGER NOT NULL DEFAULT 0,
    tpot_sum_us        INTEGER NOT NULL DEFAULT 0,
    tpot_max_us        INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (minute, tenant, model)
) STRICT;
CREATE INDEX usage_minutely_tenant ON usage_minutely (tenant, minute);

CREATE TABLE audit_log (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms   INTEGER NOT NULL,
    actor   TEXT NOT NULL,
    action  TEXT NOT NULL,
    target  TEXT NOT NULL,
    detail  TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(detail))
) STRICT;

-- A single row counting mutations; replicas compare it with the version of their snapshot.
CREATE TABLE change_version (
    id       INTEGER PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    version  INTEGER NOT NULL
) STRICT;
INSERT INTO change_version (id, version) VALUES (1, 1);
