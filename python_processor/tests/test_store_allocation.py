"""The allocation through a store, SQLite and PostgreSQL alike (each test against a fresh
database of each): busy time kept with the traces and moved when they are named, usage
with its price, the hour allocated, reconciled and repriced."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spancost.allocation.core import Busy, NodeHour, PodHour, allocate
from spancost.allocation.pricing import NodePrice
from spancost.allocation.usage import NodeUsage, PodUsage, busy_of
from spancost.store import SQLiteStore
from spancost.store.base import AllocationStore, TotalsStore
from spancost.store.postgres import PostgresStore
from spancost.totals import TotalsConfig
from spancost.totals.aggregate import SpanContribution
from tests.allocation_data import (
    CONFIG,
    EXPECTED,
    HOUR,
    HOUR_NS,
    M5_LARGE,
    NODE,
    NODE_PRICE,
    NOW,
    OWNED,
    PODS,
    by_line,
    hand_case_spans,
    segment,
    write_spans,
)
from tests.pg import create_database


class Store(TotalsStore, AllocationStore, Protocol):
    """What these tests need of a store."""


@dataclass(frozen=True)
class Backend:
    """A kind of store, and where it gets a fresh database."""

    kind: str
    fresh: Callable[[], str]
    """A new, empty database: a file's path (SQLite) or a DSN (PostgreSQL)."""

    def open(self, database: str, config: TotalsConfig = CONFIG) -> Store:
        store: Store = (
            SQLiteStore(Path(database), config)
            if self.kind == "sqlite"
            else PostgresStore(database, config)
        )
        store.migrate()
        return store


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Backend:
    if request.param == "sqlite":
        return Backend("sqlite", lambda: str(tmp_path_factory.mktemp("alloc") / "totals.db"))
    server: str = request.getfixturevalue("pg_server")
    return Backend("postgres", lambda: create_database(server, "alloc"))


@pytest.fixture
def store(backend: Backend) -> Iterator[Store]:
    opened = backend.open(backend.fresh())
    yield opened
    opened.close()


def window() -> tuple[datetime, datetime]:
    return HOUR, HOUR + timedelta(minutes=59)


def test_the_hand_case_through_the_store(store: Store) -> None:
    write_spans(store, hand_case_spans())
    store.write_usage([(NODE, NODE_PRICE)], PODS, NOW)
    assert store.allocate() == 1
    assert store.allocate() == 0  # nothing changed since
    since, until = window()
    rows = store.allocated_totals(since, until)
    got = by_line(rows)
    assert got.keys() == EXPECTED.keys()
    for key, usd in EXPECTED.items():
        assert got[key] == pytest.approx(usd, rel=1e-12), key
    checkout = next(r for r in rows if r.transaction == "checkout")
    assert (checkout.domain, checkout.environment) == ("retail", "production")
    assert checkout.busy_seconds == pytest.approx(1500.0)
    assert checkout.segments == pytest.approx(24.0)  # 12 on web, 12 on worker
    (line,) = store.reconcile(since, until)
    assert line.node == NODE.node and line.bill_usd == pytest.approx(M5_LARGE)
    assert line.difference == pytest.approx(0.0, abs=1e-15)
    assert line.idle_usd == pytest.approx(EXPECTED[("idle", "")])
    assert (line.price_source, line.price_as_of) == ("bundled", "2025-01-01")


def test_replays_add_nothing(store: Store) -> None:
    spans = hand_case_spans()
    write_spans(store, spans)
    write_spans(store, spans[::-1])
    store.write_usage([(NODE, NODE_PRICE)], PODS, NOW)
    store.write_usage([(NODE._replace(seconds=1800.0), NODE_PRICE)], PODS[:1], NOW)  # earlier
    store.allocate()
    got = by_line(store.allocated_totals(*window()))
    for key, usd in EXPECTED.items():
        assert got[key] == pytest.approx(usd, rel=1e-12), key


