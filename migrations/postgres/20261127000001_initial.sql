-- Sluice's state, first cut. Timestamps are unix milliseconds (BIGINT) so that the PostgreSQL
-- and SQLite schemas stay alike and the admin API renders them one way (RFC 3339).

CREATE TABLE tenants (
    id          BIGSERIAL PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    status      TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended')),
    priority    TEXT NOT NULL DEFAULT 'normal' CHECK (priority IN ('high', 'normal', 'low')),
    created_ms  BIGINT NOT NULL,
    updated_ms  BIGINT NOT NULL
);

-- Only a display prefix and the SHA-256 of each key; the secret is never stored.
CREATE TABLE api_keys (
    id          BIGSERIAL PRIMARY KEY,
    tenant_id   BIGINT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name        TEXT,
    prefix      TEXT NOT NULL,
    sha256      BYTEA NOT NULL UNIQUE CHECK (length(sha256) = 32),
    created_ms  BIGINT NOT NULL,
    revoked_ms  BIGINT
);
CREATE INDEX api_keys_tenant ON api_keys (tenant_id);

-- NULL means unlimited.
CREATE TABLE tenant_limits (
    tenant_id             BIGINT PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    requests_per_minute   BIGINT CHECK (requests_per_minute >= 0),
    tokens_per_minute     BIGINT CHECK (tokens_per_minute >= 0),
    max_concurrency       BIGINT CHECK (max_concurrency >= 0),
    monthly_token_budget  BIGINT CHECK (monthly_token_budget >= 0),
    allowed_models        JSONB
);

-- model '*' applies to every model without its own row.
CREATE TABLE slos (
    tenant_id          BIGINT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    model              TEXT NOT NULL,
    ttft_p95_ms        INTEGER CHECK (ttft_p95_ms > 0),
    tpot_p95_ms        INTEGER CHECK (tpot_p95_ms > 0),
    target_attainment  DOUBLE PRECISION NOT NULL CHECK (target_attainment > 0 AND target_attainment <= 1),
    PRIMARY KEY (tenant_id, model)
);

CREATE TABLE pools (
    id          BIGSERIAL PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    models      JSONB NOT NULL,
    created_ms  BIGINT NOT NULL
);

CREATE TABLE endpoints (
    id          BIGSERIAL PRIMARY KEY,
    pool_id     BIGINT NOT NULL REFERENCES pools (id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    url         TEXT NOT NULL,
    flavor      TEXT NOT NULL DEFAULT 'vllm' CHECK (flavor IN ('vllm', 'sglang', 'trtllm', 'llama_cpp', 'openai')),
    weight      INTEGER NOT NULL DEFAULT 1 CHECK (weight >= 0),
    http2       BOOLEAN NOT NULL DEFAULT FALSE,
    drained     BOOLEAN NOT NULL DEFAULT FALSE,
    created_ms  BIGINT NOT NULL,
    UNIQUE (pool_id, name)
);

CREATE TABLE plugins (
    id              BIGSERIAL PRIMARY KEY,
    name            TEXT NOT NULL UNIQUE,
    active_version  INTEGER,
    created_ms      BIGINT NOT NULL
);

CREATE TABLE plugin_versions (
    plugin_id   BIGINT NOT NULL REFERENCES plugins (id) ON DELETE CASCADE,
    version     INTEGER NOT NULL CHECK (version >= 1),
    sha256      TEXT NOT NULL,
    bytes       BYTEA NOT NULL,
    manifest    JSONB NOT NULL,
    created_ms  BIGINT NOT NULL,
    PRIMARY KEY (plugin_id, version),
    UNIQUE (plugin_id, sha256)
);
CREATE INDEX plugin_versions_sha256 ON plugin_versions (sha256);

-- scope_kind 'global' has scope_name NULL; 'tenant' and 'model' name their target.
CREATE TABLE plugin_bindings (
    id              BIGSERIAL PRIMARY KEY,
    plugin_id       BIGINT NOT NULL REFERENCES plugins (id) ON DELETE CASCADE,
    scope_kind      TEXT NOT NULL CHECK (scope_kind IN ('global', 'tenant', 'model')),
    scope_name      TEXT,
    ord             INTEGER NOT NULL DEFAULT 0,
    failure_policy  TEXT NOT NULL DEFAULT 'open' CHECK (failure_policy IN ('open', 'closed')),
    config          JSONB NOT NULL DEFAULT '{}'::jsonb,
    created_ms      BIGINT NOT NULL,
    CHECK ((scope_kind = 'global') = (scope_name IS NULL))
);

-- One row per tenant, model and minute; replicas add their deltas into it. Tenant and model
-- are names, not foreign keys, so that usage outlives a deleted tenant or retired model.
CREATE TABLE usage_minutely (
    tenant             TEXT NOT NULL,
    model              TEXT NOT NULL,
    minute             BIGINT NOT NULL,
    requests           BIGINT NOT NULL DEFAULT 0,
    errors             BIGINT NOT NULL DEFAULT 0,
    prompt_tokens      BIGINT NOT NULL DEFAULT 0,
    cached_tokens      BIGINT NOT NULL DEFAULT 0,
    completion_tokens  BIGINT NOT NULL DEFAULT 0,
    slo_met            BIGINT NOT NULL DEFAULT 0,
    ttft_count         BIGINT NOT NULL DEFAULT 0,
    ttft_sum_ms        BIGINT NOT NULL DEFAULT 0,
    ttft_max_ms        BIGINT NOT NULL DEFAULT 0,
    tpot_count         BIGINT NOT NULL DEFAULT 0,
    tpot_sum_us        BIGINT NOT NULL DEFAULT 0,
    tpot_max_us        BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (minute, tenant, model)
);
CREATE INDEX usage_minutely_tenant ON usage_minutely (tenant, minute);

CREATE TABLE audit_log (
    id      BIGSERIAL PRIMARY KEY,
    at_ms   BIGINT NOT NULL,
    actor   TEXT NOT NULL,
    action  TEXT NOT NULL,
    target  TEXT NOT NULL,
    detail  JSONB NOT NULL DEFAULT '{}'::jsonb
);

-- A single row counting mutations; replicas compare it with the version of their snapshot.
CREATE TABLE change_version (
    id       BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (id),
    version  BIGINT NOT NULL
);
INSERT INTO change_version (id, version) VALUES (TRUE, 1);
