"""`make bench`: the sidecar's memory at idle with the shipped plugins loaded.

The built collector on a shipped config (default configs/local.yaml: the
spancost.chain of spancost.environment and spancost.cost, and the totals sink on
SQLite), on free 127.0.0.1 ports and a private data directory, spawning its
sidecar; once the collector is ready and has been idle 5 s, the sidecar's RSS and
the collector's, several runs. (That the Kubernetes client and psycopg load only
for a config that uses them is a unit test: python_processor/tests/test_lazy_imports.py.)
Then where it goes: a fresh interpreter imports what the sidecar imports, step by step
(grpc, the OTLP protobufs, pydantic, importlib.metadata, the sidecar's server, the
shipped plugins) and configures the shipped chain, and the RSS each step added is
printed.

Results go to bench-results/sidecar_rss.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
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


BY_IMPORT = """
import json, sys

def rss():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")

steps = [("Python itself", rss())]
def step(label, action):
    before = rss()
    action()
    steps.append((label, rss() - before))

step("grpc", lambda: __import__("grpc"))
step("the OTLP protobufs", lambda: __import__(
    "opentelemetry.proto.collector.trace.v1.trace_service_pb2"))
step("pydantic", lambda: [__import__(m) for m in ("pydantic", "pydantic.main", "pydantic.fields")])
step("importlib.metadata", lambda: __import__("importlib.metadata"))
step("spancost's sidecar server", lambda: __import__("spancost.sidecar.server"))
step("the shipped plugins' modules", lambda: [__import__(f"spancost.plugins.{m}")
    for m in ("chain", "cost", "environment")])
def configure():
    import yaml
    from spancost.registry import load_plugin
    chain = yaml.safe_load(open(sys.argv[1]))["processors"]["python/spancost"]["config"]
    global plugin
    plugin = load_plugin("spancost.chain").factory(chain)
step("configuring the shipped chain", configure)
steps.append(("total", rss()))
print(json.dumps(steps))
"""


def by_import(config_path: Path) -> list[tuple[str, float]]:
    """RSS (MiB) each step of a sidecar's start-up adds, in a fresh interpreter."""
    result = subprocess.run(  # noqa: S603 - this interpreter
        [sys.executable, "-c", BY_IMPORT, str(config_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    steps: list[tuple[str, float]] = json.loads(result.stdout.strip().splitlines()[-1])
    return steps


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
    result["by_import_mib"] = by_import(args.config)
    out = ROOT / "bench-results" / "sidecar_rss.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(
        f"sidecar RSS idle on {result['config']}: median {result['sidecar_mib_median']:.1f} MiB"
        f" (runs: {', '.join(f'{x:.1f}' for x in sidecar)}); collector"
        f" {statistics.median(r['collector_mib'] for r in runs):.1f} MiB"
    )
    print(
        "\nwhere it goes (a fresh interpreter, step by step): "
        + "; ".join(
            f"{label} {'+' if 0 < index < len(result['by_import_mib']) - 1 else ''}{mib:.1f}"
            for index, (label, mib) in enumerate(result["by_import_mib"])
        )
        + " MiB"
    )


if __name__ == "__main__":
    main()
