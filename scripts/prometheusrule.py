"""Writes configs/prometheus/prometheusrule.yaml from configs/prometheus/spancost-rules.yaml
(or, with --check, fails if it is out of date): the same rules as a PrometheusRule for the
Prometheus Operator. tests/kube/test_prometheus_rules.py checks they agree."""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "configs" / "prometheus" / "spancost-rules.yaml"
TARGET = ROOT / "configs" / "prometheus" / "prometheusrule.yaml"
HEADER = (
    "# GENERATED from configs/prometheus/spancost-rules.yaml; do not edit. Regenerate with\n"
    "# `.venv/bin/python scripts/prometheusrule.py`. The label `release` is what a\n"
    "# kube-prometheus-stack Prometheus selects rules by (its default ruleSelector):\n"
    "# set it to your release's name, or drop it if your Prometheus selects all rules.\n"
)


def render() -> str:
    rules = yaml.safe_load(SOURCE.read_text())
    manifest = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "spancost",
            "namespace": "spancost",
            "labels": {
                "app.kubernetes.io/name": "spancost",
                "app.kubernetes.io/part-of": "spancost",
                "release": "kube-prometheus-stack",
            },
        },
        "spec": {"groups": rules["groups"]},
    }
    return HEADER + yaml.safe_dump(manifest, sort_keys=False, width=100)


def main() -> int:
    text = render()
    if sys.argv[1:] == ["--check"]:
        if TARGET.read_text() != text:
            print(f"{TARGET.relative_to(ROOT)} is out of date: run {__file__}", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
