"""`AllocationStore.allocation_by_node`, the FOCUS export's read, against SQLite and a real
PostgreSQL (each test on a fresh database of each): the worked example per node, a
second node beside it, per-request prices, and the split of other weights told apart."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Protocol

import pytest

from spancost.allocation.core import Weights
from spancost.allocation.pricing import NodePrice
from spancost.allocation.usage import NodeUsage, PodUsage
from spancost.focus import split_differs
from spancost.store import SQLiteStore
from spancost.store.base import AllocationStore, NodeAllocation, TotalsStore
from spancost.store.postgres import PostgresStore
from tests.allocation_data import (
    CONFIG,
    EXPECTED,
    HOUR,
    HOUR_NS,
    M5_LARGE,
    NODE,
    NODE_PRICE,
    NOW,
    PODS,
    by_line,
    hand_case_spans,
    segment,
    write_spans,
)
from tests.pg import create_database

SECOND_NODE = NodeUsage(HOUR_NS, "ip-10-0-1-6", 1800.0, "us-east-1", "m5.large", "linux",
                        "on_demand", "us-east-1b", 2.0, 8.0)  # fmt: skip
SECOND_POD = PodUsage(HOUR_NS, "web-2", SECOND_NODE.node, 1800.0, 1.0, 2.0, "shop",
                      "Deployment/web")  # fmt: skip
WEB_2 = 11 * M5_LARGE / 26 / 2  # the worked example's web, for half an hour
UNTIL = HOUR + timedelta(minutes=59)  # the worked example's hour, whole


class Store(TotalsStore, AllocationStore, Protocol):
    """What these tests need of a store."""


@pytest.fixture(params=["sqlite", "postgres"])
def fresh(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Callable[[], Store]:
    """Opens a store on a new, empty database of the kind the test runs on."""
    if request.param == "sqlite":

        def sqlite() -> Store:
            store = SQLiteStore(Path(tmp_path_factory.mktemp("focus") / "totals.db"), CONFIG)
            store.migrate()
            return store

        return sqlite
    server: str = request.getfixturevalue("pg_server")

    def postgres() -> Store:
        store = PostgresStore(create_database(server, "focus"), CONFIG)
        store.migrate()
        return store

    return postgres


@pytest.fixture
def store(fresh: Callable[[], Store]) -> Iterator[Store]:
    opened = fresh()
    yield opened
    opened.close()


def per_node(allocation: NodeAllocation) -> dict[tuple[str, str, str], float]:
    """{(node, kind, transaction or workload): usd}."""
    found: dict[tuple[str, str, str], float] = defaultdict(float)
    for share in allocation.shares:
        label = share.transaction if share.kind == "transaction" else share.workload
        found[(share.node, share.kind, label)] += share.usd
    return dict(found)


def test_the_worked_example_per_node(store: Store) -> None:
    write_spans(store, hand_case_spans())
    store.write_usage([(NODE, NODE_PRICE)], PODS, NOW)
    store.allocate()
    allocation = store.allocation_by_node(HOUR, UNTIL)
    got = per_node(allocation)
    assert got == pytest.approx(
        {(NODE.node, kind, label): usd for (kind, label), usd in EXPECTED.items()}, rel=1e-12
    )
    assert {share.hour for share in allocation.shares} == {HOUR}
    checkout = next(s for s in allocation.shares if s.transaction == "checkout")
    assert (checkout.domain, checkout.environment) == ("retail", "production")
    postgres = next(s for s in allocation.shares if s.kind == "untraced")
    assert (postgres.namespace, postgres.workload) == ("data", "StatefulSet/postgres")
    (node,) = allocation.nodes
    assert (node.hour, node.node, node.seconds) == (HOUR, NODE.node, 3600.0)
    assert (node.instance_type, node.region, node.zone) == ("m5.large", "us-east-1", "us-east-1a")
    assert (node.hourly_usd, node.price_source, node.price_as_of) == (
        M5_LARGE, "bundled", "2025-01-01")  # fmt: skip
    assert node.price_model == "ec2.on_demand.duration"
    assert node.bill_usd == pytest.approx(M5_LARGE)
    assert allocation.per_request == []
    # The next hour holds nothing.
    later = store.allocation_by_node(HOUR + timedelta(hours=1), HOUR + timedelta(hours=2))
    assert later == NodeAllocation([], [], [])


def test_two_nodes_apart_add_up_to_the_stored_allocation(store: Store) -> None:
    """checkout also ran on web-2, on a second node for half the hour: its share of each
    node is apart, and summed they are the stored (over nodes) allocation."""
    served = [
        segment(n + 200, 1, pod="web-2", start_s=n * 300, seconds=60, root=True,
                transaction="checkout")
        for n in range(4)
    ]  # fmt: skip
    write_spans(store, [*hand_case_spans(), *served])
    store.write_usage([(NODE, NODE_PRICE), (SECOND_NODE, NODE_PRICE)], [*PODS, SECOND_POD], NOW)
    store.allocate()
    allocation = store.allocation_by_node(HOUR, UNTIL)
    got = per_node(allocation)
    assert got[(SECOND_NODE.node, "transaction", "checkout")] == pytest.approx(WEB_2)
    assert got[(SECOND_NODE.node, "idle", "")] == pytest.approx(M5_LARGE / 2 - WEB_2)
    assert got[(NODE.node, "transaction", "checkout")] == pytest.approx(
        EXPECTED[("transaction", "checkout")]
    )
    summed: dict[tuple[str, str], float] = defaultdict(float)
    for (_, kind, label), usd in got.items():
        summed[(kind, label)] += usd
    stored = by_line(store.allocated_totals(HOUR, UNTIL))
    assert summed == pytest.approx(stored, rel=1e-12)
    assert split_differs(allocation, store.reconcile(HOUR, UNTIL)) == []
    assert [node.node for node in allocation.nodes] == [NODE.node, SECOND_NODE.node]


def test_per_request_prices_by_hour_as_allocated(store: Store) -> None:
    invocation = segment(
        500, 1, pod="web", start_s=60, seconds=1, root=True, transaction="checkout"
    )._replace(
        pod=None,
        cost_usd=0.25,
    )
    write_spans(store, [*hand_case_spans(), invocation])
    store.write_usage([(NODE, NODE_PRICE)], PODS, NOW)
    store.allocate()
    allocation = store.allocation_by_node(HOUR, UNTIL)
    (priced,) = allocation.per_request
    assert (priced.hour, priced.domain, priced.transaction, priced.environment) == (
        HOUR, "retail", "checkout", "production")  # fmt: skip
    assert priced.usd == pytest.approx(0.25)
    stored = store.allocated_totals(HOUR, UNTIL)
    assert math.fsum(row.request_usd for row in stored) == pytest.approx(priced.usd)
    assert math.fsum(s.usd for s in allocation.shares) == pytest.approx(M5_LARGE, rel=1e-12)


def test_the_split_of_other_weights_is_told_apart(store: Store) -> None:
    """The sink allocated with weights 1:1; read back with 9:1 the split differs from
    the stored one (the bill does not); with 1:1 it is the stored one."""
    write_spans(store, hand_case_spans())
    store.write_usage([(NODE, NODE_PRICE)], PODS, NOW)
    even = Weights(1.0, 1.0)
    store.allocate(even)
    reconcile = store.reconcile(HOUR, UNTIL)
    nine_to_one = store.allocation_by_node(HOUR, UNTIL)
    assert split_differs(nine_to_one, reconcile) == [(HOUR, NODE.node)]
    assert split_differs(store.allocation_by_node(HOUR, UNTIL, even), reconcile) == []
    assert math.fsum(s.usd for s in nine_to_one.shares) == pytest.approx(M5_LARGE, rel=1e-12)


def test_an_unpriced_node_is_listed_and_not_split(store: Store) -> None:
    write_spans(store, hand_case_spans())
    store.write_usage([(NODE, NodePrice(None, unpriced_reason="unknown_instance_type"))], PODS,
                      NOW)  # fmt: skip
    store.allocate()
    allocation = store.allocation_by_node(HOUR, UNTIL)
    (node,) = allocation.nodes
    assert (node.hourly_usd, node.bill_usd) == (None, None)
    assert allocation.shares == []
