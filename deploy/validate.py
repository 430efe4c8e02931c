#!/usr/bin/env python3
"""Offline checks of the deploy/ files (no Docker, no cluster, no network).

    python3 deploy/validate.py

Needs PyYAML. Uses, when installed (pip install kubernetes-validate promql-parser):
kubernetes-validate (the Kubernetes OpenAPI schemas, strict: unknown fields fail) and
promql-parser (every alert and panel query must parse). Missing optional tools are reported as
SKIP, never as a pass. Exit status 1 on any failure.

The TOML configs are checked by the real binary in the end-to-end tests
(`cargo test -p sluice-e2e`, check_config::deploy_configs_pass_check_config).
"""

import json
import re
import sys
import tomllib
from pathlib import Path

import yaml

DEPLOY = Path(__file__).resolve().parent
ROOT = DEPLOY.parent
K8S_VERSIONS = ["1.30.0", "1.37.0"]  # the oldest we support (preStop sleep) and the newest schema

failures = []
notes = []


def check(ok, message):
    if not ok:
        failures.append(message)
    return ok


def rel(p):
    return p.relative_to(ROOT)


# --- 1. Syntax ---------------------------------------------------------------------------------
docs = {}
for path in sorted(DEPLOY.rglob("*")):
    if path.suffix in (".yaml", ".yml"):
        try:
            docs[path] = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
        except yaml.YAMLError as e:
            check(False, f"{rel(path)}: invalid YAML: {e}")
    elif path.suffix == ".json":
        try:
            docs[path] = [json.loads(path.read_text())]
        except json.JSONDecodeError as e:
            check(False, f"{rel(path)}: invalid JSON: {e}")
    elif path.suffix == ".toml":
        try:
            docs[path] = [tomllib.loads(path.read_text())]
        except tomllib.TOMLDecodeError as e:
            check(False, f"{rel(path)}: invalid TOML: {e}")
notes.append(f"parsed {len(docs)} YAML/JSON/TOML files")

# --- 2. Metric names exist ---------------------------------------------------------------------
families = set(re.findall(r'"((?:sluice|gen_ai)_[a-z_]+)"', (ROOT / "gateway/metrics/src/families.rs").read_text()))
# The simulator's metric names, wherever under simulator/src they are spelled out.
vllm = {
    name
    for source in sorted((ROOT / "simulator/src").rglob("*.rs"))
    for name in re.findall(r'"(vllm:[a-z_:]+)"', source.read_text())
}
check(len(vllm) >= 5, f"found only {vllm} under simulator/src: did the metric names move?")
check(len(families) >= 10, f"found only {families} in families.rs: did the file move?")
# The plugin host registers its own families (plugins, rate limits); panels may show them.
plugin_host = set(re.findall(r'"((?:sluice)_[a-z_]+)"', (ROOT / "gateway/plugin-host/src/metrics.rs").read_text()))
known = families | plugin_host | vllm | {"up"}
METRIC = re.compile(r"\b((?:sluice|gen_ai)_[a-z_]+|vllm:[a-z_:]+|up)\b(?!\s*\()")


def metric_names(expr):
    names = set()
    for m in METRIC.findall(expr):
        for suffix in ("_bucket", "_sum", "_count"):
            if m.endswith(suffix) and m[: -len(suffix)] in known:
                m = m[: -len(suffix)]
        names.add(m)
    return names


try:
    import promql_parser
except ImportError:
    promql_parser = None
    notes.append("SKIP PromQL parsing: pip install promql-parser")


def check_expr(where, expr):
    for name in metric_names(expr):
        check(name in known, f"{where}: unknown metric {name!r} (not in families.rs or the vLLM names)")
    if promql_parser is not None:
        concrete = (expr.replace("$__rate_interval", "1m").replace("$model", ".*").replace("$tenant", ".*"))
        try:
            promql_parser.parse(concrete)
        except Exception as e:  # the binding raises plain exceptions
            check(False, f"{where}: PromQL does not parse: {e}\n    {expr}")


alerts = docs.get(DEPLOY / "prometheus/alerts.yml", [{}])[0]
n_alerts = 0
for group in alerts.get("groups", []):
    for rule in group.get("rules", []):
        n_alerts += 1
        name = rule.get("alert", "?")
        check(isinstance(rule.get("expr"), str), f"alerts.yml {name}: no expr")
        check(rule.get("labels", {}).get("severity") in ("critical", "warning", "info"), f"alerts.yml {name}: severity")
        check("summary" in rule.get("annotations", {}), f"alerts.yml {name}: no summary annotation")
        check_expr(f"alerts.yml {name}", rule.get("expr", ""))
required_alerts = {"SluiceHighErrorRatio", "SluiceTTFTHigh", "SluiceEndpointUnhealthy", "SluiceNoHealthyEndpoint",
                   "SluiceGatewayOverheadHigh"}
