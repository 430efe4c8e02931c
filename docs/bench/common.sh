# Shared by the scripts in docs/bench: sourced, not run.

# A free port on 127.0.0.1.
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Starts a zero-delay simulated worker serving `bench-model` on port $1, in the background.
start_sim() {
  "$bin/sluice-sim" --listen "127.0.0.1:$1" --model bench-model --zero-delay --output-tokens 16 >/dev/null 2>&1 &
}

# Writes wrk's script for the bench's non-streaming chat request to $1.
write_post_lua() {
  cat >"$1" <<'LUA'
wrk.method = "POST"
wrk.body = '{"model":"bench-model","messages":[{"role":"user","content":"Say something short about rivers."}],"max_tokens":16,"stream":false}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer sk-bench-0123456789"
LUA
}

# Prints a gateway config: data port $1, admin port $2, one pool of the worker on port $3, the
# bench tenant.
bench_config() {
  printf '[server]\nlisten = "127.0.0.1:%s"\nadmin_listen = "127.0.0.1:%s"\n' "$1" "$2"
  printf '[[pools]]\nname = "bench"\nmodels = ["bench-model"]\nendpoints = ["http://127.0.0.1:%s"]\n' "$3"
  printf '[[tenants]]\nname = "bench"\napi_keys = ["sk-bench-0123456789"]\n'
}

# Starts `sluice serve` with config file $1 and data directory $2 in the background, its pid in
# $gw_pid and its log in $1.log, and waits until its admin port $3 answers /readyz.
serve_and_wait() {
  "$bin/sluice" serve --config "$1" --data-dir "$2" >"$1.log" 2>&1 &
  gw_pid=$!
  for _ in $(seq 120); do curl -sf -o /dev/null "http://127.0.0.1:$3/readyz" && break; sleep 0.5; done
  curl -sf -o /dev/null "http://127.0.0.1:$3/readyz" || { cat "$1.log" >&2; exit 1; }
}
