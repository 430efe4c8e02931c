#!/usr/bin/env python3
"""Writes dashboards/sluice.json. Edit the panels here, run `python3 generate_dashboard.py`,
commit both. deploy/validate.py checks every metric a query reads against a running gateway's
and worker's /metrics, and that every gateway family there is on the dashboard."""

import json
from pathlib import Path

SEL = 'tenant=~"$tenant", model=~"$model"'
RATE = "$__rate_interval"
DS = {"type": "prometheus", "uid": "${datasource}"}

panels = []
_next_id = 1


def _id():
    global _next_id
    _next_id += 1
    return _next_id - 1


def row(title, y):
    panels.append({"type": "row", "id": _id(), "title": title, "collapsed": False,
                   "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []})


def timeseries(title, targets, x, y, w=12, h=8, unit="short", description="", stack=False, min0=True):
    defaults = {"unit": unit, "custom": {"lineWidth": 1, "fillOpacity": 10 if not stack else 40,
                                         "stacking": {"mode": "normal" if stack else "none"}}}
    if min0:
        defaults["min"] = 0
    panels.append({
        "type": "timeseries", "id": _id(), "title": title, "description": description, "datasource": DS,
        "gridPos": {"h": h, "w": w, "x": x, "y": y},
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {"legend": {"displayMode": "table", "placement": "bottom", "calcs": ["mean", "max"]},
                    "tooltip": {"mode": "multi", "sort": "desc"}},
        "targets": [{"datasource": DS, "refId": chr(ord("A") + i), "expr": expr, "legendFormat": legend}
                    for i, (expr, legend) in enumerate(targets)],
    })


def stat(title, expr, x, y, w=6, h=4, unit="short", description="", thresholds=None):
    steps = thresholds or [{"color": "green", "value": None}]
    panels.append({
        "type": "stat", "id": _id(), "title": title, "description": description, "datasource": DS,
        "gridPos": {"h": h, "w": w, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": unit, "thresholds": {"mode": "absolute", "steps": steps}},
                        "overrides": []},
        "options": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                    "colorMode": "value", "graphMode": "area", "textMode": "auto"},
        "targets": [{"datasource": DS, "refId": "A", "expr": expr, "legendFormat": title}],
    })


def quantiles(metric, by, qs, sel=SEL):
    return [(f"histogram_quantile({q}, sum by ({by}, le) (rate({metric}_bucket{{{sel}}}[{RATE}])))",
             f"{{{{{by}}}}} p{int(q * 100)}") for q in qs]


FAIL = 'outcome=~"upstream_error|upstream_timeout|unavailable|internal_error"'

# --- Overview -------------------------------------------------------------------------------
y = 0
row("Overview", y)
y += 1
stat("Requests/s", f"sum(rate(sluice_requests_total{{{SEL}}}[{RATE}]))", 0, y, unit="reqps")
stat("Error ratio", f"sum(rate(sluice_requests_total{{{SEL}, {FAIL}}}[{RATE}])) / "
     f"sum(rate(sluice_requests_total{{{SEL}}}[{RATE}]))", 6, y, unit="percentunit",
     description="Upstream errors, timeouts, no available worker and internal errors, over all requests.",
     thresholds=[{"color": "green", "value": None}, {"color": "orange", "value": 0.01},
                 {"color": "red", "value": 0.05}])
stat("TTFT p95", f"histogram_quantile(0.95, sum by (le) (rate(gen_ai_server_time_to_first_token_seconds_bucket"
     f"{{{SEL}}}[{RATE}])))", 12, y, unit="s",
     thresholds=[{"color": "green", "value": None}, {"color": "orange", "value": 1},
                 {"color": "red", "value": 2}])
stat("Requests in flight", "sum(sluice_requests_in_flight)", 18, y)
y += 4

# --- Traffic --------------------------------------------------------------------------------
row("Traffic", y)
y += 1
timeseries("Requests/s by outcome",
           [(f"sum by (outcome) (rate(sluice_requests_total{{{SEL}}}[{RATE}]))", "{{outcome}}")],
           0, y, unit="reqps", stack=True)
timeseries("Tokens/s by type",
           [(f"sum by (type) (rate(sluice_tokens_total{{{SEL}}}[{RATE}]))", "{{type}}")],
           12, y, unit="short", description="prompt, cached (prompt tokens served from the prefix cache), completion.")
y += 8
timeseries("Requests/s by tenant",
           [(f"sum by (tenant) (rate(sluice_requests_total{{{SEL}}}[{RATE}]))", "{{tenant}}")],
           0, y, unit="reqps")
timeseries("Requests/s by model",
           [(f"sum by (model) (rate(sluice_requests_total{{{SEL}}}[{RATE}]))", "{{model}}")],
           12, y, unit="reqps")
y += 8
timeseries("Requests/s billed on estimated usage",
           [(f"sum by (outcome) (rate(sluice_usage_estimated_requests_total[{RATE}]))", "{{outcome}}")],
           0, y, unit="reqps",
           description="Requests whose worker reported no usage (streams cut short by the client, a worker failure, "
                       "a timeout or shutdown): billed the gateway's prompt estimate and the token events relayed.")
timeseries("Requests/s by API",
           [(f"sum by (api) (rate(sluice_api_requests_total[{RATE}]))", "{{api}}")],
           12, y, unit="reqps", stack=True,
           description="chat, completions, embeddings, responses (OpenAI's Responses API), messages (Anthropic's "
                       "Messages API). Not filtered by tenant or model: the API is a label of its own family.")
y += 8

# --- Latency --------------------------------------------------------------------------------
row("Latency (by model)", y)
y += 1
timeseries("Time to first token p50 / p95 / p99",
           quantiles("gen_ai_server_time_to_first_token_seconds", "model", [0.5, 0.95, 0.99]), 0, y, w=8, unit="s",
           description="From receiving a streamed request to relaying its first generated token.")
timeseries("Time per output token p50 / p95 / p99",
           quantiles("gen_ai_server_time_per_output_token_seconds", "model", [0.5, 0.95, 0.99]), 8, y, w=8,
           unit="s", description="(e2e - TTFT) / (output tokens - 1).")
timeseries("End-to-end duration p50 / p95 / p99",
           quantiles("gen_ai_server_request_duration_seconds", "model", [0.5, 0.95, 0.99]), 16, y, w=8, unit="s")
y += 8
timeseries("Gateway overhead p50 / p99",
           [(f"histogram_quantile({q}, sum by (le) (rate(sluice_gateway_overhead_seconds_bucket[{RATE}])))",
             f"p{int(q * 100)}") for q in (0.5, 0.99)],
           0, y, unit="s",
           description="Time spent inside the gateway per request, excluding waits on the upstream and the client.")
timeseries("Tokens per request p50 / p95 (input, output)",
           [(f"histogram_quantile({q}, sum by (gen_ai_token_type, le) (rate(gen_ai_client_token_usage_bucket"
             f"{{model=~\"$model\"}}[{RATE}])))", f"{{{{gen_ai_token_type}}}} p{int(q * 100)}") for q in (0.5, 0.95)],
           12, y, unit="short")
y += 8

# --- Upstreams ------------------------------------------------------------------------------
row("Upstream endpoints", y)
y += 1
timeseries("In flight per endpoint",
           [("sum by (pool, endpoint) (sluice_endpoint_in_flight)", "{{pool}} / {{endpoint}}")],
           0, y, unit="short")
timeseries("Endpoint health (replicas reporting healthy)",
           [("sum by (pool, endpoint) (sluice_endpoint_healthy)", "{{pool}} / {{endpoint}}")],
           12, y, unit="short",
           description="1 per gateway replica that sees the endpoint passing health checks and not ejected.")
y += 8
timeseries("Upstream errors/s by kind",
           [(f"sum by (pool, endpoint, kind) (rate(sluice_upstream_errors_total[{RATE}]))",
             "{{pool}} / {{endpoint}} {{kind}}")],
           0, y, w=8, unit="short")
timeseries("Retries/s by pool",
           [(f"sum by (pool) (rate(sluice_upstream_retries_total[{RATE}]))", "{{pool}}")],
           8, y, w=8, unit="short", description="Attempts retried on another endpoint before the first byte.")
timeseries("Ejections",
           [(f"sum by (pool, endpoint) (increase(sluice_endpoint_ejections_total[{RATE}]))",
             "{{pool}} / {{endpoint}}")],
           16, y, w=8, unit="short")
y += 8
timeseries("Prompt blocks routed to an endpoint holding them",
           [(f"sum by (pool) (rate(sluice_prefix_routed_blocks_total{{held=\"yes\"}}[{RATE}])) / "
             f"sum by (pool) (rate(sluice_prefix_routed_blocks_total[{RATE}]))", "{{pool}}")],
           0, y, unit="percentunit",
           description="Of the prompt blocks routed by plugins, the share the chosen endpoint was believed to "
                       "hold (the host's prefix index): the prefix reuse routing achieved.")
timeseries("Prefix index blocks",
           [("max by (pool) (sluice_prefix_index_blocks)", "{{pool}}")],
           12, y, unit="short",
           description="Prompt blocks each pool's prefix index remembers (bounded by prefix_index.max_blocks).")
y += 8
timeseries("Responses follow-ups/s",
           [(f"sum by (result) (rate(sluice_response_followups_total[{RATE}]))", "{{result}}"),
            (f"sum(rate(sluice_response_affinity_backend_errors_total[{RATE}]))", "Redis errors")],
           0, y, unit="short",
           description="Responses API requests with a previous_response_id: pinned to the worker holding it, "
                       "not_found (no replica recorded it for the tenant) or unavailable (its worker left the pool "
                       "or is unhealthy); both route as usual. Redis errors: failed reads and writes of the records.")
timeseries("Engine metrics reads failing/s",
           [(f"sum by (pool, endpoint) (rate(sluice_engine_scrapes_total{{outcome!=\"ok\"}}[{RATE}]))",
             "{{pool}} / {{endpoint}}")],
           12, y, unit="short",
           description="Failed reads of each endpoint's engine metrics page (queue, KV cache, prefix cache): "
                       "while they fail, route plugins lose those figures once engine_metrics.max_age passes.")
y += 8
timeseries("Desired workers by pool",
           [("max by (pool) (sluice_pool_desired_replicas)", "desired {{pool}}"),
            ("max by (pool) (sluice_pool_load_input{input=\"available_endpoints\"})", "serving {{pool}}")],
           0, y, unit="short",
           description="What an HPA or KEDA scaling the workers on sluice_pool_desired_replicas asks for, beside the "
                       "endpoints serving now (the largest over the gateway's replicas).")
timeseries("Pool load ratio and its inputs",
           [("max by (pool) (sluice_pool_load_ratio)", "ratio {{pool}}"),
            ("max by (pool, input) (sluice_pool_load_input{input!=\"available_endpoints\"})", "{{input}} {{pool}}")],
           12, y, unit="short",
           description="1 where the pool should be: the largest of the engines' KV usage over 0.8 and the p95 of "
                       "TTFT and TPOT over their SLO targets.")
y += 8

# --- Client connections (the listeners' budgets) ----------------------------------------------
row("Client connections", y)
y += 1
timeseries("Open connections by listener",
           [("sum by (listener) (sluice_connections_open)", "{{listener}}")],
           0, y, w=8, unit="short",
           description="Client connections open on the data and admin listeners; each has its own cap "
                       "([server] max_connections, admin_max_connections).")
timeseries("Connections refused/s",
           [(f"sum by (listener, reason) (rate(sluice_connections_refused_total[{RATE}]))",
             "{{listener}} {{reason}}")],
           8, y, w=8, unit="short",
           description="Closed right after accept: the global or per-address cap was reached.")
timeseries("Streams cut for unread data/s",
           [(f"sum(rate(sluice_client_write_timeouts_total[{RATE}]))", "cut")],
           16, y, w=8, unit="short",
           description="Streamed responses whose client left them unread longer than [server] write_timeout; "
                       "the worker request was cancelled and its slot released.")
y += 8
timeseries("Unparseable requests/s",
           [(f"sum by (listener, status) (rate(sluice_http_protocol_errors_total[{RATE}]))",
             "{{listener}} {{status}}")],
           0, y, w=8, unit="short",
           description="Requests that could not be parsed as HTTP/1.1 (431 header section too large, 414 URI "
                       "too long, 400 malformed or conflicting framing), answered before any handler ran.")
y += 8

# --- Admission: rate limits and saturated pools ----------------------------------------------
row("Admission (rate limits, saturated pools)", y)
y += 1
timeseries("Rate-limited requests/s by tenant",
           [(f'sum by (tenant) (rate(sluice_requests_total{{outcome="rate_limited", tenant=~"$tenant"}}[{RATE}]))',
             "{{tenant}}")],
           0, y, w=8, unit="reqps", description="429s answered by the rate limiter (docs/rate-limits.md).")
timeseries("Rate-limit decisions/s by outcome",
           [(f"sum by (outcome) (rate(sluice_limits_decisions_total[{RATE}]))", "{{outcome}}")],
           8, y, w=8, unit="short", description="granted, refused, or unavailable (Redis away, failing closed).")
timeseries("Shared limits backend (Redis)",
           [("max(sluice_limits_backend_degraded)", "degraded"),
            (f"sum(rate(sluice_limits_fallbacks_total[{RATE}]))", "fallback decisions/s"),
            (f"sum(rate(sluice_limits_backend_errors_total[{RATE}]))", "errors/s"),
            (f"histogram_quantile(0.99, sum by (le) (rate(sluice_limits_backend_duration_seconds_bucket[{RATE}])))",
             "round trip p99 (s)")],
           16, y, w=8, unit="short",
           description="degraded is 1 while Redis is unreachable and decisions use the [redis] on_unavailable "
                       "fallback; errors are failed or timed-out calls.")
y += 8
timeseries("Remaining quota per tenant",
           [('min by (tenant, kind) (sluice_limits_remaining{tenant=~"$tenant"})', "{{tenant}} {{kind}}")],
           0, y, w=6, unit="short",
           description="What each tenant's last limited answer had left (x-ratelimit-remaining-requests / -tokens).")
timeseries("Queued requests per pool and tenant",
           [('sum by (pool, tenant) (sluice_pool_queue_depth{tenant=~"$tenant"})', "{{pool}} / {{tenant}}")],
           6, y, w=6, unit="short", description="Requests waiting for a slot in saturated pools (max_in_flight).")
timeseries("Queue wait",
           quantiles("sluice_pool_queue_wait_seconds", "pool", [0.5, 0.99], sel=""),
           12, y, w=6, unit="s", description="Of the requests that were queued and then admitted.")
timeseries("Queue rejections/s",
           [(f"sum by (pool, tenant, reason) (rate(sluice_pool_queue_rejections_total[{RATE}]))",
             "{{pool}} / {{tenant}} {{reason}}")],
           18, y, w=6, unit="short", description="503 pool_saturated: queue_timeout passed or the queue was full.")
y += 8

# --- Plugins (the policy chain: built-in router and ratelimit, and yours) ------------------------
row("Plugins", y)
y += 1
timeseries("Hook calls/s by plugin",
           [(f"sum by (plugin, hook) (rate(sluice_plugin_calls_total[{RATE}]))", "{{plugin}} {{hook}}")],
           0, y, w=6, unit="short")
timeseries("Hook duration p99",
           [(f"histogram_quantile(0.99, sum by (plugin, hook, le) (rate(sluice_plugin_duration_seconds_bucket"
             f"[{RATE}])))", "{{plugin}} {{hook}}")],
           6, y, w=6, unit="s", description="Time in a hook call, instantiation included.")
timeseries("Plugin failures and circuit breakers",
           [(f"sum by (plugin, kind) (rate(sluice_plugin_errors_total[{RATE}]))", "{{plugin}} {{kind}}/s"),
            (f"sum by (plugin) (rate(sluice_plugin_short_circuits_total[{RATE}]))", "{{plugin}} skipped/s"),
            ("max by (plugin, binding) (sluice_plugin_breaker_state)", "{{plugin}} breaker ({{binding}})"),
            (f"sum by (plugin, state) (increase(sluice_plugin_breaker_transitions_total[{RATE}]))",
             "{{plugin}} to {{state}}")],
           12, y, w=6, unit="short",
           description="Failures by kind (trap, timeout, limit, instantiate, ...); calls skipped while a breaker "
                       "is open; each binding's breaker: 0 closed, 1 half-open, 2 open; its state changes.")
timeseries("Plugin counters and instances",
           [(f"sum by (plugin, name, label) (rate(sluice_plugin_custom_total[{RATE}]))",
             "{{plugin}} {{name}} {{label}}/s"),
            (f"sum by (plugin) (rate(sluice_plugin_instantiations_total[{RATE}]))", "{{plugin}} instances/s")],
           18, y, w=6, unit="short",
           description="What plugins count through the metrics capability (the built-in ratelimit: refusals by "
                       "limit); plugin instances created.")
y += 8

# --- Response cache (the `cache` plugin's policy, the host's entries) ---------------------------
row("Response cache", y)
y += 1
timeseries("Cache results/s",
           [(f"sum by (result) (rate(sluice_cache_requests_total{{{SEL}}}[{RATE}]))", "{{result}}"),
            (f"sum by (reason) (rate(sluice_cache_bypasses_total[{RATE}]))", "bypass: {{reason}}")],
           0, y, w=6, unit="reqps", stack=True,
           description="hit / semantic-hit / miss / bypass for requests the cache plugin ran for; why bypassed.")
timeseries("Saved by the cache",
           [(f"sum by (kind) (rate(sluice_cache_saved_tokens_total{{{SEL}}}[{RATE}]))", "{{kind}} tokens/s"),
            (f"sum(rate(sluice_cache_saved_gpu_seconds_total{{{SEL}}}[{RATE}]))", "worker seconds/s")],
           6, y, w=6, unit="short", description="Tokens answered from the cache, and the worker time the hits' "
                                                "original requests took.")
timeseries("Stores and evictions/s",
           [(f"sum by (result) (rate(sluice_cache_stores_total[{RATE}]))", "store: {{result}}"),
            (f"sum by (cause) (rate(sluice_cache_evictions_total[{RATE}]))", "evicted: {{cause}}")],
           12, y, w=6, unit="short", description="Answers offered after a miss; entries the in-process backend "
                                                 "removed (Redis expires its own).")
timeseries("In-process entries, bytes and lookup p99",
           [("sum(sluice_cache_entries)", "entries"), ("sum(sluice_cache_bytes)", "bytes"),
            (f"histogram_quantile(0.99, sum by (le) (rate(sluice_cache_lookup_seconds_bucket[{RATE}])))",
             "lookup p99 (s)")],
           18, y, w=6, unit="short")
y += 8

# --- Admin authentication (guessing the admin token) -------------------------------------------
row("Admin authentication", y)
y += 1
timeseries("Admin auth refusals/s by reason",
           [(f"sum by (reason) (rate(sluice_admin_auth_refusals_total[{RATE}]))", "{{reason}}")],
           0, y, w=12, unit="short",
           description="Admin API and live-stream requests refused for their credentials. wrong_token counts "
                       "toward the sender's lockout ([admin] max_failures); locked_out is 429s to a locked-out "
                       "address; a sustained wrong_token rate is someone guessing (addresses are in the log).")
y += 8

# --- Workers (engine metrics, vLLM dialect; sluice-sim speaks it too) -------------------------
row("Workers (vLLM metrics, scraped from the workers)", y)
y += 1
timeseries("Running / waiting sequences",
           [("sum by (instance) (vllm:num_requests_running)", "{{instance}} running"),
            ("sum by (instance) (vllm:num_requests_waiting)", "{{instance}} waiting")],
           0, y, w=8, unit="short")
timeseries("KV cache usage", [("max by (instance) (vllm:kv_cache_usage_perc)", "{{instance}}")],
           8, y, w=8, unit="percentunit")
timeseries("Prefix cache hit ratio",
           [(f"sum by (instance) (rate(vllm:prefix_cache_hits_total[{RATE}])) / "
             f"sum by (instance) (rate(vllm:prefix_cache_queries_total[{RATE}]))", "{{instance}}")],
           16, y, w=8, unit="percentunit")


def variable(name, label, query):
    return {"name": name, "label": label, "type": "query", "datasource": DS,
            "query": {"query": query, "refId": f"{name}-var"}, "definition": query,
            "includeAll": True, "multi": True, "allValue": ".*",
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]}, "refresh": 2, "sort": 1}


dashboard = {
    "uid": "sluice-overview",
    "title": "Sluice",
    "description": "Sluice AI gateway: traffic, tokens, latency (TTFT/TPOT/e2e), gateway overhead, upstream "
                   "health, admission (rate limits, queues), plugins, workers.",
    "tags": ["sluice", "llm", "gateway"],
    "timezone": "browser",
    "editable": True,
    "graphTooltip": 1,
    "refresh": "10s",
    "time": {"from": "now-30m", "to": "now"},
    "schemaVersion": 39,
    "version": 1,
    "templating": {"list": [
        {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus",
         "current": {"selected": True, "text": "Prometheus", "value": "prometheus"}, "hide": 0},
        variable("model", "Model", "label_values(sluice_requests_total, model)"),
        variable("tenant", "Tenant", "label_values(sluice_requests_total, tenant)"),
    ]},
    "annotations": {"list": []},
    "panels": panels,
}

out = Path(__file__).with_name("dashboards") / "sluice.json"
out.write_text(json.dumps(dashboard, indent=2) + "\n")
print(f"wrote {out} ({len(panels)} panels)")