def test_a_late_root_moves_the_busy_time(store: Store) -> None:
    """The worker's segments arrive before the web root that names the trace: they wait
    as pending, then move to checkout with the rest of the trace."""
    worker = segment(1, 2, pod="worker", start_s=10, seconds=25)
    root = segment(1, 1, pod="web", start_s=0, seconds=100, root=True, transaction="checkout")
    write_spans(store, [worker])
    store.write_usage([(NODE, NODE_PRICE)], PODS, NOW)
    store.allocate()
    pending = by_line(store.allocated_totals(*window()))
    assert ("transaction", "") in pending  # not named yet
    write_spans(store, [root])
    assert store.allocate() == 1
    named = by_line(store.allocated_totals(*window()))
    assert ("transaction", "") not in named
    assert named[("transaction", "checkout")] == pytest.approx(
        11 * M5_LARGE / 26 + 5.5 * M5_LARGE / 26 / 2
    )


def test_an_orphan_named_after_its_grace_moves_its_busy_time(store: Store) -> None:
    write_spans(store, [segment(1, 2, pod="worker", start_s=10, seconds=25)])
    store.write_usage([(NODE, NODE_PRICE)], PODS, NOW)
    assert store.attribute_orphans(NOW + timedelta(hours=1), timedelta(minutes=10), "(unattr)")
    store.allocate()
    got = by_line(store.allocated_totals(*window()))
    assert got[("transaction", "(unattr)")] == pytest.approx(5.5 * M5_LARGE / 26 / 2)


def test_owner_mode_charges_busy_time_and_untraced_pods_to_their_namespaces(
    backend: Backend,
) -> None:
    store = backend.open(backend.fresh(), OWNED)
    try:
        write_spans(store, hand_case_spans())
        store.write_usage([(NODE, NODE_PRICE)], PODS, NOW)
        store.allocate()
        rows = store.allocated_totals(*window())
        domains: dict[str, float] = {}
        for row in rows:
            domains[row.domain] = domains.get(row.domain, 0.0) + row.usd
        assert domains == pytest.approx(
            {
                "retail": EXPECTED[("transaction", "checkout")]
                + EXPECTED[("transaction", "search")],
                "storage": EXPECTED[("untraced", "StatefulSet/postgres")],
                "": EXPECTED[("idle", "")],
            }
        )
    finally:
        store.close()


def test_reprice_records_the_change_and_the_hour_adds_up_again(store: Store) -> None:
    write_spans(store, hand_case_spans())
    store.write_usage([(NODE, NODE_PRICE)], PODS, NOW)
    store.allocate()

    def cheaper(node: NodeUsage) -> NodePrice:
        return NodePrice(0.08, "aws_pricelist", "ec2.on_demand.duration", "2025-02-01")

    since, until = window()
    (changed,) = store.reprice(since, until, cheaper, NOW)
    assert (changed.node, changed.old_hourly_usd, changed.new_hourly_usd) == (
        NODE.node,
        0.096,
        0.08,
    )
    assert (changed.old_source, changed.new_source) == ("bundled", "aws_pricelist")
    assert store.reprice(since, until, cheaper, NOW) == []  # nothing left to change
    assert store.allocate() == 1
    got = by_line(store.allocated_totals(since, until))
    for key, usd in EXPECTED.items():
        assert got[key] == pytest.approx(usd * 0.08 / M5_LARGE, rel=1e-12), key
    (line,) = store.reconcile(since, until)
    assert line.bill_usd == pytest.approx(0.08)
    assert line.difference == pytest.approx(0.0, abs=1e-15)
    assert line.price_source == "aws_pricelist"


