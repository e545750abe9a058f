"""The totals sink's usage reporter: the watched node and its pods, priced and written,
and the hours allocated (spancost.allocation.reporter), into a real SQLite store."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from spancost.allocation.reporter import UsageReporter
from spancost.errors import ConfigError
from spancost.facts.host import HostFacts
from spancost.facts.model import NodeFacts, PodFacts, Resources
from spancost.facts.source import NodeFactsSource
from spancost.store import SQLiteStore
from spancost.totals import TotalsConfig

HOUR = dt.datetime(2025, 1, 31, 11, tzinfo=dt.UTC)
NOW = HOUR + dt.timedelta(minutes=30)
GIB = 1 << 30
NODE = NodeFacts(
    name="ip-10-0-1-5",
    provider="aws",
    instance_type="m5.large",
    region="us-east-1",
    zone="us-east-1a",
    os="linux",
    capacity="on_demand",
    capacity_total=Resources(cpu=2.0, memory=8 * GIB),
    created=HOUR - dt.timedelta(minutes=20),
)
WEB = PodFacts(
    uid="web-uid", namespace="shop", name="web-7d-x", node=NODE.name,
    workload_kind="Deployment", workload_name="web",
    requests=Resources(cpu=1.0, memory=2 * GIB), started=HOUR - dt.timedelta(minutes=10),
)  # fmt: skip


class Watch:
    node_name = NODE.name
    version = 1
    stale_since = None

    def __init__(self, node: NodeFacts | None, pods: list[PodFacts]) -> None:
        self._node, self._pods = node, {p.uid: p for p in pods}
        self.closed = False

    def node(self) -> NodeFacts | None:
        return self._node

    def pods(self) -> dict[str, PodFacts]:
        return self._pods

    def close(self) -> None:
        self.closed = True


class Host:
    version = 1

    def __init__(self, facts: HostFacts) -> None:
        self.facts = facts

    def close(self) -> None:
        pass


def reporter(source: NodeFactsSource, **config: Any) -> UsageReporter:
    return UsageReporter(config, now=lambda: NOW, node_facts=source)


@pytest.fixture
def store(tmp_path: Path) -> SQLiteStore:
    opened = SQLiteStore(tmp_path / "t.db", TotalsConfig())
    opened.migrate()
    return opened


def test_the_node_and_its_pods_priced_written_and_allocated(store: SQLiteStore) -> None:
    watch = Watch(NODE, [WEB])
    usage = reporter(NodeFactsSource(watch, []))
    nodes, pods = usage.usage(NOW)
    assert [(n.hour_ns, n.seconds) for n, _ in nodes] == [
        (int((HOUR - dt.timedelta(hours=1)).timestamp()) * 10**9, 1200.0),
        (int(HOUR.timestamp()) * 10**9, 1800.0),
    ]
    assert {price.hourly_usd for _, price in nodes} == {0.096}  # the bundled m5.large
    assert {price.source for _, price in nodes} == {"bundled"}
    assert [(p.pod, p.seconds) for p in pods] == [("web-uid", 600.0), ("web-uid", 1800.0)]
    assert usage.report(store, NOW) == 2  # both hours allocated
    lines = store.reconcile(HOUR - dt.timedelta(hours=1), NOW)
    assert [round(line.bill_usd or 0, 9) for line in lines] == [0.096 / 3, 0.096 / 2]
    assert all(abs(line.difference) < 1e-15 for line in lines)
    # web weighs 9 + 2 of the node's 18 + 8, and ran 600 s of the first hour's 1200.
    untraced = [r for r in store.allocated_totals(HOUR, NOW) if r.kind == "untraced"]
    assert untraced[0].workload == "Deployment/web"
    assert untraced[0].usd == pytest.approx(0.096 * 11 / 26 / 2)
    usage.close()
    assert watch.closed


def test_a_spot_node_at_the_discount_and_no_node_yet(store: SQLiteStore) -> None:
    watch = Watch(
        NodeFacts(name=NODE.name, provider="aws", instance_type="m5.large", region="us-east-1",
                  capacity="spot", capacity_total=Resources(cpu=2.0, memory=8 * GIB),
                  created=HOUR),
        [],
    )  # fmt: skip
    nodes, _ = reporter(NodeFactsSource(watch, []), spot={"discount": 0.6}).usage(NOW)
    ((_, price),) = nodes
    assert price.hourly_usd == pytest.approx(0.096 * 0.4)
    assert price.model == "ec2.spot.duration"
    assert reporter(NodeFactsSource(Watch(None, []), [])).usage(NOW) == ([], [])


def test_an_ec2_host_is_one_pod(store: SQLiteStore) -> None:
    host = Host(
        HostFacts(source="ec2_metadata", platform="aws_ec2", instance_type="c6g.large",
                  region="us-east-1", instance_id="i-0abc", launched=HOUR)
    )  # fmt: skip
    usage = reporter(NodeFactsSource(None, [host]))
    assert usage.host_pod == "host/i-0abc"
    nodes, pods = usage.usage(NOW)
    assert [(n.node, n.seconds, p.hourly_usd) for n, p in nodes] == [("i-0abc", 1800.0, 0.068)]
    assert [(p.pod, p.seconds, p.workload) for p in pods] == [
        ("host/i-0abc", 1800.0, "Host/i-0abc")
    ]


@pytest.mark.parametrize(
    ("config", "key"),
    [
        ({}, "allocation.node_facts"),
        ({"weights": {"cpu": 1}}, "allocation.weights"),  # not configurable
        ({"spot": {"discount": 1}}, "allocation.spot.discount"),
        ({"other": 1}, "allocation.other"),
    ],
)
def test_config_errors_name_the_key(config: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as raised:
        UsageReporter(config, now=lambda: NOW)
    assert raised.value.key == key
