"""What every trace-totals store offers the sink: a small protocol over the pure core.

A store keeps, per trace, the sum of what its spans add (`spancost.totals.fold`,
`spancost.totals.merge`), idempotently: each (trace id, span id) is counted once,
whatever the replays and however many collectors write. See the README section
"Trace totals (core)" for the invariant and "Totals store: SQLite" for the schema.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from spancost.allocation.core import DEFAULT_WEIGHTS, Weights
from spancost.errors import SpancostError
from spancost.totals.aggregate import Quarantined, SpanContribution

if TYPE_CHECKING:  # the pricing engine is not loaded for a store's sake
    from spancost.allocation.pricing import NodePrice
    from spancost.allocation.usage import NodeUsage, PodUsage
    from spancost.totals.naming import TotalsConfig

__all__ = [
    "AllocatedRow",
    "AllocationStore",
    "HourRow",
    "NodeAllocation",
    "NodeHourRow",
    "NodeShareRow",
    "ReconcileRow",
    "RepricedRow",
    "RequestPricedRow",
    "SpendRow",
    "StoreDataError",
    "StoreError",
    "TotalsStore",
    "WriteResult",
]


class StoreError(SpancostError):
    """A store operation failed; nothing of it was committed (the caller should retry)."""


class StoreDataError(StoreError):
    """The store refused the data itself (a value out of range, a text it cannot hold):
    nothing was committed, and the same write would fail again however often it is
    retried. The sink isolates the spans that cause it."""


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What one committed `TotalsStore.write` added."""

    accepted: int = 0
    """Accepted spans inserted (and so added to their traces' totals)."""
    duplicates: int = 0
    """Spans (accepted or quarantined) already stored: a replay, added nothing."""
    quarantined: Mapping[str, int] = field(default_factory=dict)
    """Quarantined spans inserted, by reason."""
    traces: int = 0
    """Trace rows the batch added to."""
    cost_usd: float = 0.0
    """Cost added (the sum over the inserted accepted spans)."""


@dataclass(frozen=True, slots=True)
class SpendRow:
    """What the traces of one transaction (or domain) cost over a window."""

    name: str
    cost_usd: float
    traces: int
    spans: int


@dataclass(frozen=True, slots=True)
class HourRow:
    """What the traces first seen in one UTC hour cost (from the hourly rollup)."""

    hour: datetime
    cost_usd: float
    traces: int
    spans: int
    domain: str | None = None
    """The domain of these traces when asked for by domain; None: every domain."""


@dataclass(frozen=True, slots=True)
class AllocatedRow:
    """A line of the allocation over a window: a transaction's share of the nodes' cost
    (with its busy seconds and segments, sampling-adjusted), an untraced workload's, or
    idle (`kind`)."""

    kind: str
    domain: str
    transaction: str
    environment: str
    namespace: str
    workload: str
    usd: float
    """The share of the nodes' cost (compute)."""
    busy_seconds: float
    segments: float
    request_usd: float = 0.0
    """What the line's spans priced per request cost (Lambda, Fargate, LLM tokens, rules):
    added as it is, outside the nodes' bill."""

    @property
    def total_usd(self) -> float:
        return self.usd + self.request_usd


@dataclass(frozen=True, slots=True)
class ReconcileRow:
    """One node in one hour: its bill (None: no price for it) and how it was allocated."""

    hour: datetime
    node: str
    bill_usd: float | None
    transactions_usd: float
    untraced_usd: float
    idle_usd: float
    price_source: str | None
    price_as_of: str | None
    unpriced_reason: str | None

    @property
    def difference(self) -> float:
        """The bill less what was allocated (zero but for float rounding)."""
        if self.bill_usd is None:
            return 0.0
        return self.bill_usd - (self.transactions_usd + self.untraced_usd + self.idle_usd)


@dataclass(frozen=True, slots=True)
class RepricedRow:
    """A node-hour whose price `reprice` changed: from which price to which."""

    hour: datetime
    node: str
    old_hourly_usd: float | None
    old_source: str | None
    new_hourly_usd: float | None
    new_source: str | None


