"""Priced out of the box: spans that carry only ``service.name``, priced as the node they
ran on, by the shipped agent config, end to end.

A real kube-apiserver (tests/kube/harness.py) holds EKS-like Nodes (well-known labels,
an ``aws://`` provider ID, allocatable resources) and a pod bound to each, whose
``status.podIP`` is a loopback address of its own. For each node the real collector runs
the shipped agent's processors (configs/daemonset.yaml) as that node's agent
(``K8S_NODE_NAME``): ``k8s_attributes`` identifies the pod from the connection, and the
sidecar's ``spancost.cost`` watches the node with the shipped RBAC. Spans go over
OTLP/HTTP from the pod's address with nothing but ``service.name``.

The prices below are AWS's public us-east-1 Linux on-demand prices, written here
independently of spancost's bundled snapshot; a spot node without a live spot price
is priced at the on-demand price less the configured discount (0.7 by default).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from tests.e2e.harness import Collector, OtlpSink, attrs
from tests.e2e.kube import (
    Pod,
    agent_config,
    agent_kubeconfig,
    create_node,
    run_pod,
    send_from,
)
from tests.e2e.totals import any_value, socket_dir
from tests.kube.harness import KubeCluster, started_or_fail
from tests.waiting import wait_for

Start = Callable[..., Collector]

M5_XLARGE = 0.192
M6G_LARGE = 0.077
M5_LARGE = 0.096
SPOT_DISCOUNT = 0.7
SECONDS = 2
EKS_ON_DEMAND = {"eks.amazonaws.com/capacityType": "ON_DEMAND"}
POD_REQUESTS = {"cpu": "1", "memory": "2Gi"}
SHARE = (9 * 1 + 2) / (9 * 4 + 16)
"""What the pod reserves of its node (4 vCPU, 16 GiB; create_node's default), weighted
9 per vCPU and 1 per GiB: a span is charged that share of the node's price (the
immediate estimate; the totals store's allocation splits the node's real cost)."""


@dataclass(frozen=True)
class NodeSpec:
    name: str
    instance_type: str
    zone: str
    arch: str
    capacity: dict[str, str]
    pod_ip: str


ON_DEMAND = NodeSpec("ip-10-0-1-1", "m5.xlarge", "us-east-1a", "amd64", EKS_ON_DEMAND, "127.0.0.21")
SPOT = NodeSpec(
    "ip-10-0-1-2", "m5.xlarge", "us-east-1b", "amd64", {"karpenter.sh/capacity-type": "spot"},
    "127.0.0.22",
)  # fmt: skip
ARM = NodeSpec("ip-10-0-1-3", "m6g.large", "us-east-1c", "arm64", EKS_ON_DEMAND, "127.0.0.23")
RELABELLED = NodeSpec("ip-10-0-1-4", "m5.large", "us-east-1a", "amd64", EKS_ON_DEMAND, "127.0.0.24")
UNREACHABLE = NodeSpec(
    "ip-10-0-1-5", "m5.large", "us-east-1a", "amd64", EKS_ON_DEMAND, "127.0.0.25"
)
NODES = (ON_DEMAND, SPOT, ARM, RELABELLED, UNREACHABLE)


@dataclass(frozen=True)
class Cluster:
    kube: KubeCluster
    kubeconfig: Path
    pods: dict[str, Pod]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    kube = started_or_fail()
    try:
        pods = {}
        for spec in NODES:
            create_node(
                kube,
                spec.name,
                instance_type=spec.instance_type,
                zone=spec.zone,
                arch=spec.arch,
                labels=spec.capacity,
                instance_id=f"i-{spec.pod_ip[-2:]}abc",
            )
            pods[spec.name] = run_pod(
                kube, "shop", f"web-{spec.name}", ip=spec.pod_ip, node=spec.name,
                requests=POD_REQUESTS,
            )  # fmt: skip
        kubeconfig = agent_kubeconfig(kube, tmp_path_factory.mktemp("kube") / "config")
        yield Cluster(kube, kubeconfig, pods)
    finally:
        kube.stop()


@dataclass
class Agent:
    collector: Collector
    sink: OtlpSink
    node: NodeSpec
    sent: int = 0

    def send(self) -> dict[str, Any]:
        """One server span of SECONDS from the node's pod, with only ``service.name``;
        its resource's and its own attributes as the backend received them."""
        self.sent += 1
        start = time.time_ns() - SECONDS * 1_000_000_000
        span = trace_pb2.Span(
            trace_id=os.urandom(16),
            span_id=os.urandom(8),
            name="GET /checkout",
            kind=trace_pb2.Span.SPAN_KIND_SERVER,
            start_time_unix_nano=start,
            end_time_unix_nano=start + SECONDS * 1_000_000_000,
        )
        request = trace_service_pb2.ExportTraceServiceRequest()
        rs = request.resource_spans.add()
        rs.resource.attributes.add(key="service.name", value=any_value("web"))
        rs.scope_spans.add().spans.append(span)
        send_from(self.node.pod_ip, self.collector.http_endpoint, request)
        self.sink.wait_spans(self.sent, timeout=30)
        ((resource, received),) = [
            (rs, s) for rs, _, s in self.sink.spans() if s.span_id == span.span_id
        ]
        return {**attrs(resource.resource.attributes), **attrs(received.attributes)}


