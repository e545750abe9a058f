"""Writes the ConfigMaps that carry the collector configs into the cluster (or, with
--check, fails if one is out of date): configs/k8s/configmap.yaml (the agent's:
configs/daemonset.yaml for one tier and configs/agent.yaml for two) and
configs/k8s/gateway-configmap.yaml (configs/gateway.yaml). The same ConfigMaps
`kubectl create configmap --dry-run=client` makes, without needing kubectl."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"


@dataclass(frozen=True)
class Target:
    path: Path
    name: str  # the ConfigMap's
    app: str  # its app.kubernetes.io/name
    sources: tuple[str, ...]  # files under configs/, each a key named by its file name


TARGETS = (
    Target(
        CONFIGS / "k8s" / "configmap.yaml",
        "spancost-agent-config",
        "spancost-agent",
        ("daemonset.yaml", "agent.yaml"),
    ),
    Target(
        CONFIGS / "k8s" / "gateway-configmap.yaml",
        "spancost-gateway-config",
        "spancost-gateway",
        ("gateway.yaml", "tiers/gateway-tls.yaml"),
    ),
)


class _Literal(str):
    pass


def _literal(dumper: yaml.SafeDumper, data: _Literal) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|")


def render(target: Target) -> str:
    yaml.SafeDumper.add_representer(_Literal, _literal)
    sources = " and ".join(f"configs/{name}" for name in target.sources)
    header = (
        f"# GENERATED from {sources}; do not edit. "
        "Regenerate with `scripts/configmap.py` (see configs/README.md).\n"
    )
    configmap = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": target.name,
            "namespace": "spancost",
            "labels": {
                "app.kubernetes.io/name": target.app,
                "app.kubernetes.io/part-of": "spancost",
            },
        },
        "data": {
            Path(name).name: _Literal((CONFIGS / name).read_text()) for name in target.sources
        },
    }
    return header + yaml.safe_dump(configmap, sort_keys=False, width=1000)


def main() -> int:
    check = sys.argv[1:] == ["--check"]
    stale = []
    for target in TARGETS:
        text = render(target)
        if not check:
            target.path.write_text(text)
        elif not target.path.exists() or target.path.read_text() != text:
            stale.append(target.path.relative_to(ROOT))
    for path in stale:
        print(f"{path} is out of date: run scripts/configmap.py", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
