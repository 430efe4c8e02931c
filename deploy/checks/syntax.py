"""Every YAML, JSON and TOML file under deploy/ parses; the parsed documents for the rest."""

import json
import tomllib

import yaml

from .report import DEPLOY, rel


def load_all(report):
    docs = {}
    for path in sorted(DEPLOY.rglob("*")):
        if "__pycache__" in path.parts:
            continue
        try:
            if path.suffix in (".yaml", ".yml"):
                docs[path] = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
            elif path.suffix == ".json":
                docs[path] = [json.loads(path.read_text())]
            elif path.suffix == ".toml":
                docs[path] = [tomllib.loads(path.read_text())]
        except (yaml.YAMLError, json.JSONDecodeError, tomllib.TOMLDecodeError) as e:
            report.fail(f"{rel(path)}: does not parse: {e}")
    report.note(f"parsed {len(docs)} YAML/JSON/TOML files")
    return docs