def test_per_request_prices_are_added_to_their_transaction(store: Store) -> None:
    """A Lambda invocation (no pod) and an LLM call on the web pod, priced per request,
    are added to checkout as they are (outside the node's bill), moved with the trace
    when its root names it, and the Lambda counts as a request."""
    lambda_call = segment(1, 3, pod="web", start_s=120, seconds=1)._replace(
        pod=None, cost_usd=0.002
    )
    llm_call = segment(1, 4, pod="web", start_s=130, seconds=2)._replace(
        segment=False, cost_usd=0.01
    )
    node_estimate = segment(1, 2, pod="worker", start_s=10, seconds=25)._replace(
        cost_usd=0.5,
        compute=True,  # a node's compute: the allocation's, not added
    )
    write_spans(store, [lambda_call, llm_call, node_estimate])
    store.write_usage([(NODE, NODE_PRICE)], PODS, NOW)
    store.allocate()
    (pending,) = [r for r in store.allocated_totals(*window()) if r.kind == "transaction"]
    assert pending.transaction == ""
    assert pending.request_usd == pytest.approx(0.012)
    root = segment(1, 1, pod="web", start_s=0, seconds=100, root=True, transaction="checkout")
    write_spans(store, [root])
    store.allocate()
    (checkout,) = [r for r in store.allocated_totals(*window()) if r.kind == "transaction"]
    assert checkout.transaction == "checkout"
    assert checkout.request_usd == pytest.approx(0.012)
    assert checkout.segments == pytest.approx(3.0)  # web's root, worker's, the Lambda's
    assert checkout.usd == pytest.approx(11 * M5_LARGE / 26 + 5.5 * M5_LARGE / 26 / 2)
    assert checkout.total_usd == pytest.approx(checkout.usd + 0.012)
    (line,) = store.reconcile(*window())
    assert line.difference == pytest.approx(0.0, abs=1e-15)  # the bill is the node's alone


def test_the_guards_allocated_spend_by_domain(backend: Backend) -> None:
    """Transactions (share and per-request prices) and, with domains.owner, untraced
    workloads, by domain; the window's first hour prorated; None without node usage."""
    store = backend.open(backend.fresh(), OWNED)
    try:
        since, until = HOUR, HOUR + timedelta(minutes=59)
        assert store.allocated_domain_spend(since, until) is None  # no node usage yet
        write_spans(store, hand_case_spans())
        store.write_usage([(NODE, NODE_PRICE)], PODS, NOW)
        store.allocate()
        spend = store.allocated_domain_spend(since, until)
        assert spend == pytest.approx(
            {
                "retail": EXPECTED[("transaction", "checkout")]
                + EXPECTED[("transaction", "search")],
                "storage": EXPECTED[("untraced", "StatefulSet/postgres")],
            }
        )
        # From the hour's middle: half of it. Production left out: untraced stays.
        half = store.allocated_domain_spend(HOUR + timedelta(minutes=30), until, ["production"])
        assert half == pytest.approx(
            {"storage": EXPECTED[("untraced", "StatefulSet/postgres")] / 2}
        )
    finally:
        store.close()


def test_retention_drops_the_usage_and_keeps_what_was_allocated(
    store: Store, backend: Backend
) -> None:
    write_spans(store, hand_case_spans())
    store.write_usage([(NODE, NODE_PRICE)], PODS, NOW)
    store.allocate()
    before = by_line(store.allocated_totals(*window()))
    cutoff = datetime(2025, 3, 1, tzinfo=UTC)  # January's months gone, whole
    if isinstance(store, SQLiteStore):
        store.delete_before(cutoff)
    else:
        assert isinstance(store, PostgresStore)
        store.drop_partitions_before(cutoff)
    # The usage is gone; the bill, as it was allocated, is not.
    (line,) = store.reconcile(*window())
    assert line.bill_usd == pytest.approx(M5_LARGE)
    assert line.difference == pytest.approx(0.0, abs=1e-15)
    assert (line.price_source, line.price_as_of) == (None, None)
    assert store.allocate() == 0
    assert by_line(store.allocated_totals(*window())) == pytest.approx(before)
    assert backend.kind in ("sqlite", "postgres")


def test_an_unpriced_node_is_shown_and_not_allocated(store: Store) -> None:
    write_spans(store, hand_case_spans())
    store.write_usage([(NODE, NodePrice(None, unpriced_reason="unknown_instance_type"))], PODS,
                      NOW)  # fmt: skip
    store.allocate()
    assert store.allocated_totals(*window()) == []
    (line,) = store.reconcile(*window())
    assert (line.bill_usd, line.unpriced_reason) == (None, "unknown_instance_type")


# -- the invariant, over random traffic, replays and two writers ------------------------