present = {r.get("alert") for g in alerts.get("groups", []) for r in g.get("rules", [])}
check(required_alerts <= present, f"alerts.yml lacks {required_alerts - present}")
notes.append(f"checked {n_alerts} alert rules")

dashboard = docs.get(DEPLOY / "grafana/dashboards/sluice.json", [{}])[0]
n_targets = 0
ids = set()
used = set()
for panel in dashboard.get("panels", []):
    check(panel.get("id") not in ids, f"dashboard: duplicate panel id {panel.get('id')}")
    ids.add(panel.get("id"))
    for target in panel.get("targets", []):
        n_targets += 1
        check_expr(f"dashboard panel {panel.get('title')!r}", target["expr"])
        used |= metric_names(target["expr"])
missing = {f for f in families} - used
check(not missing, f"dashboard: metric families not shown anywhere: {sorted(missing)}")
for var in dashboard.get("templating", {}).get("list", []):
    if var.get("type") == "query":
        check_expr(f"dashboard variable {var['name']}", var["query"]["query"].replace("label_values(", "group(").split(",")[0] + ")")
notes.append(f"checked {n_targets} dashboard queries; every families.rs family appears in the dashboard")

# --- 3. Compose --------------------------------------------------------------------------------
compose = docs.get(DEPLOY / "compose.yaml", [{}])[0]
services = compose.get("services", {})
check({"sluice", "worker-1", "worker-2", "prometheus", "grafana"} <= set(services), "compose: missing services")
for name, svc in services.items():
    for vol in svc.get("volumes", []):
        src = vol.split(":")[0]
        if src.startswith("."):
            check((DEPLOY / src).exists(), f"compose {name}: volume source {src} does not exist")
    for dep in svc.get("depends_on", []):
        check(dep in services, f"compose {name}: depends on unknown service {dep}")
    build = svc.get("build")
    if build:
        check((DEPLOY / build["context"] / build["dockerfile"]).is_file(), f"compose {name}: no Dockerfile")
compose_toml = docs.get(DEPLOY / "sluice.compose.toml", [{}])[0]
urls = [e["url"] if isinstance(e, dict) else e for p in compose_toml.get("pools", []) for e in p["endpoints"]]
for url in urls:
    host = re.match(r"https?://([^:/]+)", url).group(1)
    check(host in services, f"sluice.compose.toml: endpoint host {host} is not a compose service")
prom = docs.get(DEPLOY / "prometheus/prometheus.yml", [{}])[0]
for job in prom.get("scrape_configs", []):
    for sc in job.get("static_configs", []):
        for t in sc.get("targets", []):
            host = t.split(":")[0]
            check(host in services or host == "localhost", f"prometheus.yml: target {t} is not a compose service")
grace = services.get("sluice", {}).get("stop_grace_period", "0s")
check(int(grace.rstrip("s")) > int(compose_toml["server"]["shutdown_grace"].rstrip("s")),
      "compose: stop_grace_period must exceed server.shutdown_grace")
notes.append("compose: services, volume paths, endpoints and scrape targets agree")

# --- 4. Kubernetes -----------------------------------------------------------------------------
k8s = DEPLOY / "k8s"
kust = docs[k8s / "kustomization.yaml"][0]
resources = {}
for res in kust["resources"]:
    check((k8s / res).is_file(), f"kustomization: resource {res} does not exist")
    for d in docs.get(k8s / res, []):
        resources[(d["kind"], d["metadata"]["name"])] = d
for gen in kust.get("configMapGenerator", []):
    for f in gen["files"]:
        check((k8s / f).is_file(), f"kustomization: generator file {f} does not exist")
    data = {Path(f).name: (k8s / f).read_text() for f in gen["files"]}
    resources[("ConfigMap", gen["name"])] = {"apiVersion": "v1", "kind": "ConfigMap",
                                            "metadata": {"name": gen["name"], "namespace": kust["namespace"]},
                                            "data": data}
commented = re.findall(r"^\s*#\s*-\s*(\S+\.yaml)", (k8s / "kustomization.yaml").read_text(), re.M)
all_manifests = [d for f in sorted(k8s.glob("*.yaml")) if f.name != "kustomization.yaml" for d in docs.get(f, [])]
for d in all_manifests:
    for key in ("apiVersion", "kind", "metadata"):
        check(key in d, f"k8s {d.get('kind')}: missing {key}")

try:
    import kubernetes_validate
except ImportError:
    kubernetes_validate = None
    notes.append("SKIP Kubernetes schema validation: pip install kubernetes-validate")
