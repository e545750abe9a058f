"""The allocation in the PostgreSQL store under concurrency (tests/test_store_allocation.py
has the semantics, for both stores): writers and allocators at once, each hour's
``allocation_dirty`` row as the lock between them, against a real server (`tests.pg`)."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from functools import partial
from typing import Any

import psycopg
import pytest

import spancost.store.postgres_allocation as allocation_module
from spancost.store.allocated import allocated_hour
from spancost.store.postgres import PostgresStore
from spancost.totals import TotalsConfig
from spancost.totals.aggregate import SpanContribution
from tests.allocation_data import (
    CONFIG,
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
from tests.test_store_allocation import reference

PREVIOUS_HOUR_NS = HOUR_NS - 3600 * 10**9
NODES = [(NODE, NODE_PRICE), (NODE._replace(hour_ns=PREVIOUS_HOUR_NS), NODE_PRICE)]
ALL_PODS = PODS + [p._replace(hour_ns=PREVIOUS_HOUR_NS) for p in PODS]
SINCE, UNTIL = HOUR - timedelta(hours=1), HOUR + timedelta(minutes=59)
UNATTRIBUTED = "(unattributed)"
GRACE = timedelta(minutes=10)
ORPHANS_DUE = NOW + timedelta(hours=1)  # every rootless trace is past its grace


@pytest.fixture
def dsn(pg_server: str) -> str:
    return create_database(pg_server, "alloc")


@pytest.fixture
def opened(dsn: str) -> Iterator[Callable[..., PostgresStore]]:
    """Opens stores on the test's database (migrated once); closes them afterwards."""
    stores: list[PostgresStore] = []

    def open_store(config: TotalsConfig = CONFIG) -> PostgresStore:
        store = PostgresStore(dsn, config)
        if not stores:
            store.migrate()
        stores.append(store)
        return store

    yield open_store
    for store in stores:
        store.close()


def lock_waiters(dsn: str) -> int:
    with psycopg.connect(dsn) as connection:
        row = connection.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
        ).fetchone()
    return int(row[0]) if row else 0


def wait_for_lock_waiters(dsn: str, count: int) -> None:
    for _ in range(300):
        if lock_waiters(dsn) == count:
            return
        time.sleep(0.05)
    assert lock_waiters(dsn) == count


def in_thread(name: str, action: Callable[[], object], errors: list[BaseException]) -> Any:
    """`action` run in a started thread called `name`; what it returns in `.result`."""

    class Runner(threading.Thread):
        result: object = None

        def run(self) -> None:
            try:
                self.result = action()
            except BaseException as exc:  # reported by the main thread
                errors.append(exc)

    thread = Runner(name=name)
    thread.start()
    return thread


def random_traffic(rng: random.Random) -> list[SpanContribution]:
    """Forty traces on the node's pods (and one it has no usage of) over two hours, some
    with a root (a few with two), weighted 1 or 10."""
    spans: list[SpanContribution] = []
    for trace in range(1, 41):
        for span_id in range(1, rng.randint(1, 4) + 1):
            root = rng.random() < 0.35
            spans.append(
                segment(
                    trace,
                    span_id,
                    pod=rng.choice(["web", "worker", "db", "gone"]),
                    start_s=rng.uniform(-600, 3600),
                    seconds=rng.uniform(0, 900),
                    root=root,
                    transaction=rng.choice(["checkout", "search", "sync"]) if root else None,
                    weight=rng.choice([1.0, 10.0]),
                )
            )
    return spans


def batches_of(spans: list[SpanContribution], rng: random.Random) -> list[list[SpanContribution]]:
    """All of `spans` in a random order, cut into batches of 1 to 8."""
    order = rng.sample(spans, len(spans))
    batches: list[list[SpanContribution]] = []
    while order:
        size = rng.randint(1, 8)
        batches.append(order[:size])
        order = order[size:]
    return batches


def assert_allocated_as_the_core(store: PostgresStore, spans: list[SpanContribution]) -> None:
    """Every node-hour reconciles, and each line is the pure core's from the spans (the
    traces still without a root named `UNATTRIBUTED`)."""
    lines = store.reconcile(SINCE, UNTIL)
    assert len(lines) == 2
    for line in lines:
        assert line.bill_usd == pytest.approx(M5_LARGE)
        assert line.difference == pytest.approx(0.0, abs=1e-12), line
    expected = {
        (kind, UNATTRIBUTED if (kind, label) == ("transaction", "") else label): usd
        for (kind, label), usd in reference(spans, NODES, ALL_PODS).items()
    }
    got = by_line(store.allocated_totals(SINCE, UNTIL))
    assert got.keys() == expected.keys()
    for key, usd in expected.items():
        assert got[key] == pytest.approx(usd, rel=1e-9, abs=1e-15), key


