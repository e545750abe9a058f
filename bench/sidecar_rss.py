"""`make bench`: the sidecar's memory at idle with the shipped plugins loaded.

The built collector on a shipped config (default configs/local.yaml: the
spancost.chain of spancost.environment and spancost.cost, and the totals sink on
SQLite), on free 127.0.0.1 ports and a private data directory, spawning its
sidecar; once the collector is ready and has been idle 5 s, the sidecar's RSS and
the collector's, several runs. (That the Kubernetes client and psycopg load only
for a config that uses them is a unit test: python_processor/tests/test_lazy_imports.py.)
Results go to bench-results/sidecar_rss.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
import yaml

from tests.e2e.harness import COLLECTOR, ROOT, free_port
from tests.waiting import wait_for

IDLE_S = 5.0


def private(config: dict[str, Any]) -> dict[str, Any]:
    """The config's listeners on free loopback ports."""
    for receiver in config.get("receivers", {}).values():
        for protocol in (receiver or {}).get("protocols", {}).values():
            if isinstance(protocol, dict):
                protocol["endpoint"] = f"127.0.0.1:{free_port()}"
    for name, exporter in config.get("exporters", {}).items():
        if name.startswith("prometheus"):
            exporter["endpoint"] = f"127.0.0.1:{free_port()}"
    if "health_check" in config.get("extensions", {}):
        config["extensions"]["health_check"]["endpoint"] = f"127.0.0.1:{free_port()}"
    telemetry = config["service"].setdefault("telemetry", {})
    telemetry["metrics"] = {"level": "none"}
    return config


def once(config_path: Path, workdir: Path) -> dict[str, Any]:
    config = private(yaml.safe_load(config_path.read_text()))
    path = workdir / "collector.yaml"
    path.write_text(yaml.safe_dump(config))
    log = workdir / "collector.log"
    env = {
        **os.environ,
        "PATH": f"{ROOT / '.venv' / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "SPANCOST_DATA_DIR": str(workdir / "data"),
    }
    with log.open("wb") as out:
        proc = subprocess.Popen(  # noqa: S603 - our own binary
            [str(COLLECTOR), "--config", str(path)], stdout=out, stderr=subprocess.STDOUT, env=env
        )
    try:
        wait_for(lambda: "Everything is ready" in log.read_text(errors="replace"), 60, "ready")
        time.sleep(IDLE_S)  # idle: the figure is what a quiet node holds
        main = psutil.Process(proc.pid)
        (sidecar,) = main.children()
        return {
            "sidecar_mib": sidecar.memory_info().rss / 2**20,
            "collector_mib": main.memory_info().rss / 2**20,
        }
    finally:
        proc.terminate()
        proc.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "local.yaml")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    runs = []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory() as workdir:
            runs.append(once(args.config, Path(workdir)))
    sidecar = [r["sidecar_mib"] for r in runs]
    result = {
        "config": str(args.config.relative_to(ROOT)),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "runs": runs,
        "sidecar_mib_median": statistics.median(sidecar),
    }
    out = ROOT / "bench-results" / "sidecar_rss.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(
        f"sidecar RSS idle on {result['config']}: median {result['sidecar_mib_median']:.1f} MiB"
        f" (runs: {', '.join(f'{x:.1f}' for x in sidecar)}); collector"
        f" {statistics.median(r['collector_mib'] for r in runs):.1f} MiB"
    )


if __name__ == "__main__":
    main()
