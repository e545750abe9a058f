"""`make bench`: what spancost.cost adds per span at the bridge (issue #3).

The same collector, fed the same load by spancost-loadgen at a fixed rate; CPU
seconds (collector + sidecar) per million spans, i.e. µs per span, of four
pipelines:

- ``noop``: one python processor whose plugin changes nothing
  (spancost.environment with an empty config): the bridge alone;
- ``cost``: one python processor running spancost.cost;
- ``env``: python/env (drop ci and staging), as in configs/;
- ``env_cost``: python/env then python/cost (two processors, two hops);
- ``chain``: one processor, spancost.chain of the environment filter and
  pricing (one hop), as in configs/.

``cost - noop`` is what pricing adds to the bridge: Python's pricing, the changes
on the wire, the Go side applying them; ``chain - env`` the same next to the
environment filter, as configs/ run it. ``env_cost - env`` is what a second
python processor for pricing costs, its own hop included. Two traffic shapes: traces of
10 spans (a SERVER root and 9 INTERNAL children: compute is charged once per
trace) and every span a root (the worst case). Each pipeline runs `--rounds`
times, in turn; medians are reported.

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

PIPELINES = ("noop", "cost", "env", "env_cost", "chain")


def config(pipeline: str) -> dict[str, Any]:
    cfg = pipeline_config("python")
    env = cfg["processors"]["python/env"]
    if pipeline == "noop":
        env["config"] = {}
    elif pipeline == "cost":
        env.update(plugin="spancost.cost", config={}, timeout="1s")
    elif pipeline == "chain":
        env.update(
            plugin="spancost.chain",
            timeout="1s",
            config={
                "steps": [
                    {"plugin": "spancost.environment", "config": env["config"]},
                    {"plugin": "spancost.cost", "config": {}},
                ]
            },
        )
    elif pipeline == "env_cost":
        cfg["processors"]["python/cost"] = {
            "extension": "python",
            "plugin": "spancost.cost",
            "timeout": "1s",
        }
        cfg["service"]["pipelines"]["traces"]["processors"] = ["python/env", "python/cost", "batch"]
    return cfg


def measure(pipeline: str, trace_size: int, rate: float, seconds: float) -> float:
    workdir = Path(tempfile.mkdtemp(prefix="spancost-bench-bridge-"))
    c = Collector(config(pipeline), workdir).start()
    try:
        load_step(c, rate, 3, trace_size)  # warm-up: plans and prices cached
        step = load_step(c, rate, seconds, trace_size)
    finally:
        c.stop()
    if not step["ok"]:
        raise SystemExit(f"{pipeline} did not keep up at {rate} spans/s: {step}")
    return float(step["cpu_s_per_million"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=30_000, help="spans per second")
    parser.add_argument("--seconds", type=float, default=15, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    results: dict[str, Any] = {"rate": args.rate, "seconds": args.seconds, "shapes": {}}
    for trace_size in (10, 1):
        cpu: dict[str, list[float]] = {name: [] for name in PIPELINES}
        for _ in range(args.rounds):
            for name in PIPELINES:
                cpu[name].append(measure(name, trace_size, args.rate, args.seconds))
        same_hop = [c - n for c, n in zip(cpu["cost"], cpu["noop"], strict=True)]
        second = [c - e for c, e in zip(cpu["env_cost"], cpu["env"], strict=True)]
        chained = [c - e for c, e in zip(cpu["chain"], cpu["env"], strict=True)]
        results["shapes"][trace_size] = {
            "cpu_us_per_span": {k: [round(v, 3) for v in vs] for k, vs in cpu.items()},
            "pricing_same_hop_us": [round(v, 3) for v in same_hop],
            "pricing_second_processor_us": [round(v, 3) for v in second],
            "pricing_chained_us": [round(v, 3) for v in chained],
        }
    out = ROOT / "bench-results"
    out.mkdir(exist_ok=True)
    (out / "pricing_bridge.json").write_text(json.dumps(results, indent=2))
    print(
        f"| traffic ({args.rate:,.0f} spans/s) | noop | cost | env | env+cost | chain |"
        " pricing on the same hop (cost - noop) | chained after env (chain - env) |"
        " as a second processor (env+cost - env) |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for trace_size, shape in results["shapes"].items():
        label = "traces of 10 spans" if trace_size == 10 else "every span a root"
        cpu_median = {k: statistics.median(v) for k, v in shape["cpu_us_per_span"].items()}
        same = statistics.median(shape["pricing_same_hop_us"])
        second_median = statistics.median(shape["pricing_second_processor_us"])
        chained_median = statistics.median(shape["pricing_chained_us"])
        print(
            f"| {label} | {cpu_median['noop']:.2f} | {cpu_median['cost']:.2f} |"
            f" {cpu_median['env']:.2f} | {cpu_median['env_cost']:.2f} |"
            f" {cpu_median['chain']:.2f} |"
            f" **{same:.2f} µs** {shape['pricing_same_hop_us']} |"
            f" **{chained_median:.2f} µs** {shape['pricing_chained_us']} |"
            f" {second_median:.2f} µs {shape['pricing_second_processor_us']} |"
        )


if __name__ == "__main__":
    main()
