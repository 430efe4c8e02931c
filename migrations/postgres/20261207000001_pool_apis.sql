-- The APIs a pool's workers speak, stored so that pools made through the admin API (not only
-- the config file's `[[pools]] apis`) can declare /v1/responses and /v1/messages: a JSON list
-- of names from "chat", "completions", "embeddings", "responses", "messages". NULL, and an
-- empty list, mean the default (chat, completions, embeddings): every row written before this
-- column existed keeps meaning what it meant. The stores read it as the list it stands for;
-- the admin API never writes an empty one.
ALTER TABLE pools ADD COLUMN apis JSONB;
