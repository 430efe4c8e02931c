-- Limits of narrower scopes than the tenant: each API key's own, and each tenant × model pair's
-- (the twin of migrations/postgres/20261129000001_key_and_model_limits.sql; see it for the
-- reasons). NULL means unlimited by this scope.
ALTER TABLE api_keys ADD COLUMN requests_per_minute INTEGER CHECK (requests_per_minute >= 0);
ALTER TABLE api_keys ADD COLUMN tokens_per_minute INTEGER CHECK (tokens_per_minute >= 0);
ALTER TABLE api_keys ADD COLUMN max_concurrency INTEGER CHECK (max_concurrency >= 0);
ALTER TABLE api_keys ADD COLUMN monthly_token_budget INTEGER CHECK (monthly_token_budget >= 0);

CREATE TABLE model_limits (
    tenant_id             INTEGER NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    model                 TEXT NOT NULL,
    requests_per_minute   INTEGER CHECK (requests_per_minute >= 0),
    tokens_per_minute     INTEGER CHECK (tokens_per_minute >= 0),
    max_concurrency       INTEGER CHECK (max_concurrency >= 0),
    monthly_token_budget  INTEGER CHECK (monthly_token_budget >= 0),
    PRIMARY KEY (tenant_id, model)
) STRICT;
