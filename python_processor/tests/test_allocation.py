"""The conserving allocation (spancost.allocation.core): a hand-computed hour, and the
invariant over random nodes, pods, hours and busy time."""

from __future__ import annotations

import math
from collections import defaultdict

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spancost.allocation.core import (
    Allocation,
    Busy,
    NodeHour,
    PodHour,
    Weights,
    allocate,
    hour_slices,
)
from spancost.allocation.sampling import adjusted_count, threshold

H = 1_764_928_800 * 10**9  # 2025-12-05 10:00 UTC
HOUR = 3600 * 10**9
M5_LARGE = 0.096  # us-east-1 Linux on-demand, per hour


def by_kind(allocations: list[Allocation]) -> dict[tuple[str, str], float]:
    totals: dict[tuple[str, str], float] = defaultdict(float)
    for a in allocations:
        label = a.transaction if a.kind == "transaction" else a.workload or a.kind
        totals[(a.kind, label)] += a.usd
    return dict(totals)


def test_one_m5_large_for_one_hour_by_hand() -> None:
    """README, "Costs that add up to the bill": the worked example, number by number."""
    node = NodeHour("ip-10-0-1-5", H, 3600, M5_LARGE, vcpu=2, memory_gb=8)
    pods = [
        # 1 vCPU + 2 GiB all hour; 0.5 vCPU + 1 GiB for half of it; a database, no spans.
        PodHour("web", node.node, H, 3600, cpu=1, memory_gb=2, namespace="shop", workload="web"),
        PodHour(
            "worker", node.node, H, 1800, cpu=0.5, memory_gb=1, namespace="shop", workload="worker"
        ),
        PodHour(
            "db", node.node, H, 3600, cpu=0.25, memory_gb=2, namespace="shop", workload="postgres"
        ),
    ]
    busy = [
        Busy("web", H, "checkout", "retail", 1200),
        Busy("web", H, "search", "retail", 600),
        Busy("worker", H, "checkout", "retail", 300),
    ]
    allocations, unallocated = allocate([node], pods, busy)
    assert unallocated == []
    # 9 per vCPU, 1 per GiB: the node weighs 9*2 + 8 = 26, so a weight unit costs
    # 0.096 / 26 an hour. web weighs 9*1 + 2 = 11, worker 9*0.5 + 1 = 5.5 (half the
    # hour), db 9*0.25 + 2 = 4.25.
    unit = 0.096 / 26
    web, worker, db = 11 * unit, 5.5 * unit / 2, 4.25 * unit
    expected = {
        ("transaction", "checkout"): web * 1200 / 1800 + worker,
        ("transaction", "search"): web * 600 / 1800,
        ("untraced", "postgres"): db,
        ("idle", "idle"): 0.096 - web - worker - db,
    }
    got = by_kind(allocations)
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-12), key
    # The numbers the README prints.
    assert round(got[("transaction", "checkout")], 6) == 0.037231
    assert round(got[("transaction", "search")], 6) == 0.013538
    assert round(got[("untraced", "postgres")], 6) == 0.015692
    assert round(got[("idle", "idle")], 6) == 0.029538
    assert math.fsum(a.usd for a in allocations) == pytest.approx(0.096, rel=1e-12)


def test_pods_asking_more_than_the_node_are_scaled_to_it() -> None:
    node = NodeHour("n", H, 3600, 1.0, vcpu=1, memory_gb=0)
    pods = [PodHour(f"p{i}", "n", H, 3600, cpu=1, memory_gb=0) for i in range(3)]
    allocations, _ = allocate([node], pods, [])
    assert [a.usd for a in allocations] == pytest.approx([1 / 3] * 3)
    assert all(a.kind == "untraced" for a in allocations)


def test_a_node_part_of_the_hour_and_unknown_capacity() -> None:
    node = NodeHour("n", H, 900, 0.4, vcpu=0, memory_gb=0)  # a quarter of an hour
    allocations, _ = allocate([node], [PodHour("p", "n", H, 900, cpu=1, memory_gb=1)], [])
    assert allocations == [Allocation(H, "n", "idle", pytest.approx(0.1))]  # type: ignore[arg-type]


def test_usage_nobody_can_price_is_reported() -> None:
    node = NodeHour("n", H, 3600, 1.0, vcpu=2, memory_gb=8)
    pods = [PodHour("p", "n", H, 3600, 1, 1), PodHour("q", "gone", H, 60, 1, 1)]
    busy = [Busy("p", H, "t", "d", 5), Busy("r", H, "t", "d", 7)]
    allocations, unallocated = allocate([node], pods, busy)
    assert [(u.pod, u.why, u.seconds) for u in unallocated] == [
        ("q", "no_node", 60),
        ("r", "no_pod", 7),
    ]
    assert math.fsum(a.usd for a in allocations) == pytest.approx(1.0)