def reference(
    spans: list[SpanContribution],
    nodes: list[tuple[NodeUsage, NodePrice]],
    pods: list[PodUsage],
) -> dict[tuple[str, str], float]:
    """The allocation by `spancost.allocation.core` alone, from the spans' final labels."""
    unique = {s.key: s for s in reversed(spans)}.values()  # the first copy of each span
    accepted = [s for s in unique if s.end_ns >= s.start_ns]
    roots: dict[str, SpanContribution] = {}
    for s in sorted(accepted, key=lambda s: (s.start_ns, s.span_id)):
        if s.is_root:
            roots.setdefault(s.trace_id, s)
    busy: list[Busy] = []
    for trace_id, entries in busy_of(accepted).items():
        root = roots.get(trace_id)
        name = (root.transaction_attribute or "") if root is not None else ""
        busy += [Busy(e.pod, e.hour_ns, name, "", e.seconds) for e in entries]
    allocations, _ = allocate(
        [NodeHour(n.node, n.hour_ns, n.seconds, p.hourly_usd or 0.0, n.vcpu, n.memory_gib)
         for n, p in nodes],
        [PodHour(p.pod, p.node, p.hour_ns, p.seconds, p.cpu, p.memory_gib, p.namespace,
                 p.workload) for p in pods],
        busy,
    )  # fmt: skip
    result: dict[tuple[str, str], float] = {}
    for a in allocations:
        key = (a.kind, a.transaction if a.kind == "transaction" else a.workload)
        result[key] = result.get(key, 0.0) + a.usd
    return result


traffic_st = st.lists(
    st.tuples(
        st.integers(1, 12),  # trace
        st.integers(1, 4),  # span
        st.sampled_from(["web", "worker", "db", "gone"]),  # pod ("gone": no usage known)
        st.floats(-600, 3600),  # start, seconds into the hour (some before it)
        st.floats(0, 900),  # duration
        st.booleans(),  # root?
        st.sampled_from(["checkout", "search", "sync"]),
        st.sampled_from([1.0, 10.0]),  # adjusted count
    ),
    max_size=40,
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(traffic_st, st.randoms(use_true_random=False), st.booleans())
def test_every_node_hour_adds_up_whatever_the_replays_and_writers(
    backend: Backend,
    traffic: list[tuple[int, int, str, float, float, bool, str, float]],
    rng: random.Random,
    owned: bool,
) -> None:
    database = backend.fresh()  # one per example
    config = OWNED if owned else CONFIG
    first, second = backend.open(database, config), backend.open(database, config)
    try:
        spans = [
            segment(trace, span_id, pod=pod, start_s=start, seconds=seconds, root=root,
                    transaction=name if root else None, weight=weight)
            for trace, span_id, pod, start, seconds, root, name, weight in traffic
        ]  # fmt: skip
        # Two writers (two stores on one database), each a random part, each replayed.
        rng.shuffle(spans)
        cut = rng.randint(0, len(spans))
        for store, part in ((first, spans[:cut]), (second, spans[cut:]), (first, spans)):
            write_spans(store, part)
        nodes = [
            (NODE, NODE_PRICE),
            (NODE._replace(hour_ns=HOUR_NS - 3600 * 10**9), NODE_PRICE),
        ]
        pods = PODS + [p._replace(hour_ns=HOUR_NS - 3600 * 10**9) for p in PODS]
        first.write_usage(nodes, pods, NOW)
        second.allocate()
        first.attribute_orphans(NOW, timedelta(minutes=10), "(unattributed)")
        first.allocate()
        lines = first.reconcile(HOUR - timedelta(hours=1), HOUR + timedelta(minutes=59))
        assert len(lines) == 2
        for line in lines:
            assert line.bill_usd == pytest.approx(M5_LARGE)
            assert line.difference == pytest.approx(0.0, abs=1e-12), line
        rows = first.allocated_totals(HOUR - timedelta(hours=1), HOUR + timedelta(minutes=59))
        assert math.fsum(row.usd for row in rows) == pytest.approx(2 * M5_LARGE, rel=1e-9)
        # Each line as the pure core computes it from the spans, deduplicated, under their
        # trace's final name (the first root's transaction; none yet without a root):
        # busy time filed by every write and moved by late roots ends up where it belongs.
        expected = reference(spans, nodes, pods)
        got = by_line(rows)
        assert got.keys() == expected.keys()
        for key, usd in expected.items():
            assert got[key] == pytest.approx(usd, rel=1e-9, abs=1e-15), key
    finally:
        first.close()
        second.close()
