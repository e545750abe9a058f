"""``spancost demo`` then ``spancost report``, as the README's first example runs them:
the real collector on configs/local.yaml (the sidecar, the environment and cost steps,
the totals sink into SQLite), the real CLI as a subprocess.

What passes the processor also goes to a test OTLP sink, so the report is checked
against the prices the collector wrote, not against the demo's own idea of them.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from spancost.demo import CI, DEFAULT_SEED, DEFAULT_TRANSACTIONS, build_batches, plan_requests

from tests.e2e.harness import ROOT, SPANCOST, Collector, OtlpSink, attrs, free_port
from tests.e2e.totals import socket_dir
from tests.waiting import wait_for

Start = Callable[..., Collector]


def start_local_collector(
    collector: Start, sink: OtlpSink, tmp_path: Path
) -> tuple[Collector, dict[str, str], Path]:
    """configs/local.yaml on free ports, also exporting to `sink`; its environment (for
    `spancost report` on the same store) and its SQLite totals file."""
    config = yaml.safe_load((ROOT / "configs" / "local.yaml").read_text())
    config["receivers"]["otlp"]["protocols"] = {
        "grpc": {"endpoint": f"127.0.0.1:{free_port()}"},
        "http": {"endpoint": f"127.0.0.1:{free_port()}"},
    }
    config["extensions"]["health_check"]["endpoint"] = f"127.0.0.1:{free_port()}"
    config["exporters"]["prometheus/cost"]["endpoint"] = f"127.0.0.1:{free_port()}"
    config["exporters"]["otlp_grpc/test"] = {
        "endpoint": f"127.0.0.1:{sink.port}",
        "tls": {"insecure": True},
        "sending_queue": {"enabled": False},
    }
    config["service"]["pipelines"]["traces"]["exporters"].append("otlp_grpc/test")
    data = tmp_path / "data"
    env = {
        **{k: v for k, v in os.environ.items() if k != "DATABASE_URL"},
        "PATH": f"{ROOT / '.venv' / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "SPANCOST_RUN_DIR": str(socket_dir()),
        "SPANCOST_DATA_DIR": str(data),
    }
    return collector(config, env=env), env, data / "totals.db"


def spancost(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own CLI
        [str(SPANCOST), *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def stored_spans(database: Path) -> int:
    if not database.exists():
        return 0
    with sqlite3.connect(database) as db:
        (spans,) = db.execute("SELECT coalesce(sum(span_count), 0) FROM traces").fetchone()
    return int(spans)


def production_spans(transactions: tuple[str, ...], requests: int) -> int:
    """How many spans of what `spancost demo` sends are not CI's (the same for any run)."""
    plan = plan_requests(transactions, requests)
    return sum(
        len(scope_spans.spans)
        for batch in build_batches(plan, seed=DEFAULT_SEED, now_ns=time.time_ns())
        for resource_spans in batch.resource_spans
        if attrs(resource_spans.resource.attributes)["deployment.environment.name"] != CI
        for scope_spans in resource_spans.scope_spans
    )


def wait_stored(sink: OtlpSink, database: Path, expected: int) -> list[Any]:
    """The `expected` spans that passed the processor, once the totals store holds them."""
    spans = sink.wait_spans(expected)
    wait_for(lambda: stored_spans(database) >= expected, 30, f"{expected} spans in SQLite")
    assert (len(sink.spans()), stored_spans(database)) == (expected, expected)
    return spans


def test_demo_then_report_shows_money_on_make_runs_config(
    sink: OtlpSink, collector: Start, tmp_path: Path
) -> None:
    c, env, database = start_local_collector(collector, sink, tmp_path)
    demo = spancost(env, "demo", "--endpoint", c.grpc_endpoint, "--requests", "6")
    assert demo.returncode == 0, demo.stderr
    lines = demo.stdout.splitlines()
    assert lines[0].startswith("sent 15 requests, ") and c.grpc_endpoint in lines[0]
    assert lines[-1].startswith("next: spancost report")

    spans = wait_stored(sink, database, production_spans(DEFAULT_TRANSACTIONS, 6))
    environments = {
        attrs(rs.resource.attributes)["deployment.environment.name"] for rs, _, _ in spans
    }
    assert environments == {"production"}, "the CI requests were dropped by the processor"
    prices = [attrs(span.attributes) for _, _, span in spans]
    sent_cost = math.fsum(p.get("cost.usd", 0.0) for p in prices)
    assert [p["cost.unpriced_reason"] for p in prices if "cost.usd" not in p] == [
        "unknown_instance_type"
    ]
    assert {p.get("cost.model") for p in prices} >= {
        "ec2.on_demand.duration",
        "lambda.gb_seconds+requests",
        "llm.tokens",
    }

    report = spancost(env, "report", "--json", "--since", "2h")
    assert report.returncode == 0, report.stderr
    document = json.loads(report.stdout)
    total = document["total"]
    assert total["cost"] > 0
    assert total["cost"] == pytest.approx(sent_cost, rel=1e-9)
    # 6 checkout and 6 search requests; the 3 CI ones are not counted anywhere.
    assert (total["traces"], total["spans"]) == (12, len(spans))
    transactions = {item["name"]: item["traces"] for item in document["transactions"]}
    assert transactions == {"checkout": 6, "search": 6}
    assert (total["unpriced_spans"], document["unpriced"]["spans"]) == (1, 1)
    assert total["unpriced_share"] == pytest.approx(1 / len(spans))
    assert document["unpriced"]["reasons"] == [{"reason": "unknown_instance_type", "spans": 1}]

    # The table the README shows.
    table = spancost(env, "report", "--since", "2h")
    assert table.returncode == 0, table.stderr
    assert "over 12 traces" in table.stdout
    assert "top reasons: unknown_instance_type 1" in table.stdout


def test_demo_over_otlp_http(sink: OtlpSink, collector: Start, tmp_path: Path) -> None:
    c, env, database = start_local_collector(collector, sink, tmp_path)
    demo = spancost(
        env,
        "demo",
        "--protocol",
        "http/protobuf",
        "--endpoint",
        f"http://{c.http_endpoint}",
        "--requests",
        "2",
        "--business-transaction",
        "refund",
    )
    assert demo.returncode == 0, demo.stderr
    assert "over OTLP/HTTP" in demo.stdout
    wait_stored(sink, database, production_spans(("refund",), 2))
    report = spancost(env, "report", "--json", "--since", "2h")
    document = json.loads(report.stdout)
    assert [(t["name"], t["traces"]) for t in document["transactions"]] == [("refund", 2)]
    assert document["total"]["cost"] > 0


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_demo_without_a_collector_exits_1_naming_the_endpoint(protocol: str) -> None:
    port = free_port()  # nothing listens there
    endpoint = f"127.0.0.1:{port}" if protocol == "grpc" else f"http://127.0.0.1:{port}"
    result = spancost(dict(os.environ), "demo", "--protocol", protocol, "--endpoint", endpoint)
    assert result.returncode == 1
    assert f"cannot reach the collector at {endpoint}" in result.stderr
    assert "Traceback" not in result.stderr
