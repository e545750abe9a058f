"""Who pays is not the sender's choice, end to end.

A real kube-apiserver (tests/kube/harness.py) holds two namespaces, ``shop`` and
``platform``, each with a pod on this test's node whose ``status.podIP`` is a loopback
address of its own. The real collector runs the shipped agent's processors
(configs/daemonset.yaml: ``resource/strip_sender_k8s``, ``k8s_attributes`` reading the
API as the shipped ServiceAccount, ``python/spancost``) and the shipped totals naming
(``domains.owner`` on ``k8s.namespace.name``) into the real sidecar's totals sink and a
real PostgreSQL. Spans go over OTLP/HTTP from a socket bound to a pod's address, so the
collector sees that pod's connection. Each test checks the stored trace rows
(transaction, domain, cost) and ``spancost report --json`` per domain.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from kubernetes import client
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from tests.e2e.harness import ROOT, Collector, OtlpSink, attrs
from tests.e2e.kube import AGENT_CONFIG, Pod, agent_config, agent_kubeconfig, run_pod, send_from
from tests.e2e.totals import EC2, any_value, new_database, pg, reference, socket_dir
from tests.kube.harness import started_or_fail
from tests.waiting import wait_for

Start = Callable[..., Collector]

NODE = "spancost-e2e-node"
SHOP_IP, PLATFORM_IP, NO_POD_IP, ANNOTATED_IP = "127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"
SHOP_DOMAIN, PLATFORM_DOMAIN = "retail", "platform-eng"
BY_TRANSACTION = {"checkout": SHOP_DOMAIN, "nightly-sync": PLATFORM_DOMAIN}
"""The transaction names senders use; ``checkout`` is the shop's."""
OWNER_DOMAINS = {"shop": SHOP_DOMAIN, "platform": PLATFORM_DOMAIN}
UNATTRIBUTED, CONTESTED = "(unattributed)", "(contested)"
DERIVED = ("k8s.namespace.name", "k8s.pod.name", "k8s.pod.uid", "k8s.node.name", "k8s.cluster.uid")
"""What the shipped k8s_attributes adds for a pod of this test's node (the RBAC's reach)."""


@dataclass(frozen=True)
class Node:
    kubeconfig: Path
    cluster_uid: str
    """The kube-system namespace's UID: k8s.cluster.uid, read with the ``namespaces`` rule."""
    shop: Pod
    platform: Pod
    annotated: Pod
    """A platform pod annotated as shop (and with its environment) through otel annotations."""


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    cluster = started_or_fail()
    try:
        with cluster.api_client() as api:
            kube_system = client.CoreV1Api(api).read_namespace("kube-system").metadata
        assert kube_system is not None
        yield Node(
            kubeconfig=agent_kubeconfig(cluster, tmp_path_factory.mktemp("kube") / "config"),
            cluster_uid=str(kube_system.uid),
            shop=run_pod(cluster, "shop", "web", ip=SHOP_IP, node=NODE),
            platform=run_pod(cluster, "platform", "jobs", ip=PLATFORM_IP, node=NODE),
            annotated=run_pod(
                cluster,
                "platform",
                "annotated",
                ip=ANNOTATED_IP,
                node=NODE,
                annotations={
                    "resource.opentelemetry.io/k8s.namespace.name": "shop",
                    "resource.opentelemetry.io/deployment.environment.name": "prod",
                },
            ),
        )
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def postgres() -> Iterator[Any]:
    with pg.running_postgres() as server:
        yield server


@dataclass
class Agent:
    collector: Collector
    sink: OtlpSink
    url: str

    def send(self, address: str, resource: dict[str, str], spans: list[trace_pb2.Span]) -> None:
        req = trace_service_pb2.ExportTraceServiceRequest()
        rs = req.resource_spans.add()
        for key, value in resource.items():
            rs.resource.attributes.add(key=key, value=any_value(value))
        rs.scope_spans.add().spans.extend(spans)
        send_from(address, self.collector.http_endpoint, req)


@pytest.fixture
def agent(node: Node, postgres: Any, sink: OtlpSink, collector: Start) -> Agent:
    url = new_database(postgres)
    config = agent_config(
        sink.port,
        socket_dir() / "s.sock",
        url,
        by_transaction=BY_TRANSACTION,
        owner_domains=OWNER_DOMAINS,
    )
    env = {**os.environ, "K8S_NODE_NAME": NODE, "KUBECONFIG": str(node.kubeconfig)}
    # wait_for_metadata (shipped): the receivers open once this node's pods are known.
    return Agent(collector(config, env=env), sink, url)