@pytest.mark.parametrize("owned", [False, True], ids=["labels", "owner"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_two_writers_and_an_allocator_at_once_allocate_what_the_core_does(
    opened: Callable[..., PostgresStore], seed: int, owned: bool
) -> None:
    """Two stores write the same traces at once, each in its own order and batches (every
    span twice, late roots moving busy time), while a third allocates, names orphans and
    reports usage again, over and over. No deadlock, nothing lost: once they are done,
    one more round allocates what the pure core does from the spans."""
    config = OWNED if owned else CONFIG
    writers, allocator = [opened(config), opened(config)], opened(config)
    allocator.write_usage(NODES, ALL_PODS, NOW)
    rng = random.Random(seed)
    spans = random_traffic(rng)
    work = [batches_of(spans, rng) for _ in writers]
    errors: list[BaseException] = []
    done = threading.Event()

    def write(index: int) -> None:
        for batch in work[index]:
            write_spans(writers[index], batch)

    def allocate() -> int:
        rounds = 0
        while not done.is_set() or rounds < 3:
            allocator.allocate()
            allocator.attribute_orphans(ORPHANS_DUE, GRACE, UNATTRIBUTED)
            allocator.write_usage(NODES[rounds % 2 :], ALL_PODS[rounds % 2 :], NOW)
            rounds += 1
        return rounds

    threads = [in_thread(f"writer-{index}", partial(write, index), errors) for index in (0, 1)]
    allocating = in_thread("allocator", allocate, errors)
    for thread in threads:
        thread.join(120)
    done.set()
    allocating.join(120)
    assert not errors
    assert allocating.result >= 3
    allocator.attribute_orphans(ORPHANS_DUE, GRACE, UNATTRIBUTED)
    allocator.allocate()
    assert allocator.allocate() == 0
    assert_allocated_as_the_core(allocator, spans)


def test_a_write_to_an_hour_being_allocated_waits_and_marks_it_again(
    opened: Callable[..., PostgresStore], dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The allocator holds the hour's row while it works: a write of busy time to that
    hour cannot commit meanwhile (its mark waits), and once the allocator is done the
    write marks the hour again, so that its busy time is allocated by the next round
    rather than lost with the marker the allocator deleted."""
    allocator, writer = opened(), opened()
    spans = hand_case_spans()
    write_spans(writer, spans)
    allocator.write_usage([(NODE, NODE_PRICE)], PODS, NOW)
    working, go = threading.Event(), threading.Event()

    def paused(*args: Any, **kwargs: Any) -> Any:
        if threading.current_thread().name == "allocator":
            working.set()  # the hour's row is locked from here to the commit
            assert go.wait(30)
        return allocated_hour(*args, **kwargs)

    monkeypatch.setattr(allocation_module, "allocated_hour", paused)
    errors: list[BaseException] = []
    allocating = in_thread("allocator", allocator.allocate, errors)
    assert working.wait(30)
    late = segment(300, 1, pod="worker", start_s=2000, seconds=300, root=True,
                   transaction="sync")  # fmt: skip
    writing = in_thread("writer", lambda: write_spans(writer, [late]), errors)
    wait_for_lock_waiters(dsn, 1)  # the writer, on the hour's row
    assert writing.is_alive()
    go.set()
    allocating.join(30)
    writing.join(30)
    assert not errors
    assert allocating.result == 1
    assert allocator.allocate() == 1  # the hour again, with the late segment
    got = by_line(allocator.allocated_totals(HOUR, HOUR + timedelta(minutes=59)))
    assert got[("transaction", "sync")] > 0
    expected = reference([*spans, late], [(NODE, NODE_PRICE)], PODS)
    assert got == pytest.approx(expected, rel=1e-9)


def test_the_allocator_waits_for_a_write_in_flight_and_reads_it(
    opened: Callable[..., PostgresStore], dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write that marked the hour holds its row until it commits: the allocator waits
    for it, then allocates the hour with the write's busy time, and the hour is clean."""
    allocator, writer = opened(), opened()
    allocator.write_usage([(NODE, NODE_PRICE)], PODS, NOW)
    marked, go = threading.Event(), threading.Event()
    mark_dirty = allocation_module.mark_dirty

    def paused(*args: Any) -> None:
        mark_dirty(*args)
        if threading.current_thread().name == "writer":
            marked.set()  # the write holds the hour's row until it commits
            assert go.wait(30)

    monkeypatch.setattr(allocation_module, "mark_dirty", paused)
    errors: list[BaseException] = []
    spans = hand_case_spans()
    writing = in_thread("writer", lambda: write_spans(writer, spans), errors)
    assert marked.wait(30)
    allocating = in_thread("allocator", allocator.allocate, errors)
    wait_for_lock_waiters(dsn, 1)  # the allocator, on the hour's row
    go.set()
    writing.join(30)
    allocating.join(30)
    assert not errors
    assert allocating.result == 1
    assert allocator.allocate() == 0
    got = by_line(allocator.allocated_totals(HOUR, HOUR + timedelta(minutes=59)))
    assert got == pytest.approx(reference(spans, [(NODE, NODE_PRICE)], PODS), rel=1e-9)


def test_a_second_allocator_waits_and_skips_the_hour_the_first_allocated(
    opened: Callable[..., PostgresStore], dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = opened(), opened()
    write_spans(first, hand_case_spans())
    first.write_usage([(NODE, NODE_PRICE)], PODS, NOW)
    working, go = threading.Event(), threading.Event()

    def paused(*args: Any, **kwargs: Any) -> Any:
        if threading.current_thread().name == "first":
            working.set()
            assert go.wait(30)
        return allocated_hour(*args, **kwargs)

    monkeypatch.setattr(allocation_module, "allocated_hour", paused)
    errors: list[BaseException] = []
    allocating = in_thread("first", first.allocate, errors)
    assert working.wait(30)
    waiting = in_thread("second", second.allocate, errors)
    wait_for_lock_waiters(dsn, 1)  # the second, on the hour's row
    go.set()
    allocating.join(30)
    waiting.join(30)
    assert not errors
    assert (allocating.result, waiting.result) == (1, 0)
    assert by_line(first.allocated_totals(HOUR, HOUR + timedelta(minutes=59)))
