-- Usage billed on the gateway's own figures (the twin of
-- migrations/postgres/20261206000001_usage_estimated.sql; see it for the reasons): requests
-- whose worker reported no usage, and the parts of prompt_tokens and completion_tokens that
-- are the gateway's estimates.
ALTER TABLE usage_minutely ADD COLUMN estimated_requests INTEGER NOT NULL DEFAULT 0;
ALTER TABLE usage_minutely ADD COLUMN estimated_prompt_tokens INTEGER NOT NULL DEFAULT 0;
ALTER TABLE usage_minutely ADD COLUMN estimated_completion_tokens INTEGER NOT NULL DEFAULT 0;