def span(
    trace_id: bytes,
    *,
    start_ns: int,
    transaction: str | None = None,
    parent: trace_pb2.Span | None = None,
    duration_ns: int = 200_000_000,
) -> trace_pb2.Span:
    """A server span (a root unless `parent`), naming `transaction` if given."""
    out = trace_pb2.Span(
        trace_id=trace_id,
        span_id=os.urandom(8),
        parent_span_id=b"" if parent is None else parent.span_id,
        name="POST /checkout",
        kind=trace_pb2.Span.SPAN_KIND_SERVER,
        start_time_unix_nano=start_ns,
        end_time_unix_nano=start_ns + duration_ns,
    )
    if transaction is not None:
        out.attributes.add(key="business.transaction", value=any_value(transaction))
    return out


@dataclass(frozen=True)
class Row:
    transaction: str | None
    domain: str | None
    cost: float
    owner: str | None


def stored(agent: Agent, spans: int, names: dict[bytes, str]) -> dict[str, Row]:
    """Every trace row, once `spans` spans are stored (and all reached the test's sink,
    whose ``cost.usd`` each row's cost must add up to), keyed by `names` (trace id ->
    what the test calls it; any other trace by its hex id)."""

    def read() -> dict[bytes, tuple[Row, int]]:
        with psycopg.connect(agent.url) as connection:
            rows = connection.execute(
                "SELECT trace_id, transaction_name, domain, cost_usd, root_owner, span_count"
                " FROM traces"
            ).fetchall()
        return {
            bytes.fromhex(trace): (Row(name, domain, float(cost), owner), count)
            for trace, name, domain, cost, owner, count in rows
        }

    wait_for(
        lambda: sum(count for _, count in read().values()) >= spans,
        90,
        f"{spans} spans in the totals store",
        interval=0.1,
    )
    agent.sink.wait_spans(spans)
    expected = reference(agent.sink)
    got: dict[str, Row] = {}
    for trace, (row, _count) in read().items():
        assert math.isclose(row.cost, expected.cost_by_trace[trace.hex()], rel_tol=1e-9), trace
        assert row.cost > 0, "priced: the EC2 resource is charged by duration"
        got[names.get(trace, trace.hex())] = row
    return got


def domain_spend(url: str) -> dict[str, float]:
    """Cost per domain as ``spancost report --json`` prints it."""
    result = subprocess.run(  # noqa: S603 - our own CLI
        [str(ROOT / ".venv" / "bin" / "spancost"), "report", "--json", "--since", "1h"],
        env={**os.environ, "DATABASE_URL": url},
        capture_output=True,
        text=True,
        check=True,
    )
    document = json.loads(result.stdout)
    return {figure["name"]: figure["cost"] for figure in document["domains"]}


def resource_at_sink(agent: Agent, trace_id: bytes) -> dict[str, Any]:
    """The resource of a trace's spans as the collector sent them on (one sender)."""
    resources = [
        attrs(rs.resource.attributes)
        for rs, _ss, sent in agent.sink.spans()
        if sent.trace_id == trace_id
    ]
    assert resources and all(r == resources[0] for r in resources), resources
    return resources[0]


# -- the cases ------------------------------------------------------------------------


def test_a_transaction_name_picks_a_domain_only_among_the_senders_own(
    node: Node, agent: Agent
) -> None:
    """A root from the platform pod naming the shop's transaction is charged to platform."""
    start = time.time_ns() - 1_000_000_000
    shop, platform = os.urandom(16), os.urandom(16)
    agent.send(SHOP_IP, EC2, [span(shop, start_ns=start, transaction="checkout")])
    agent.send(PLATFORM_IP, EC2, [span(platform, start_ns=start, transaction="checkout")])

    rows = stored(agent, 2, {shop: "shop's", platform: "platform's"})
    assert rows == {
        "shop's": Row("checkout", SHOP_DOMAIN, rows["shop's"].cost, "shop"),
        "platform's": Row("checkout", PLATFORM_DOMAIN, rows["platform's"].cost, "platform"),
    }
    assert domain_spend(agent.url) == pytest.approx(
        {SHOP_DOMAIN: rows["shop's"].cost, PLATFORM_DOMAIN: rows["platform's"].cost}, rel=1e-9
    )


