"""The PromQL in the Grafana dashboards and the Prometheus rules, and the metric names it reads.

Names come from the parsed expression (promql-parser), not from a pattern over the text, so a
label value or a function name is never taken for a metric."""

import json
import re

from .report import DEPLOY

RULE_FILES = [DEPLOY / "prometheus/alerts.yml"]
DASHBOARDS = sorted((DEPLOY / "grafana/dashboards").glob("*.json"))

# Grafana's variables, replaced by something of the same type before parsing.
GRAFANA_VARS = [
    ("$__rate_interval", "1m"),
    ("$__interval", "1m"),
    ("$__range", "1h"),
    ("${datasource}", "prometheus"),
]


def _concrete(expr):
    for var, value in GRAFANA_VARS:
        expr = expr.replace(var, value)
    # Template variables ($model, ${tenant}) only appear inside label matchers here.
    return re.sub(r"\$\{?[a-z_]+\}?", ".*", expr)


def _panels(panels):
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def dashboard_queries():
    """(where, expr) for every panel target and query variable of every dashboard."""
    out = []
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text())
        for panel in _panels(dashboard.get("panels", [])):
            for target in panel.get("targets", []):
                if target.get("expr"):
                    out.append((f"{path.name} panel {panel.get('title')!r}", target["expr"]))
        for var in dashboard.get("templating", {}).get("list", []):
            if var.get("type") != "query":
                continue
            query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            # label_values(metric, label) and query_result(expr) hold PromQL; label_values(label)
            # reads no metric.
            m = re.fullmatch(r"\s*(?:label_values\((.+),\s*\w+\)|query_result\((.+)\))\s*", query)
            if m:
                out.append((f"{path.name} variable {var['name']}", m.group(1) or m.group(2)))
    return out


AUTOSCALING = DEPLOY / "autoscaling"


def autoscaling_queries(docs):
    """(where, expr) for the worker autoscaling examples' Prometheus queries (KEDA's triggers)."""
    out = []
    for path in sorted(AUTOSCALING.glob("*.yaml")):
        for d in docs.get(path, []):
            for trigger in d.get("spec", {}).get("triggers", []) if d.get("kind") == "ScaledObject" else []:
                if trigger.get("type") == "prometheus":
                    out.append((f"{path.name} trigger", trigger["metadata"]["query"]))
    return out


def rules(docs):
    """(where, rule) for every alerting and recording rule."""
    out = []
    for path in RULE_FILES:
        for group in docs.get(path, [{}])[0].get("groups", []):
            for rule in group.get("rules", []):
                name = rule.get("alert") or rule.get("record") or "?"
                out.append((f"{path.name} {name}", rule))
    return out


def recorded(docs):
    return {rule["record"] for _, rule in rules(docs) if "record" in rule}


def metric_names(expr):
    """The metric names an expression selects, from its syntax tree."""
    import promql_parser

    names = set()

    def walk(node):
        if type(node).__name__ == "VectorSelector":
            if node.name:
                names.add(node.name)
            # {__name__="…"} selects by name too.
            names.update(m.value for m in node.matchers.matchers if m.name == "__name__")
        for attr in ("lhs", "rhs", "expr", "vector_selector", "param"):
            child = getattr(node, attr, None)
            if child is not None and not isinstance(child, (int, float, str)):
                walk(child)
        for child in getattr(node, "args", None) or []:
            walk(child)

    walk(promql_parser.parse(_concrete(expr)))
    return names


def check_parse(report, docs):
    """Every query parses as PromQL; returns {where: names} for the live check."""
    try:
        import promql_parser  # noqa: F401
    except ImportError:
        report.skip("PromQL parsing and metric names", "pip install promql-parser")
        return None
    used = {}
    queries = (dashboard_queries() + [(where, rule.get("expr", "")) for where, rule in rules(docs)]
               + autoscaling_queries(docs))
    for where, expr in queries:
        try:
            used.setdefault(where, set()).update(metric_names(expr))
        except Exception as e:  # the binding raises plain exceptions
            report.fail(f"{where}: PromQL does not parse: {e}\n    {expr}")
    for where, rule in rules(docs):
        if "alert" in rule:
            report.check(rule.get("labels", {}).get("severity") in ("critical", "warning", "info"),
                         f"{where}: severity must be critical, warning or info")
            report.check("summary" in rule.get("annotations", {}), f"{where}: no summary annotation")
    for path in DASHBOARDS:
        ids = [p.get("id") for p in _panels(json.loads(path.read_text()).get("panels", []))]
        report.check(len(ids) == len(set(ids)), f"{path.name}: duplicate panel ids")
    report.note(f"parsed {len(queries)} PromQL queries ({len(DASHBOARDS)} dashboard(s), {len(rules(docs))} rules, "
                f"{len(autoscaling_queries(docs))} autoscaling trigger(s))")
    return used