@dataclass(frozen=True, slots=True)
class NodeHourRow:
    """A node in one UTC hour as the store keeps it: how long it ran, what it is, and
    the price applied (`hourly_usd` None: it has none; `reconcile` says why)."""

    hour: datetime
    node: str
    seconds: float
    region: str | None
    instance_type: str | None
    operating_system: str | None
    capacity_type: str
    zone: str | None
    vcpu: float
    memory_gib: float
    hourly_usd: float | None
    price_source: str | None
    price_model: str | None
    price_as_of: str | None

    @property
    def bill_usd(self) -> float | None:
        """Its cost in the hour: the hourly price for the seconds it ran."""
        return None if self.hourly_usd is None else self.hourly_usd * self.seconds / 3600.0


@dataclass(frozen=True, slots=True)
class NodeShareRow:
    """One node's cost in one hour as the allocation splits it: a transaction's share
    (over the node's pods that served it), an untraced workload's, or idle (`kind`);
    an `AllocatedRow` before it is summed over nodes and hours."""

    hour: datetime
    node: str
    kind: str
    domain: str
    transaction: str
    environment: str
    namespace: str
    workload: str
    usd: float


@dataclass(frozen=True, slots=True)
class RequestPricedRow:
    """What a transaction's spans priced per request cost in one hour (Lambda, Fargate,
    LLM tokens, rules): no node's, added to the allocation as it is."""

    hour: datetime
    domain: str
    transaction: str
    environment: str
    usd: float


@dataclass(frozen=True, slots=True)
class NodeAllocation:
    """The allocation of a window per node and hour (`AllocationStore.allocation_by_node`)."""

    nodes: list[NodeHourRow]
    """Every node-hour reported in the window, priced or not, by hour and node."""
    shares: list[NodeShareRow]
    """The priced node-hours' costs split, by hour, node, kind and labels."""
    per_request: list[RequestPricedRow]
    """The per-request prices, by hour and labels."""


@runtime_checkable
class AllocationStore(Protocol):
    """The allocation's usage and results (issue 12; see spancost.allocation)."""

    def write_usage(
        self,
        nodes: Sequence[tuple[NodeUsage, NodePrice]],
        pods: Sequence[PodUsage],
        now: datetime,
    ) -> None:
        """Record node-hours (with their price) and pod-hours, keeping for each the
        largest running time reported, and mark their hours for allocation."""

    def allocate(self, weights: Weights = DEFAULT_WEIGHTS) -> int:
        """Allocate every hour whose usage changed since it was last allocated; how many."""

    def allocated_totals(
        self, since: datetime, until: datetime, exclude_environments: Collection[str] = ()
    ) -> list[AllocatedRow]:
        """The allocation of the hours from `since` (rounded down) to `until` (rounded
        up), summed over hours and pods, most expensive first."""

    def reconcile(self, since: datetime, until: datetime) -> list[ReconcileRow]:
        """Per node and hour over the same hours: the bill and its allocation."""

    def allocated_domain_spend(
        self, since: datetime, until: datetime, exclude_environments: Collection[str] = ()
    ) -> dict[str, float] | None:
        """What the budget guard acts on when nodes report usage: by domain, its
        transactions' share of the nodes and per-request prices, and (with
        ``domains.owner`` on namespaces) its untraced workloads, over the allocated hours
        that overlap `since`..`until`, the first prorated by its part after `since`
        (`store.allocated.window_spend`). None when no node reported usage in the window
        (the spans' own estimates are all there is then)."""

    def reprice(
        self,
        since: datetime,
        until: datetime,
        price: Callable[[NodeUsage], NodePrice | None],
        now: datetime,
    ) -> list[RepricedRow]:
        """Price the node-hours from `since` to `until` again with `price` (None: leave
        that one as it is), record every change (``repricings``), and mark their hours
        for allocation."""

    def allocation_by_node(
        self, since: datetime, until: datetime, weights: Weights = DEFAULT_WEIGHTS
    ) -> NodeAllocation:
        """The allocation of the hours from `since` (rounded down) to `until` (rounded
        up) per node and hour, with each node-hour's facts and price (a FOCUS export's
        rows). The split is computed again from the usage kept (the same rows and
        `allocate` as the stored allocation, which keeps it summed over nodes), with
        `weights`: hours whose usage retention dropped are absent. The per-request
        prices are the stored allocation's."""


