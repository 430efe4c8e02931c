#!/usr/bin/env bash
# Checks that each store crate's committed sqlx query cache (.sqlx/) matches its SQL and the
# migrations: migrates a fresh PostgreSQL database and a fresh SQLite file, then runs
# `cargo sqlx prepare --check` in each crate against them. CI runs this; see README.md here.
#
#   gateway/store/sqlx-check.sh            check both caches
#   gateway/store/sqlx-check.sh --write    regenerate them instead (what sqlx-prepare.sh does)
#
# The PostgreSQL server is the one in SLUICE_PG_SERVER_URL (any database on it; default
# postgres://postgres@127.0.0.1:5432/test); the scratch database is dropped on exit.
set -euo pipefail

mode=check
case "${1:-}" in
  "") ;;
  --write) mode=write ;;
  *) echo "usage: $0 [--write]" >&2; exit 2 ;;
esac

store_dir="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$store_dir/../.." && pwd)"

# sqlx-cli 0.9.0 with exactly the features Sluice needs, installed once per machine.
sqlx_root=/var/tmp/sqlx-cli
if ! "$sqlx_root/bin/sqlx" --version 2>/dev/null | grep -q ' 0\.9\.0$'; then
  echo "== installing sqlx-cli 0.9.0 into $sqlx_root"
  cargo install sqlx-cli --version 0.9.0 --locked --no-default-features \
    --features postgres,sqlite,rustls,sqlx-toml --root "$sqlx_root"
fi
export PATH="$sqlx_root/bin:$PATH"

server="${SLUICE_PG_SERVER_URL:-postgres://postgres@127.0.0.1:5432/test}"
scratch="sluice_sqlx_${mode}_$$_$RANDOM"
pg_url="${server%%\?*}"
pg_url="${pg_url%/*}/$scratch"
tmp="$(mktemp -d)"
sqlite_url="sqlite://$tmp/sqlx-$mode.db"

cleanup() {
  sqlx database drop -y --database-url "$pg_url" >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT

# `cargo sqlx prepare` sets SQLX_OFFLINE=false for the build it runs, overriding
# .cargo/config.toml; each crate's sqlx.toml names the variable its macros read the URL from.
# `--all-targets`: the crates' tests use checked queries too, and without it a rewrite drops
# their entries from the cache (offline test builds then fail).
prepare() {
  local crate="$1" var="$2" url="$3"
  echo "== $crate: cargo sqlx prepare${check_flag:+ $check_flag} -- --all-targets"
  (cd "$store_dir/$crate" && env "$var=$url" cargo sqlx prepare $check_flag -- --all-targets)
}
check_flag=""
[ "$mode" = check ] && check_flag="--check"

echo "== PostgreSQL: fresh database $scratch"
sqlx database create --database-url "$pg_url"
sqlx migrate run --source "$root/migrations/postgres" --database-url "$pg_url"
prepare postgres SLUICE_PG_DATABASE_URL "$pg_url"

if ! compgen -G "$root/migrations/sqlite/*.sql" >/dev/null; then
  echo "== SQLite: skipped (no migrations in migrations/sqlite yet)"
elif [ "$mode" = check ] && [ ! -d "$store_dir/sqlite/.sqlx" ]; then
  echo "== SQLite: skipped (gateway/store/sqlite has no .sqlx query cache yet; run sqlx-prepare.sh)"
else
  echo "== SQLite: fresh file $sqlite_url"
  sqlx database create --database-url "$sqlite_url"
  sqlx migrate run --source "$root/migrations/sqlite" --database-url "$sqlite_url"
  prepare sqlite SLUICE_SQLITE_DATABASE_URL "$sqlite_url"
fi
echo "== sqlx query caches: ${mode} ok"
