"""The guard end to end on PostgreSQL: spans through the real collector and sidecar into
the totals sink in a real PostgreSQL, then `spancost guard --once` (the CLI, as its
CronJob runs it) with the guard's own ServiceAccount against the real kube-apiserver.

Nothing is written into the store by hand: the spend the guard acts on is what the
collector priced.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from opentelemetry.proto.trace.v1 import trace_pb2

from tests.e2e.harness import ROOT, Collector, OtlpSink
from tests.e2e.raw import RawClient
from tests.e2e.test_integrity import EC2, UNPRICED, export, forged_span, stored_traces
from tests.e2e.totals import any_value, new_database, pg, socket_dir, totals_config
from tests.kube.guard_env import Env

HOUR_NS = 3600 * 10**9
M5_LARGE_HOUR = 0.096  # the bundled us-east-1 on-demand price


@pytest.fixture(scope="module")
def postgres() -> Iterator[Any]:
    with pg.running_postgres() as server:
        yield server


def checkout(span: trace_pb2.Span) -> trace_pb2.Span:
    span.attributes.add(key="business.transaction", value=any_value("checkout"))
    return span


def run_guard(budgets: Path, url: str, kubeconfig: Path) -> dict[str, Any]:
    result = subprocess.run(  # noqa: S603 - our own CLI
        [
            str(ROOT / ".venv" / "bin" / "spancost"), "guard", "--once",
            "--budgets", str(budgets), "--database-url", url,
            "--kubeconfig", str(kubeconfig), "--output", "json",
        ],
        env={k: v for k, v in os.environ.items() if k != "DATABASE_URL"},
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def test_spend_priced_by_the_collector_in_postgres_scales_the_domain_down(
    env: Env, kube_cluster: Any, guard_token: str, postgres: Any, tmp_path: Path
) -> None:
    url = new_database(postgres)
    sink = OtlpSink().start()
    (tmp_path / "collector").mkdir()
    collector = Collector(
        totals_config(sink.port, socket_dir() / "s.sock", url), tmp_path / "collector"
    )
    collector.start()
    try:
        # Two 3-hour checkout jobs on an m5.large (0.288 USD each) and one span that
        # cannot be priced (a third of the domain's spans: above max_unpriced_share).
        jobs = [checkout(forged_span(0, duration_ns=3 * HOUR_NS)) for _ in range(2)]
        blind = checkout(forged_span(0))
        client = RawClient(collector.grpc_endpoint)
        client.export(export(EC2, jobs))
        client.export(export(UNPRICED, [blind]))
        client.close()
        sink.wait_spans(3)
        rows = stored_traces(url, 3)
    finally:
        collector.stop()
        sink.stop()
    spend = sum(cost for cost, _, _ in rows.values())
    assert spend == pytest.approx(2 * 3 * M5_LARGE_HOUR, rel=1e-9)

    env.deployment("web", 10)
    env.deployment("db", 4, labels={"criticality": "high"})
    budgets = tmp_path / "budgets.yaml"
    budgets.write_text(
        yaml.safe_dump(
            {
                "exclude_environments": ["staging"],
                "budgets": {
                    "checkout": {
                        "limit": 0.5,
                        "namespaces": [env.namespace],
                        "max_unpriced_share": 0.2,
                    }
                },
            }
        )
    )
    kubeconfig = tmp_path / "kubeconfig"
    kube_cluster.kubeconfig(guard_token, kubeconfig)
    report = run_guard(budgets, url, kubeconfig)

    (domain,) = report["domains"]
    assert domain["spend"] == pytest.approx(spend, rel=1e-9)
    assert (domain["level"], domain["ratio"]) == ("breach", pytest.approx(spend / 0.5))
    assert (domain["spans"], domain["unpriced_spans"], domain["reads_low"]) == (3, 1, True)
    assert env.replicas("web") == 7 and env.replicas("db") == 4
    summaries = [alert["summary"] for alert in report["alerts"]]
    assert any(s.startswith("Budget breached: checkout spent 0.58 USD") for s in summaries)
    assert any(s.startswith("Budget coverage: 33% of checkout's spans") for s in summaries)
    assert env.events("web") == ["BudgetScaledDown"]