def test_the_latest_report_of_an_hour_counts_once() -> None:
    """Agents report an hour again as it goes on (and after a restart): the longest
    report of a node-hour or pod-hour is the one that counts, not their sum."""
    early = NodeHour("n", H, 600, 1.0, 1, 0)
    late = NodeHour("n", H, 1800, 1.0, 1, 0)
    pod_early, pod_late = PodHour("p", "n", H, 300, 1, 0), PodHour("p", "n", H, 1200, 1, 0)
    once, _ = allocate([late], [pod_late], [])
    again, _ = allocate([early, late, late], [pod_early, pod_late, pod_late], [])
    assert once == again
    assert [a.usd for a in once] == pytest.approx([1200 / 3600, 600 / 3600])


def test_a_denormal_capacity_is_no_capacity() -> None:
    """Found by Hypothesis: 2.2e-313 GiB made a pod's share infinite, its cost NaN."""
    node = NodeHour("n", H, 3600, 1.0, vcpu=0, memory_gb=2.2e-313)
    allocations, _ = allocate([node], [PodHour("p", "n", H, 3600, cpu=0, memory_gb=1)], [])
    assert [(a.kind, a.usd) for a in allocations] == [("idle", 1.0)]


def test_weights() -> None:
    node = NodeHour("n", H, 3600, 1.0, vcpu=1, memory_gb=1)
    pods = [PodHour("cpu", "n", H, 3600, 1, 0), PodHour("mem", "n", H, 3600, 0, 1)]
    allocations, _ = allocate([node], pods, [], Weights(cpu=1, memory=1))
    assert [a.usd for a in allocations] == pytest.approx([0.5, 0.5])
    with pytest.raises(ValueError, match="at least one"):
        Weights(cpu=0, memory=0)
    with pytest.raises(ValueError, match="cpu"):
        Weights(cpu=float("nan"))


def test_hour_slices() -> None:
    assert hour_slices(H + 10 * 10**9, H + 20 * 10**9) == [(H, 10.0)]
    assert hour_slices(H - 30 * 10**9, H + 90 * 10**9) == [(H - HOUR, 30.0), (H, 90.0)]
    assert hour_slices(H, H + 2 * HOUR) == [(H, 3600.0), (H + HOUR, 3600.0)]
    assert hour_slices(H, H) == [] and hour_slices(H + 1, H) == []


@pytest.mark.parametrize(
    ("state", "count"),
    [
        ("", 1.0),
        ("ot=th:0", 1.0),
        ("ot=th:8", 2.0),
        ("ot=th:c", 4.0),
        ("vendor=x,ot=rv:abcdef;th:8", 2.0),
        ("ot=th:e668", 2**56 / (2**56 - 0xE668 * 2**40)),
        ("ot=th:xyz", 1.0),
        ("ot=th:", 1.0),
        ("ot=th:123456789abcdef", 1.0),  # 15 digits: unreadable
        ("other=th:8", 1.0),
    ],
)
def test_adjusted_count(state: str, count: float) -> None:
    assert adjusted_count(state) == pytest.approx(count)


def test_threshold_of_ten_percent() -> None:
    # A 10 % sampler writes th:e6666666666666 (or a shorter prefix of it).
    assert adjusted_count("ot=th:e6666666666666") == pytest.approx(10.0, rel=1e-12)
    assert threshold("ot=th:e") == 0xE << 52


# -- the invariant ----------------------------------------------------------------------

nodes_st = st.lists(
    st.tuples(
        st.integers(0, 2),  # node index
        st.integers(0, 1),  # hour index
        st.floats(0, 3600),  # seconds ran
        st.floats(0, 50),  # hourly price
        st.floats(0, 96),  # vCPUs
        st.floats(0, 768),  # GiB
    ),
    min_size=1,
    max_size=6,
)
pods_st = st.lists(
    st.tuples(
        st.integers(0, 9),  # pod index
        st.integers(0, 2),  # node index
        st.integers(0, 1),  # hour index
        st.floats(0, 3600),
        st.floats(0, 16),
        st.floats(0, 64),
    ),
    max_size=20,
)
busy_st = st.lists(
    st.tuples(
        st.integers(0, 9),  # pod index
        st.integers(0, 1),  # hour index
        st.sampled_from(["checkout", "search", "sync"]),
        st.sampled_from(["retail", "platform"]),
        st.floats(0, 1e6),
    ),
    max_size=30,
)


