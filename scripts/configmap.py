"""Writes configs/k8s/configmap.yaml from configs/daemonset.yaml (or, with --check,
fails if it is out of date). The same ConfigMap `kubectl create configmap
--dry-run=client` makes, without needing kubectl."""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "configs" / "daemonset.yaml"
TARGET = ROOT / "configs" / "k8s" / "configmap.yaml"
HEADER = (
    "# GENERATED from configs/daemonset.yaml; do not edit. "
    "Regenerate with `scripts/configmap.py` (see configs/README.md).\n"
)


class _Literal(str):
    pass


def _literal(dumper: yaml.SafeDumper, data: _Literal) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|")


def render() -> str:
    yaml.SafeDumper.add_representer(_Literal, _literal)
    configmap = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "spancost-agent-config",
            "namespace": "spancost",
            "labels": {
                "app.kubernetes.io/name": "spancost-agent",
                "app.kubernetes.io/part-of": "spancost",
            },
        },
        "data": {"daemonset.yaml": _Literal(SOURCE.read_text())},
    }
    return HEADER + yaml.safe_dump(configmap, sort_keys=False, width=1000)


def main() -> int:
    text = render()
    if sys.argv[1:] == ["--check"]:
        if TARGET.read_text() != text:
            print(
                f"{TARGET.relative_to(ROOT)} is out of date: run scripts/configmap.py",
                file=sys.stderr,
            )
            return 1
        return 0
    TARGET.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
