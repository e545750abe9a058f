"""Costs that add up to the bill, end to end: the node's cost split to transactions,
untraced workloads and idle by the real collector's sidecar, from node and pod facts a
real kube-apiserver holds.

One EKS-like node (an m5.large: 2 vCPU, 8 GiB) with three pods: ``web`` and ``worker``
(in ``shop``) send spans, ``postgres`` (in ``data``) sends none. The collector runs the
shipped agent processors as the node's agent, and its totals sink (SQLite here) with
``allocation`` on the same node: every maintenance interval it reports the node's and
the pods' running time, priced, and allocates. ``spancost report --reconcile`` then
shows the node's bill for the time it has run, split with no difference, and the
report's allocation names the transactions, the untraced database and idle.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from tests.e2e.harness import ROOT, Collector, OtlpSink
from tests.e2e.kube import Pod, agent_config, agent_kubeconfig, create_node, run_pod, send_from
from tests.e2e.totals import any_value, socket_dir
from tests.kube.harness import KubeCluster, started_or_fail
from tests.waiting import wait_for

Start = Callable[..., Collector]
NODE = "ip-10-0-2-7.ec2.internal"
SPANCOST = ROOT / ".venv" / "bin" / "spancost"
M5_LARGE = 0.096  # us-east-1 Linux on-demand per hour, AWS's public price


@dataclass(frozen=True)
class Cluster:
    kube: KubeCluster
    kubeconfig: Path
    web: Pod
    worker: Pod
    database: Pod


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    kube = started_or_fail()
    try:
        create_node(kube, NODE, instance_type="m5.large", cpu="2", memory="8Gi")
        web = run_pod(kube, "shop", "web", ip="127.0.0.41", node=NODE,
                      requests={"cpu": "1", "memory": "2Gi"})  # fmt: skip
        worker = run_pod(kube, "shop", "worker", ip="127.0.0.42", node=NODE,
                         requests={"cpu": "500m", "memory": "1Gi"})  # fmt: skip
        database = run_pod(kube, "data", "postgres", ip="127.0.0.43", node=NODE,
                           requests={"cpu": "250m", "memory": "2Gi"})  # fmt: skip
        kubeconfig = agent_kubeconfig(kube, tmp_path_factory.mktemp("kube") / "config")
        yield Cluster(kube, kubeconfig, web, worker, database)
    finally:
        kube.stop()


def span(trace: bytes, name: str, *, root: bool, seconds: float) -> trace_pb2.Span:
    start = time.time_ns() - int(seconds * 1e9)
    result = trace_pb2.Span(
        trace_id=trace,
        span_id=os.urandom(8),
        name=name,
        kind=trace_pb2.Span.SPAN_KIND_SERVER,
        start_time_unix_nano=start,
        end_time_unix_nano=start + int(seconds * 1e9),
    )
    if root:
        result.attributes.add(key="business.transaction", value=any_value(name))
    else:
        result.parent_span_id = os.urandom(8)
        result.flags = 0x300  # the parent is remote: a segment of its own
    return result


def send(agent: Collector, pod: Pod, spans: list[trace_pb2.Span]) -> None:
    request = trace_service_pb2.ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    rs.resource.attributes.add(key="service.name", value=any_value(pod.name))
    rs.scope_spans.add().spans.extend(spans)
    send_from(pod.ip, agent.http_endpoint, request)


def spancost(*args: str) -> Any:
    result = subprocess.run(  # noqa: S603 - our own CLI
        [str(SPANCOST), *args, "--json"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_the_node_bill_split_to_transactions_untraced_and_idle(
    cluster: Cluster, sink: OtlpSink, collector: Start, tmp_path: Path
) -> None:
    database = tmp_path / "totals.db"
    config = agent_config(
        sink.port,
        socket_dir() / "s.sock",
        f"sqlite:///{database}",
        by_transaction={"checkout": "retail", "search": "retail"},
        owner_domains={"shop": "retail", "data": "storage"},
    )
    totals = config["extensions"]["python"]["sinks"]["totals"]["config"]
    totals["maintenance_interval"] = "500ms"
    totals["allocation"] = {
        "node_facts": {"kubernetes": {"node_name": NODE, "auth_type": "kubeConfig"}}
    }
    env = {**os.environ, "K8S_NODE_NAME": NODE, "KUBECONFIG": str(cluster.kubeconfig)}
    agent = collector(config, env=env)
    for _ in range(3):
        trace = os.urandom(16)
        send(agent, cluster.web, [span(trace, "checkout", root=True, seconds=2.0)])
        send(agent, cluster.worker, [span(trace, "charge", root=False, seconds=0.5)])
    send(agent, cluster.web, [span(os.urandom(16), "search", root=True, seconds=1.0)])
    sink.wait_spans(7, timeout=30)
    url = f"sqlite://{database}"
    window = ["--database-url", url, "--since", "2h"]

    def reported() -> bool:
        lines = spancost("report", *window, "--reconcile")
        allocation = spancost("report", *window)["allocation"]
        return bool(lines) and allocation is not None and len(allocation["transactions"]) == 2

    wait_for(reported, 30, "the sink to report usage and the stored spans to be allocated")
    # Let the node run a little longer, and report it: the bill grows, and still adds up.
    # Then stop the agent, so that both reads below see the same usage.
    time.sleep(1.5)
    agent.stop()
    lines = spancost("report", *window, "--reconcile")
    assert {line["node"] for line in lines} == {NODE}
    for line in lines:
        assert line["bill"] > 0
        assert (line["price_source"], line["unpriced_reason"]) == ("bundled", None)
        assert line["difference"] == pytest.approx(0.0, abs=1e-12)
    bill = sum(line["bill"] for line in lines)
    allocation = spancost("report", *window)["allocation"]
    assert allocation["bill"] == pytest.approx(bill, rel=1e-9)
    parts = allocation["transactions_total"] + allocation["untraced_total"]
    assert parts + allocation["idle"]["cost"] == pytest.approx(allocation["bill"], rel=1e-9)
    transactions = {item["name"]: item for item in allocation["transactions"]}
    assert set(transactions) == {"checkout", "search"}
    assert transactions["checkout"]["requests"] == pytest.approx(6)  # 3 on web, 3 on worker
    untraced = {item["name"]: item for item in allocation["untraced"]}
    if len({line["hour"] for line in lines}) == 1:
        assert set(untraced) == {"data/Pod/postgres"}
    else:  # the run crossed an hour: web and worker ran idle in the first one
        assert set(untraced) <= {"data/Pod/postgres", "shop/Pod/web", "shop/Pod/worker"}
        assert "data/Pod/postgres" in untraced
    assert {item["name"] for item in allocation["domains"]} == {"retail", "storage"}
    # The shares by requests: the node weighs 9 x 2 + 8 = 26; the three pods 11, 5.5 and
    # 4.25 of it while they run (they started before the node's agent reported), so idle
    # is at least 26 - 20.75 of 26 of the bill.
    assert allocation["idle"]["cost"] >= bill * 5.25 / 26 * 0.99
    storage = next(item for item in allocation["domains"] if item["name"] == "storage")
    assert storage["cost"] == pytest.approx(untraced["data/Pod/postgres"]["cost"])