@pytest.fixture
def agent(
    cluster: Cluster, sink: OtlpSink, collector: Start, tmp_path: Path, request: Any
) -> Agent:
    node: NodeSpec = request.param
    config = agent_config(
        sink.port,
        socket_dir() / "s.sock",
        f"sqlite:///{tmp_path / 'totals.db'}",
        by_transaction={},
        owner_domains={"shop": "retail"},
    )
    env = {**os.environ, "K8S_NODE_NAME": node.name, "KUBECONFIG": str(cluster.kubeconfig)}
    return Agent(collector(config, env=env), sink, node)


def hourly(span: dict[str, Any]) -> float:
    return float(span["cost.usd"]) * 3600 / SECONDS


@pytest.mark.parametrize(
    ("agent", "instance_type", "price", "model"),
    [
        (ON_DEMAND, "m5.xlarge", M5_XLARGE, "ec2.on_demand.pod_share.duration"),
        (SPOT, "m5.xlarge", M5_XLARGE * (1 - SPOT_DISCOUNT), "ec2.spot.pod_share.duration"),
        (ARM, "m6g.large", M6G_LARGE, "ec2.on_demand.pod_share.duration"),
    ],
    indirect=["agent"],
    ids=["on-demand", "spot", "arm64"],
)
def test_a_span_with_only_its_service_name_is_priced_as_its_node(
    agent: Agent, instance_type: str, price: float, model: str
) -> None:
    span = agent.send()
    assert span["k8s.node.name"] == agent.node.name  # k8s_attributes found the pod
    assert span["k8s.namespace.name"] == "shop"
    assert span["cost.instance_type"] == instance_type
    assert span["cost.model"] == model
    assert hourly(span) == pytest.approx(price * SHARE, rel=1e-9)
    assert (
        agent.collector.metric("otelcol_processor_python_plugin_events", event="node_facts") == 0
    ), "node facts were missing or stale"


@pytest.mark.parametrize("agent", [RELABELLED], indirect=True, ids=["relabelled"])
def test_a_relabelled_node_is_priced_anew(agent: Agent, cluster: Cluster) -> None:
    assert agent.send()["cost.model"] == "ec2.on_demand.pod_share.duration"
    with cluster.kube.api_client() as api:
        client.CoreV1Api(api).patch_node(
            RELABELLED.name, {"metadata": {"labels": {"eks.amazonaws.com/capacityType": "SPOT"}}}
        )
    relabelled = time.monotonic()
    # The watch delivers the change within moments; every span sent after it is spot.
    wait_for(
        lambda: agent.send()["cost.model"] == "ec2.spot.pod_share.duration",
        10,
        "a span priced as spot after the node was relabelled",
        interval=0.2,
    )
    assert time.monotonic() - relabelled < 10
    span = agent.send()
    assert hourly(span) == pytest.approx(M5_LARGE * (1 - SPOT_DISCOUNT) * SHARE, rel=1e-9)


@pytest.mark.parametrize("agent", [UNREACHABLE], indirect=True, ids=["unreachable"])
def test_an_unreachable_api_keeps_the_last_facts_and_says_so(
    agent: Agent, cluster: Cluster
) -> None:
    events = "otelcol_processor_python_plugin_events"
    assert agent.send()["cost.instance_type"] == "m5.large"
    assert agent.collector.metric(events, event="node_facts", reason="stale") == 0
    cluster.kube.stop_apiserver()
    try:
        wait_for(
            lambda: "the Kubernetes API cannot be reached" in agent.collector.log(),
            30,
            "the sidecar to notice the API is gone",
        )
        span = agent.send()
        assert span["cost.instance_type"] == "m5.large"  # the last known facts
        assert hourly(span) == pytest.approx(M5_LARGE * SHARE, rel=1e-9)
        assert agent.collector.metric(events, event="node_facts", reason="stale") == 1
    finally:
        cluster.kube.start_apiserver()
    wait_for(
        lambda: all(
            f"the Kubernetes API answers again for {kind}" in agent.collector.log()
            for kind in ("node", "pods")
        ),
        60,
        "the sidecar to reach the API again, for the node and its pods",
    )
    assert agent.send()["cost.instance_type"] == "m5.large"
    assert agent.collector.metric(events, event="node_facts", reason="stale") == 1
