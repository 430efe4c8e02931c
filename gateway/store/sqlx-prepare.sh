#!/usr/bin/env bash
# Regenerates the sqlx query caches (gateway/store/postgres/.sqlx, gateway/store/sqlite/.sqlx)
# against freshly migrated databases. Run after changing a query or a migration, and commit
# the result; CI's sqlx-check.sh fails until you do.
exec "$(dirname "$0")/sqlx-check.sh" --write