if kubernetes_validate is not None:
    n = 0
    for d in list(resources.values()):
        for version in K8S_VERSIONS:
            try:
                kubernetes_validate.validate(d, version, strict=True)
                n += 1
            except Exception as e:
                check(False, f"k8s {d['kind']}/{d['metadata']['name']} against {version}: {str(e).splitlines()[0]}")
    notes.append(f"kubernetes-validate (strict) passed {n} manifest/version pairs for {', '.join(K8S_VERSIONS)}; "
                 f"not schema-checked (CRD): {', '.join(commented) or 'none'}")

deploy = resources[("Deployment", "sluice")]
pod = deploy["spec"]["template"]["spec"]
pod_labels = deploy["spec"]["template"]["metadata"]["labels"]
c = pod["containers"][0]
ports = {p["name"]: p["containerPort"] for p in c["ports"]}
cfg = tomllib.loads((k8s / "sluice.toml").read_text())
check(ports.get("http") == int(cfg["server"]["listen"].rsplit(":", 1)[1]), "k8s: container port http != server.listen")
check(ports.get("admin") == int(cfg["server"]["admin_listen"].rsplit(":", 1)[1]), "k8s: port admin != admin_listen")
check(c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "admin"}, "k8s: readiness must be /readyz on admin")
check(c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "admin"}, "k8s: liveness must be /healthz on admin")
pre_stop = c["lifecycle"]["preStop"]["sleep"]["seconds"]
shutdown = int(cfg["server"]["shutdown_grace"].rstrip("s"))
check(pod["terminationGracePeriodSeconds"] > pre_stop + shutdown,
      f"k8s: terminationGracePeriodSeconds {pod['terminationGracePeriodSeconds']} must exceed "
      f"preStop {pre_stop} + shutdown_grace {shutdown}")
check(deploy["spec"]["replicas"] == 2, "k8s: 2 replicas")
check(c["securityContext"].get("readOnlyRootFilesystem") is True, "k8s: read-only root filesystem")
check(pod["volumes"][0]["configMap"]["name"] in {g["name"] for g in kust.get("configMapGenerator", [])},
      "k8s: the Deployment mounts a ConfigMap the kustomization does not generate")
secret = resources[("Secret", c["envFrom"][0]["secretRef"]["name"])]
refs = re.findall(r'"env:([A-Z0-9_]+)"', (k8s / "sluice.toml").read_text())
check(set(refs) <= set(secret["stringData"]), f"k8s: sluice.toml refers to env vars the Secret lacks: {set(refs) - set(secret['stringData'])}")
for kind, name in resources:
    if kind == "Service":
        svc = resources[(kind, name)]
        check(all(pod_labels.get(k) == v for k, v in svc["spec"]["selector"].items()), f"k8s: Service {name} selects no pod")
        for p in svc["spec"]["ports"]:
            check(p["targetPort"] in ports, f"k8s: Service {name} targets unknown port {p['targetPort']}")
    if kind in ("PodDisruptionBudget",):
        sel = resources[(kind, name)]["spec"]["selector"]["matchLabels"]
        check(all(pod_labels.get(k) == v for k, v in sel.items()), f"k8s: {kind} {name} selects no pod")
hpa = resources[("HorizontalPodAutoscaler", "sluice")]
check(hpa["spec"]["minReplicas"] >= deploy["spec"]["replicas"], "k8s: HPA minReplicas below the Deployment's")
sm = docs[k8s / "servicemonitor.yaml"][0]
admin_svc = resources[("Service", "sluice-admin")]
check(all(admin_svc["metadata"]["labels"].get(k) == v for k, v in sm["spec"]["selector"]["matchLabels"].items()),
      "k8s: the ServiceMonitor does not select the admin Service")
check(sm["spec"]["endpoints"][0]["port"] in {p["name"] for p in admin_svc["spec"]["ports"]},
      "k8s: the ServiceMonitor scrapes a port the admin Service lacks")
notes.append("k8s: ports, probes, grace period, selectors, Secret references and the ServiceMonitor agree")

# --- 5. Docker ---------------------------------------------------------------------------------
dockerfile = (DEPLOY / "Dockerfile").read_text()
for needle in ("FROM rust:", "cargo build --release --locked -p sluice-cli -p sluice-sim", "EXPOSE 8080 9090",
               'ENTRYPOINT ["/usr/local/bin/sluice"]', "USER 65532"):
    check(needle in dockerfile, f"Dockerfile: expected {needle!r}")
dockerignore = (ROOT / ".dockerignore").read_text().split()
for needed in ("gateway", "simulator", "tests", "Cargo.toml", "Cargo.lock", "rust-toolchain.toml"):
    check(needed not in dockerignore, f".dockerignore must not exclude {needed} (the workspace needs it)")
notes.append("Dockerfile and .dockerignore: static checks only (no Docker engine here; the image build was not run)")

for n in notes:
    print(f"  {n}")
if failures:
    print(f"\n{len(failures)} problem(s):")
    for f in failures:
        print(f"  FAIL {f}")
    sys.exit(1)
print("deploy/: all checks passed")
