"""`make bench`: what spancost.cost adds per span at the bridge (issue #3).

The same collector, fed the same load by spancost-loadgen at a fixed rate, once
with python/env alone and once with python/env then python/cost; the difference
in CPU seconds (collector + sidecar) per million spans is what pricing adds per
span: Python's pricing, the changes on the wire, and the Go side applying them.
Two traffic shapes: traces of 10 spans (a SERVER root and 9 INTERNAL children:
compute is charged once per trace) and every span a root (the worst case).
Each pair runs `--rounds` times, alternating; medians are reported.

Results go to bench-results/pricing_bridge.json and Markdown on stdout.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path
from typing import Any

from bench.pipeline import load_step, pipeline_config
from tests.e2e.harness import ROOT, Collector


def config(with_cost: bool) -> dict[str, Any]:
    cfg = pipeline_config("python")
    if with_cost:
        cfg["processors"]["python/cost"] = {
            "extension": "python",
            "plugin": "spancost.cost",
            "timeout": "1s",
        }
        cfg["service"]["pipelines"]["traces"]["processors"] = ["python/env", "python/cost", "batch"]
    return cfg


def measure(with_cost: bool, trace_size: int, rate: float, seconds: float) -> float:
    workdir = Path(tempfile.mkdtemp(prefix="spancost-bench-bridge-"))
    c = Collector(config(with_cost), workdir).start()
    try:
        load_step(c, rate, 3, trace_size)  # warm-up: plans and prices cached
        step = load_step(c, rate, seconds, trace_size)
    finally:
        c.stop()
    if not step["ok"]:
        raise SystemExit(f"the collector did not keep up at {rate} spans/s: {step}")
    return float(step["cpu_s_per_million"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=30_000, help="spans per second")
    parser.add_argument("--seconds", type=float, default=15, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    results: dict[str, Any] = {"rate": args.rate, "seconds": args.seconds, "shapes": {}}
    for trace_size in (10, 1):
        env, cost = [], []
        for _ in range(args.rounds):
            env.append(measure(False, trace_size, args.rate, args.seconds))
            cost.append(measure(True, trace_size, args.rate, args.seconds))
        added = [c - e for c, e in zip(cost, env, strict=True)]
        results["shapes"][trace_size] = {
            "env_cpu_s_per_million": [round(v, 3) for v in env],
            "env_cost_cpu_s_per_million": [round(v, 3) for v in cost],
            "added_us_per_span": [round(v, 3) for v in added],
            "median_added_us_per_span": round(statistics.median(added), 3),
        }
    out = ROOT / "bench-results"
    out.mkdir(exist_ok=True)
    (out / "pricing_bridge.json").write_text(json.dumps(results, indent=2))
    print(
        f"| traffic ({args.rate:,.0f} spans/s) | python/env CPU µs/span | + python/cost |"
        " added by pricing, median (runs) |"
    )
    print("| --- | ---: | ---: | ---: |")
    for trace_size, shape in results["shapes"].items():
        label = "traces of 10 spans" if trace_size == 10 else "every span a root"
        print(
            f"| {label} | {statistics.median(shape['env_cpu_s_per_million']):.2f} |"
            f" {statistics.median(shape['env_cost_cpu_s_per_million']):.2f} |"
            f" **{shape['median_added_us_per_span']:.2f} µs** ({shape['added_us_per_span']}) |"
        )


if __name__ == "__main__":
    main()