class TotalsStore(Protocol):
    """Per-trace totals, a quarantine, and an hourly per-domain rollup.

    Every method either commits all of its work or raises (`StoreError` for a
    database failure) having committed nothing: a sink acknowledges a batch only
    when `write` returned.
    """

    def migrate(self) -> None:
        """Create or upgrade the schema; safe to run again (and from several processes)."""

    def write(
        self,
        contributions: Sequence[SpanContribution],
        quarantined: Sequence[Quarantined],
        now: datetime,
    ) -> WriteResult:
        """Store one batch, split by `spancost.totals.split` at ingest time `now` (aware UTC).

        In one transaction: insert every span keyed by (trace id, span id), skipping
        those already stored, then add the `fold` of the accepted ones inserted to
        their trace rows and to the per-domain rollup.
        """

    def attribute_orphans(self, now: datetime, grace: timedelta, unattributed_name: str) -> int:
        """Name every rootless trace first seen at least `grace` before `now`
        `unattributed_name`; return how many were named."""

    def domain_spend(
        self, since: datetime, until: datetime, exclude_environments: Collection[str] = ()
    ) -> dict[str, float]:
        """Cost by domain of the traces first seen from `since` to `until` (both included), exactly
        (`common.spend_window`: the hourly rollup for the whole hours, the trace rows for
        the parts of an hour at the ends), leaving out `exclude_environments` and the
        traces that have no domain yet. What the budget guard acts on."""

    def domain_coverage(
        self, since: datetime, until: datetime, exclude_environments: Collection[str] = ()
    ) -> dict[str, tuple[int, int]]:
        """Per domain, (spans, unpriced spans) of the trace rows first seen in the hours
        from `since` (rounded down) to `until` (rounded up), traces waiting for their
        root left out: how much of a domain's spend spancost could see."""

    def unpriced_reasons(
        self, since: datetime, until: datetime, exclude_environments: Collection[str] = ()
    ) -> list[tuple[str, int]]:
        """(cost.unpriced_reason, spans) of the unpriced spans stored in the hours from
        `since` (rounded down) to `until` (rounded up), most spans first (ties by name);
        counted by the hour they were stored, across domains."""

    def transaction_totals(
        self,
        since: datetime,
        until: datetime,
        exclude_environments: Collection[str] = (),
        *,
        limit: int | None = None,
        names: Collection[str] | None = None,
    ) -> list[SpendRow]:
        """Cost, traces and spans by transaction, from the trace rows first seen in the
        hours from `since` (rounded down) to `until` (rounded up), most expensive first
        (ties by name); traces still waiting for their root are left out. `limit` keeps
        the first rows, `names` only those transactions."""

    def domain_totals(
        self, since: datetime, until: datetime, exclude_environments: Collection[str] = ()
    ) -> list[SpendRow]:
        """Cost, traces and spans by domain from the hourly rollup over the hours from
        `since` (rounded down) to before `until`, most expensive first; the traces
        waiting for their root are the row named `PENDING_DOMAIN` (``''``)."""

    def hourly_totals(
        self,
        since: datetime,
        until: datetime,
        exclude_environments: Collection[str] = (),
        *,
        by_domain: bool = False,
    ) -> list[HourRow]:
        """Cost, traces and spans per UTC hour from the hourly rollup over the same hours as
        `domain_totals`, waiting traces left out; hours without a trace are absent.
        `by_domain`: a row per hour and domain (ordered by hour, then domain)."""

    @property
    def config(self) -> TotalsConfig:
        """The naming config it names traces and charges domains by."""

    def use_config(self, config: TotalsConfig) -> None:
        """Name traces and charge domains by `config` from now on (`open_store` gives a
        reader the config the sink saved)."""

    def save_setting(self, name: str, value: str, now: datetime) -> str | None:
        """Keep `value` under `name` (``store_settings``); return what it replaced."""

    def setting(self, name: str) -> str | None:
        """The value kept under `name`, or None (none kept, or a store not migrated to
        keep any)."""

    def close(self) -> None:
        """Release the database connection."""
