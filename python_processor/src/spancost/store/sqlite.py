"""The embedded trace-totals store: one SQLite file, stdlib ``sqlite3``, WAL.

Times are INTEGER nanoseconds since the Unix epoch, UTC (``*_ns`` columns), as in
`SpanContribution`. Every write runs in one ``BEGIN IMMEDIATE`` transaction, which
takes SQLite's write lock up front: writers (threads with their own store, or other
processes) are serialized by SQLite and wait up to ``busy_timeout`` for each other.

`SQLiteStore` says which transaction each operation takes and runs the statements of
the modules beside it in it:

- `sqlite_connection`: the connection, a transaction each, errors as `StoreError`;
- `sqlite_write`: the write path (`write`, `attribute_orphans`);
- `sqlite_reads`: the report's and the guard's queries of the totals;
- `sqlite_allocation`: the allocation's usage, allocation, reads and repricing;
- `migrations.sqlite`: the schema, applied by `migrations.runner`.

Retention (`SQLiteStore.delete_before`, SQLite's alone) is here.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Final

from spancost.allocation.core import DEFAULT_WEIGHTS, Weights
from spancost.allocation.usage import NodeUsage, PodUsage
from spancost.store import sqlite_allocation, sqlite_reads, sqlite_write
from spancost.store.allocated import by_node
from spancost.store.base import (
    AllocatedRow,
    HourRow,
    NodeAllocation,
    ReconcileRow,
    RepricedRow,
    SpendRow,
    WriteResult,
)
from spancost.store.common import ALLOCATION_USAGE_TABLES, PENDING_DOMAIN
from spancost.store.migrations import runner
from spancost.store.migrations.sqlite import LEDGER, MIGRATIONS
from spancost.store.sqlite_connection import Connection
from spancost.totals.aggregate import Quarantined, SpanContribution, ns_from_utc
from spancost.totals.naming import TotalsConfig

if TYPE_CHECKING:
    from spancost.allocation.pricing import NodePrice

__all__ = ["MIGRATIONS", "PENDING_DOMAIN", "Deleted", "SQLiteStore"]

logger = logging.getLogger(__name__)

# Retention takes whole traces: a trace belongs to the time its first span (accepted or
# quarantined) was stored, as with PostgreSQL's ``keyed_at``.
_DELETE_TRACES: Final = """
DELETE FROM traces WHERE first_seen_ns < ? OR trace_id IN (
    SELECT trace_id FROM contributions GROUP BY trace_id HAVING min(ingested_ns) < ?
)
"""
_DELETE_CHARGES: Final = """
DELETE FROM trace_charges WHERE first_seen_ns < ? OR trace_id IN (
    SELECT trace_id FROM contributions GROUP BY trace_id HAVING min(ingested_ns) < ?
)
"""
_DELETE_CONTRIBUTIONS: Final = """
DELETE FROM contributions WHERE trace_id IN (
    SELECT trace_id FROM contributions GROUP BY trace_id HAVING min(ingested_ns) < ?
)
"""


@dataclass(frozen=True, slots=True)
class Deleted:
    """What `SQLiteStore.delete_before` removed."""

    traces: int
    contributions: int


class SQLiteStore:
    """`TotalsStore` over one SQLite file (see the module docstring).

    One connection per store, guarded by a lock: a store may be shared by threads,
    and several stores (threads or processes) may open the same file.
    """

    def __init__(
        self,
        path: str | Path,
        config: TotalsConfig | None = None,
        *,
        busy_timeout: timedelta = timedelta(seconds=30),
    ) -> None:
        self._config = config if config is not None else TotalsConfig()
        self._connection = Connection(path, busy_timeout=busy_timeout)

    def close(self) -> None:
        self._connection.close()

    @property
    def config(self) -> TotalsConfig:
        return self._config

    def use_config(self, config: TotalsConfig) -> None:
        self._config = config

    def save_setting(self, name: str, value: str, now: datetime) -> str | None:
        def save(cursor: sqlite3.Cursor) -> str | None:
            row = cursor.execute(
                "SELECT value FROM store_settings WHERE name = ?", (name,)
            ).fetchone()
            cursor.execute(
                "INSERT INTO store_settings (name, value, updated_ns) VALUES (?, ?, ?)"
                " ON CONFLICT (name) DO UPDATE SET value = excluded.value,"
                " updated_ns = excluded.updated_ns",
                (name, value, ns_from_utc(now)),
            )
            return None if row is None else str(row[0])

        return self._connection.transaction("save_setting", save)

    def setting(self, name: str) -> str | None:
        def read(cursor: sqlite3.Cursor) -> str | None:
            exists = cursor.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'store_settings'"
            ).fetchone()
            if exists is None:  # not migrated that far: nothing saved
                return None
            row = cursor.execute(
                "SELECT value FROM store_settings WHERE name = ?", (name,)
            ).fetchone()
            return None if row is None else str(row[0])

        return self._connection.read("setting", read)

    def migrate(self) -> None:
        self._connection.transaction(
            "migrate", runner.migrate, MIGRATIONS, LEDGER, self._connection.path
        )

    def write(
        self,
        contributions: Sequence[SpanContribution],
        quarantined: Sequence[Quarantined],
        now: datetime,
    ) -> WriteResult:
        return self._connection.transaction(
            "write", sqlite_write.write, self._config, contributions, quarantined, now
        )

    def attribute_orphans(self, now: datetime, grace: timedelta, unattributed_name: str) -> int:
        return self._connection.transaction(
            "attribute_orphans",
            sqlite_write.attribute_orphans,
            self._config,
            now,
            grace,
            unattributed_name,
        )

    def domain_spend(
        self, since: datetime, until: datetime, exclude_environments: Collection[str] = ()
    ) -> dict[str, float]:
        return self._connection.read(
            "domain_spend",
            sqlite_reads.domain_spend,
            self._config,
            since,
            until,
            exclude_environments,
        )

    def domain_coverage(
        self, since: datetime, until: datetime, exclude_environments: Collection[str] = ()
    ) -> dict[str, tuple[int, int]]:
        return self._connection.read(
            "domain_coverage",
            sqlite_reads.domain_coverage,
            self._config,
            since,
            until,
            exclude_environments,
        )

    def unpriced_reasons(
        self, since: datetime, until: datetime, exclude_environments: Collection[str] = ()
    ) -> list[tuple[str, int]]:
        return self._connection.read(
            "unpriced_reasons", sqlite_reads.unpriced_reasons, since, until, exclude_environments
        )

    def transaction_totals(
        self,
        since: datetime,
        until: datetime,
        exclude_environments: Collection[str] = (),
        *,
        limit: int | None = None,
        names: Collection[str] | None = None,
    ) -> list[SpendRow]:
        return self._connection.read(
            "transaction_totals",
            sqlite_reads.transaction_totals,
            since,
            until,
            exclude_environments,
            limit=limit,
            names=names,
        )

    def domain_totals(
        self, since: datetime, until: datetime, exclude_environments: Collection[str] = ()
    ) -> list[SpendRow]:
        return self._connection.read(
            "domain_totals", sqlite_reads.domain_totals, since, until, exclude_environments
        )

    def hourly_totals(
        self,
        since: datetime,
        until: datetime,
        exclude_environments: Collection[str] = (),
        *,
        by_domain: bool = False,
    ) -> list[HourRow]:
        return self._connection.read(
            "hourly_totals",
            sqlite_reads.hourly_totals,
            since,
            until,
            exclude_environments,
            by_domain=by_domain,
        )

    # -- the allocation (issue 12) ------------------------------------------------------

    def write_usage(
        self,
        nodes: Sequence[tuple[NodeUsage, NodePrice]],
        pods: Sequence[PodUsage],
        now: datetime,
    ) -> None:
        self._connection.transaction("write_usage", sqlite_allocation.write_usage, nodes, pods, now)

    def allocate(self, weights: Weights = DEFAULT_WEIGHTS) -> int:
        hours = self._connection.read("allocate", sqlite_allocation.dirty_hours)
        for hour_ns in hours:
            self._connection.transaction(
                "allocate", sqlite_allocation.allocate_hour, hour_ns, weights, self._config
            )
        return len(hours)

    def allocated_totals(
        self, since: datetime, until: datetime, exclude_environments: Collection[str] = ()
    ) -> list[AllocatedRow]:
        return self._connection.read(
            "allocated_totals",
            sqlite_allocation.allocated_totals,
            since,
            until,
            exclude_environments,
        )

    def allocated_domain_spend(
        self, since: datetime, until: datetime, exclude_environments: Collection[str] = ()
    ) -> dict[str, float] | None:
        return self._connection.read(
            "allocated_domain_spend",
            sqlite_allocation.allocated_domain_spend,
            since,
            until,
            exclude_environments,
        )

    def reconcile(self, since: datetime, until: datetime) -> list[ReconcileRow]:
        return self._connection.read("reconcile", sqlite_allocation.reconcile, since, until)

    def allocation_by_node(
        self, since: datetime, until: datetime, weights: Weights = DEFAULT_WEIGHTS
    ) -> NodeAllocation:
        nodes, pods, busy, per_request = self._connection.read(
            "allocation_by_node", sqlite_allocation.by_node_rows, since, until
        )
        return by_node(nodes, pods, busy, per_request, weights=weights, config=self._config)

    def reprice(
        self,
        since: datetime,
        until: datetime,
        price: Callable[[NodeUsage], NodePrice | None],
        now: datetime,
    ) -> list[RepricedRow]:
        return self._connection.transaction(
            "reprice", sqlite_allocation.reprice, since, until, price, now
        )

    def delete_before(self, cutoff: datetime) -> Deleted:
        """Retention: delete every trace first stored before `cutoff` — its row and all
        its contributions — and the allocation's usage of the hours before it, in one
        transaction; the hourly rollup, the quarantine counts and what was allocated stay
        (as with PostgreSQL, whose equivalent drops monthly partitions).

        Keep far more than ``max_clock_skew``: a span of a deleted trace arriving later
        would start the trace afresh. SQLite reuses the freed pages; the file does not
        shrink (``VACUUM`` does that, offline).
        """
        cutoff_ns = ns_from_utc(cutoff)

        def delete(cursor: sqlite3.Cursor) -> Deleted:
            for table in ALLOCATION_USAGE_TABLES:
                cursor.execute(f"DELETE FROM {table} WHERE hour_ns < ?", (cutoff_ns,))  # noqa: S608 - constant names
            cursor.execute(_DELETE_CHARGES, (cutoff_ns, cutoff_ns))
            cursor.execute(_DELETE_TRACES, (cutoff_ns, cutoff_ns))
            traces = cursor.rowcount
            cursor.execute(_DELETE_CONTRIBUTIONS, (cutoff_ns,))
            return Deleted(traces=traces, contributions=cursor.rowcount)

        deleted = self._connection.transaction("delete_before", delete)
        if deleted.traces or deleted.contributions:
            logger.info(
                "deleted %s traces and %s contributions stored before %s from %s",
                deleted.traces,
                deleted.contributions,
                cutoff.isoformat(),
                self._connection.path,
            )
        return deleted
