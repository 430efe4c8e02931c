-- Usage billed on the gateway's own figures. A request whose worker reported no usage (a stream
-- cut before its usage chunk by the client, a timeout, a worker crash or shutdown; an answer
-- without usage) is billed the gateway's prompt estimate and the token events it relayed. Each
-- row counts such requests, and how many of its prompt and completion tokens are those
-- estimates (parts of prompt_tokens and completion_tokens, not additions to them): measured =
-- total - estimated. Summed like every other counter.
ALTER TABLE usage_minutely ADD COLUMN estimated_requests BIGINT NOT NULL DEFAULT 0;
ALTER TABLE usage_minutely ADD COLUMN estimated_prompt_tokens BIGINT NOT NULL DEFAULT 0;
ALTER TABLE usage_minutely ADD COLUMN estimated_completion_tokens BIGINT NOT NULL DEFAULT 0;