def sent_cost(agent: Agent, spans: list[trace_pb2.Span]) -> float:
    """The ``cost.usd`` the collector put on `spans` (at the test's sink)."""
    wanted = {span.span_id for span in spans}
    costs = [
        kv.value.double_value
        for _rs, _ss, sent in agent.sink.spans()
        if sent.span_id in wanted
        for kv in sent.attributes
        if kv.key == "cost.usd"
    ]
    assert len(costs) == len(spans)
    return math.fsum(costs)


@pytest.mark.parametrize(
    "order", ["back to back", "the claim after the shop's trace is stored", "the claim first"]
)
def test_a_second_root_from_another_namespace_makes_the_trace_contested(
    node: Node, agent: Agent, order: str
) -> None:
    """The platform pod claims to be the root (no parent, earlier start) of a trace the
    shop pod started: the trace is named (contested), labelled nobody's, whichever part
    the store holds first; and each namespace pays for the spans it sent, no more."""
    start = time.time_ns() - 1_000_000_000
    trace = os.urandom(16)
    root = span(trace, start_ns=start, transaction="checkout")
    shop = (SHOP_IP, [root, span(trace, start_ns=start + 1000, parent=root)], SHOP_DOMAIN)
    claim = span(trace, start_ns=start - 1_000_000, transaction="nightly-sync")
    platform = (PLATFORM_IP, [claim], PLATFORM_DOMAIN)
    first, second = (platform, shop) if order == "the claim first" else (shop, platform)
    agent.send(first[0], EC2, first[1])
    if order != "back to back":
        stored(agent, len(first[1]), {})
        assert domain_spend(agent.url).keys() == {first[2]}, "one sender: it pays"
    agent.send(second[0], EC2, second[1])

    rows = stored(agent, 3, {trace: "contested"})
    row = rows["contested"]
    # The claimant's span is the earliest root, so the row names its owner.
    assert rows == {"contested": Row(CONTESTED, UNATTRIBUTED, row.cost, "platform")}
    assert domain_spend(agent.url) == pytest.approx(
        {SHOP_DOMAIN: sent_cost(agent, shop[1]), PLATFORM_DOMAIN: sent_cost(agent, [claim])},
        rel=1e-9,
    )


def test_a_span_added_to_another_namespaces_trace_is_charged_to_its_sender(
    node: Node, agent: Agent
) -> None:
    """The platform pod adds an expensive child (a big LLM call) to a trace the shop pod
    started, under the shop's root (its id is in every traceparent the shop sends): the
    trace's total holds it, but the platform pays for it, not the shop."""
    start = time.time_ns() - 1_000_000_000
    trace = os.urandom(16)
    root = span(trace, start_ns=start, transaction="checkout")
    agent.send(SHOP_IP, EC2, [root])
    child = span(trace, start_ns=start + 1000, parent=root)
    child.kind = trace_pb2.Span.SPAN_KIND_CLIENT
    for key, value in (
        ("gen_ai.provider.name", "openai"),
        ("gen_ai.request.model", "gpt-4o"),
        ("gen_ai.usage.input_tokens", 1_000_000),
        ("gen_ai.usage.output_tokens", 500_000),
    ):
        child.attributes.add(key=key, value=any_value(value))
    agent.send(PLATFORM_IP, EC2, [child])

    rows = stored(agent, 2, {trace: "shop's"})
    row = rows["shop's"]
    assert rows == {"shop's": Row("checkout", SHOP_DOMAIN, row.cost, "shop")}
    injected = sent_cost(agent, [child])
    assert injected > 5, "the child was priced (gpt-4o: 2.5 USD/M in, 10 USD/M out)"
    assert row.cost == pytest.approx(sent_cost(agent, [root]) + injected, rel=1e-9)
    assert domain_spend(agent.url) == pytest.approx(
        {SHOP_DOMAIN: sent_cost(agent, [root]), PLATFORM_DOMAIN: injected}, rel=1e-9
    )


