-- Limits of narrower scopes than the tenant: each API key's own, and each tenant × model pair's.
-- The same four limits as tenant_limits, with the same meaning; NULL means unlimited (by this
-- scope: the tenant's limits still hold). The built-in ratelimit plugin falls back to its
-- binding's `per_key` / `per_model` config where these are NULL.
ALTER TABLE api_keys ADD COLUMN requests_per_minute BIGINT CHECK (requests_per_minute >= 0);
ALTER TABLE api_keys ADD COLUMN tokens_per_minute BIGINT CHECK (tokens_per_minute >= 0);
ALTER TABLE api_keys ADD COLUMN max_concurrency BIGINT CHECK (max_concurrency >= 0);
ALTER TABLE api_keys ADD COLUMN monthly_token_budget BIGINT CHECK (monthly_token_budget >= 0);

-- The model is the name requests ask for, not a reference: limits may be set before a pool
-- serves the model, and outlive the pool.
CREATE TABLE model_limits (
    tenant_id             BIGINT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    model                 TEXT NOT NULL,
    requests_per_minute   BIGINT CHECK (requests_per_minute >= 0),
    tokens_per_minute     BIGINT CHECK (tokens_per_minute >= 0),
    max_concurrency       BIGINT CHECK (max_concurrency >= 0),
    monthly_token_budget  BIGINT CHECK (monthly_token_budget >= 0),
    PRIMARY KEY (tenant_id, model)
);
