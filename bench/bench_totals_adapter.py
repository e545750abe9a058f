"""Measures what the totals sink spends reading a batch, before its store writes it:
µs/span of parsing the OTLP request, `contributions` (enriched spans → one
`SpanContribution` each) and `split` (quarantine by time and id).

The batch is bench_cost_plugin's (1,000 spans, 20 resources, 8 span attributes each,
traces of 10), priced by ``spancost.cost`` first, so every span carries the
``cost.*`` attributes the sink reads: what the collector's totals exporter sends.
A store's own write is measured by bench/bench_store.py.

    .venv/bin/python -m bench.bench_totals_adapter
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from spancost.changes import span_count
from spancost.plugin import Events
from spancost.plugins.cost import CostPlugin
from spancost.totals import split
from spancost.totals.otlp import contributions

from bench.bench_cost_plugin import make_batch


def enriched_batch() -> ExportTraceServiceRequest:
    batch = make_batch()
    CostPlugin({}).process(batch, Events())
    return batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=30, help="timed rounds (default 30)")
    parser.add_argument("--repeat", type=int, default=20, help="batches per round (default 20)")
    args = parser.parse_args()
    repeat: int = args.repeat
    batch = enriched_batch()
    spans = span_count(batch)
    data = batch.SerializeToString()
    items = contributions(batch)
    assert len(items) == spans and all(item.unpriced_reason is None for item in items[:1])
    now = datetime.fromtimestamp(max(item.end_ns for item in items) / 1e9, UTC)
    accepted, quarantined = split(items, now, timedelta(hours=2))
    assert len(accepted) + len(quarantined) == spans
    print(f"batch: {spans} spans, {len(batch.resource_spans)} resources, {len(data):,} bytes")

    steps: list[tuple[str, Callable[[], object]]] = [
        (
            "parse (ExportTraceServiceRequest.FromString)",
            lambda: ExportTraceServiceRequest.FromString(data),
        ),
        ("contributions", lambda: contributions(batch, events=Events())),
        ("split", lambda: split(items, now, timedelta(hours=2))),
    ]

    def run(step: Callable[[], object]) -> float:
        gc.disable()
        try:
            begin = time.perf_counter()
            for _ in range(repeat):
                step()
            return (time.perf_counter() - begin) / repeat / spans * 1e6
        finally:
            gc.enable()

    total = 0.0
    for label, step in steps:
        run(step)  # warm-up
        samples = [run(step) for _ in range(args.rounds)]
        median = statistics.median(samples)
        total += median
        print(f"{label}: median {median:.2f} µs/span, best {min(samples):.2f}")
    print(f"all three: {total:.2f} µs/span ({total * spans / 1000:.2f} ms per {spans}-span batch)")


if __name__ == "__main__":
    main()