def test_a_namespace_the_sender_names_itself_is_not_who_pays(node: Node, agent: Agent) -> None:
    """The identity a sender writes on its resource (the shop's namespace and pod) is
    removed before k8s_attributes; only what the connection says remains."""
    start = time.time_ns() - 1_000_000_000
    claimed = {
        **EC2,
        "k8s.namespace.name": "shop",
        "k8s.pod.name": node.shop.name,
        "k8s.pod.uid": node.shop.uid,
        "k8s.pod.ip": node.shop.ip,
        "k8s.node.name": NODE,
    }
    from_platform, from_nowhere = os.urandom(16), os.urandom(16)
    agent.send(PLATFORM_IP, claimed, [span(from_platform, start_ns=start, transaction="checkout")])
    agent.send(NO_POD_IP, claimed, [span(from_nowhere, start_ns=start, transaction="checkout")])

    rows = stored(agent, 2, {from_platform: "from platform", from_nowhere: "from no pod"})
    platform_cost, nowhere_cost = rows["from platform"].cost, rows["from no pod"].cost
    assert rows == {
        "from platform": Row("checkout", PLATFORM_DOMAIN, platform_cost, "platform"),
        "from no pod": Row("checkout", UNATTRIBUTED, nowhere_cost, None),
    }
    assert domain_spend(agent.url) == pytest.approx(
        {PLATFORM_DOMAIN: platform_cost, UNATTRIBUTED: nowhere_cost}, rel=1e-9
    )
    platform = resource_at_sink(agent, from_platform)
    assert {key: platform.get(key) for key in DERIVED} == {
        "k8s.namespace.name": "platform",
        "k8s.pod.name": node.platform.name,
        "k8s.pod.uid": node.platform.uid,
        "k8s.node.name": NODE,
        "k8s.cluster.uid": node.cluster_uid,
    }
    assert "k8s.pod.ip" not in platform  # not extracted: the sender's is gone too
    nowhere = resource_at_sink(agent, from_nowhere)
    assert not {key for key in nowhere if key.startswith("k8s.")} - {"k8s.cluster.name"}, nowhere


def test_a_connection_from_no_pod_is_unattributed(node: Node, agent: Agent) -> None:
    start = time.time_ns() - 1_000_000_000
    trace = os.urandom(16)
    agent.send(NO_POD_IP, EC2, [span(trace, start_ns=start, transaction="checkout")])

    rows = stored(agent, 1, {trace: "from no pod"})
    cost = rows["from no pod"].cost
    assert rows == {"from no pod": Row("checkout", UNATTRIBUTED, cost, None)}
    assert domain_spend(agent.url) == pytest.approx({UNATTRIBUTED: cost}, rel=1e-9)


def test_a_pod_annotation_does_not_rename_its_namespace(node: Node, agent: Agent) -> None:
    """A platform pod annotated ``resource.opentelemetry.io/k8s.namespace.name: shop`` is
    still platform's; its environment annotation is still read."""
    start = time.time_ns() - 1_000_000_000
    trace = os.urandom(16)
    resource = {k: v for k, v in EC2.items() if k != "deployment.environment.name"}
    agent.send(ANNOTATED_IP, resource, [span(trace, start_ns=start, transaction="checkout")])

    rows = stored(agent, 1, {trace: "annotated"})
    cost = rows["annotated"].cost
    assert rows == {"annotated": Row("checkout", PLATFORM_DOMAIN, cost, "platform")}
    assert domain_spend(agent.url) == pytest.approx({PLATFORM_DOMAIN: cost}, rel=1e-9)
    seen = resource_at_sink(agent, trace)
    assert (seen["k8s.pod.name"], seen["deployment.environment.name"]) == ("annotated", "prod")


def test_the_shipped_agent_trusts_only_what_it_derives() -> None:
    """The settings the cases above rely on, named, so that a change to one of them
    points here as well as at the case it breaks."""
    config = yaml.safe_load(AGENT_CONFIG.read_text())
    processors = config["processors"]
    k8s = processors["k8s_attributes"]
    assert k8s["pod_association"] == [{"sources": [{"from": "connection"}]}]
    assert not k8s["extract"].get("otel_annotations")
    assert not any(
        rule.get("tag_name", "").startswith("k8s.") or "key_regex" in rule
        for rule in k8s["extract"].get("annotations", []) + k8s["extract"].get("labels", [])
    )
    pipeline = config["service"]["pipelines"]["traces"]["processors"]
    strip = processors["resource/strip_sender_k8s"]["attributes"]
    assert strip == [{"pattern": r"^k8s\.", "action": "delete"}]
    assert "resource/strip_sender_k8s" in pipeline
    assert pipeline.index("resource/strip_sender_k8s") < pipeline.index("k8s_attributes")
    totals = config["extensions"]["python"]["sinks"]["totals"]["config"]
    assert totals["domains"]["owner"]["attribute"] == "k8s.namespace.name"
