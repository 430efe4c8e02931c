#!/usr/bin/env bash
# Instructions the gateway executes per request, counted by callgrind: a figure that does not
# move with the shared VM's speed states or with whatever else the machine is doing, so two
# builds or two configurations can be compared within a percent where req/s swings ±30%.
# User space only (kernel time is not counted) and single-threaded timing is meaningless under
# valgrind: use it to compare code paths, `sluice bench` for throughput.
#
#   docs/bench/instructions.sh [APPEND.toml ...]     # default: the built-in router only
#   docs/bench/instructions.sh docs/bench/no-plugins.toml "" docs/bench/examples-chain.toml
#
# Each argument is a file appended to the bench config ("" = none), as `sluice bench
# --config-append` takes it. Needs valgrind and wrk (Debian packages) and release builds of
# `sluice` and `sluice-sim` in ${CARGO_TARGET_DIR:-target}/release. The gateway runs as its own
# process with a zero-delay worker behind it; wrk warms it up, callgrind's counters are zeroed,
# wrk sends 6 s of non-streaming requests on 4 connections, and the counters are dumped.
#
# Under valgrind the plugin engine cannot reserve 4 GiB per memory slot, so plugins run with
# explicit bounds checks (see docs/plugins.md, "The sandbox"): plugin figures here are a little
# higher than in production.
set -euo pipefail
cd "$(dirname "$0")/../.."
bin="${CARGO_TARGET_DIR:-target}/release"
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; [ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT
for tool in valgrind callgrind_control callgrind_annotate wrk; do
  command -v "$tool" >/dev/null || { echo "instructions.sh: $tool not found (apt-get install valgrind wrk)" >&2; exit 2; }
done

source docs/bench/common.sh
sim_port=$(port)
start_sim "$sim_port"
write_post_lua "$work/post.lua"

printf '%-40s %10s %14s\n' "config appended" "requests" "instr/request"
for append in "${@:-}"; do
  data=$(port) admin=$(port)
  {
    bench_config "$data" "$admin" "$sim_port"
    if [ -n "$append" ]; then cat "$append"; fi
  } >"$work/config.toml"
  out="$work/callgrind.out"
  rm -f "$out"*
  # A small plugin pool, so valgrind can map it.
  SLUICE__PLUGIN_HOST__MAX_INSTANCES=32 SLUICE__PLUGIN_HOST__CACHE_DIR="$work/cache" valgrind --tool=callgrind --smc-check=all-non-file --callgrind-out-file="$out" \
    "$bin/sluice" serve --config "$work/config.toml" --data-dir "$work/data" >"$work/gateway.log" 2>&1 &
  gateway=$!
  for _ in $(seq 120); do curl -sf -o /dev/null "http://127.0.0.1:$admin/readyz" && break; sleep 1; done
  url="http://127.0.0.1:$data/v1/chat/completions"
  # Long enough for plugins bound from config to be compiled off the request path first.
  wrk -t1 -c4 -d45s -s "$work/post.lua" "$url" >/dev/null
  callgrind_control -z "$gateway" >/dev/null 2>&1
  requests=$(wrk -t1 -c4 -d6s -s "$work/post.lua" "$url" | awk '/requests in/ {print $1}')
  callgrind_control -d "$gateway" >/dev/null 2>&1
  for _ in $(seq 40); do [ -s "$out.1" ] && break; sleep 0.5; done
  sleep 1
  total=$(callgrind_annotate "$out.1" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
  printf '%-40s %10s %14s\n' "${append:-(none: built-in router)}" "$requests" "$((total / requests))"
  kill -TERM "$gateway"; wait "$gateway" 2>/dev/null || true
done