def build(
    nodes: list[tuple[int, int, float, float, float, float]],
    pods: list[tuple[int, int, int, float, float, float]],
    busy: list[tuple[int, int, str, str, float]],
) -> tuple[list[NodeHour], list[PodHour], list[Busy]]:
    return (
        [NodeHour(f"n{n}", H + h * HOUR, s, p, c, m) for n, h, s, p, c, m in nodes],
        [
            PodHour(f"p{p}", f"n{n}", H + h * HOUR, s, c, m, "ns", f"w{p}")
            for p, n, h, s, c, m in pods
        ],
        [Busy(f"p{p}", H + h * HOUR, t, d, s) for p, h, t, d, s in busy],
    )


@given(nodes_st, pods_st, busy_st)
def test_every_node_hour_adds_up_to_its_cost(
    nodes: list[tuple[int, int, float, float, float, float]],
    pods: list[tuple[int, int, int, float, float, float]],
    busy: list[tuple[int, int, str, str, float]],
) -> None:
    node_rows, pod_rows, busy_rows = build(nodes, pods, busy)
    allocations, _ = allocate(node_rows, pod_rows, busy_rows)
    longest: dict[tuple[int, str], NodeHour] = {}
    for node in node_rows:  # the longest report of each node-hour (the first on a tie)
        key = (node.hour_ns, node.node)
        if key not in longest or node.seconds > longest[key].seconds:
            longest[key] = node
    cost = {key: node.cost for key, node in longest.items()}
    shares: dict[tuple[int, str], list[float]] = defaultdict(list)
    for a in allocations:
        assert a.usd >= 0 and math.isfinite(a.usd)
        shares[(a.hour_ns, a.node)].append(a.usd)
    for key, total in cost.items():
        allocated = math.fsum(shares.get(key, []))
        assert allocated == pytest.approx(total, rel=1e-9, abs=1e-12), key
    # Untraced only where the pod had no busy time in that hour; transactions only where
    # it had.
    served = {(b.hour_ns, b.pod) for b in busy_rows if b.seconds > 0}
    for a in allocations:
        if a.kind == "untraced":
            assert (a.hour_ns, a.pod) not in served
        elif a.kind == "transaction":
            assert (a.hour_ns, a.pod) in served


@given(nodes_st, pods_st, busy_st, st.randoms(use_true_random=False))
def test_split_and_replayed_reports_allocate_the_same(
    nodes: list[tuple[int, int, float, float, float, float]],
    pods: list[tuple[int, int, int, float, float, float]],
    busy: list[tuple[int, int, str, str, float]],
    random: object,
) -> None:
    """Busy time split over several rows (two stores, two batches) adds up to the same
    allocation as in one row; node and pod reports repeated change nothing."""
    import random as random_module  # noqa: PLC0415 - only for the type

    assert isinstance(random, random_module.Random)
    node_rows, pod_rows, busy_rows = build(nodes, pods, busy)
    split: list[Busy] = []
    for row in busy_rows:
        cut = random.random()
        split += [
            Busy(row.pod, row.hour_ns, row.transaction, row.domain, row.seconds * cut),
            Busy(row.pod, row.hour_ns, row.transaction, row.domain, row.seconds * (1 - cut)),
        ]
    random.shuffle(split)
    once, _ = allocate(node_rows, pod_rows, busy_rows)
    again, _ = allocate(node_rows * 2, pod_rows + pod_rows[::-1], split)
    assert [a[:3] + a[4:] for a in once] == [a[:3] + a[4:] for a in again]
    for a, b in zip(once, again, strict=True):
        assert b.usd == pytest.approx(a.usd, rel=1e-9, abs=1e-15)


def test_dropping_idle_or_untraced_breaks_the_invariant() -> None:
    """The invariant test above can fail: without idle or untraced, the hand case does
    not add up."""
    node = NodeHour("n", H, 3600, M5_LARGE, 2, 8)
    pods = [PodHour("web", "n", H, 3600, 1, 2), PodHour("db", "n", H, 3600, 0.25, 2)]
    allocations, _ = allocate([node], pods, [Busy("web", H, "checkout", "retail", 60)])
    for dropped in ("idle", "untraced"):
        kept = math.fsum(a.usd for a in allocations if a.kind != dropped)
        assert kept != pytest.approx(M5_LARGE, rel=1e-9), dropped


def test_window_spend_prorates_the_first_hour() -> None:
    from spancost.store.allocated import window_spend  # noqa: PLC0415

    rows = [(H - HOUR, "a", 4.0), (H, "a", 1.0), (H, "b", 2.0), (H + HOUR, "a", 8.0)]
    # From a quarter into the first hour to the middle of the third: 3/4, whole, whole.
    since, until = H - HOUR + HOUR // 4, H + HOUR + HOUR // 2
    assert window_spend(rows, since, until) == {"a": 3.0 + 1.0 + 8.0, "b": 2.0}
    assert window_spend(rows, H + HOUR, H + 2 * HOUR) == {"a": 8.0}
    assert window_spend(rows, H + 2 * HOUR, H + 3 * HOUR) == {}
