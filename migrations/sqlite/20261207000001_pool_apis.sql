-- The twin of migrations/postgres/20261207000001_pool_apis.sql (see it for the reasons): the
-- APIs a pool's workers speak, a JSON list of names; NULL or an empty list mean the default
-- (chat, completions, embeddings), so rows written before this column keep their meaning.
ALTER TABLE pools ADD COLUMN apis TEXT CHECK (apis IS NULL OR json_valid(apis));
