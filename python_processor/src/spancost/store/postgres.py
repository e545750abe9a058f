"""The shared trace-totals store: PostgreSQL through psycopg 3 and a `ConnectionPool`.

Same semantics as `spancost.store.sqlite` (see the README section "Totals store:
PostgreSQL"); what differs is how PostgreSQL gives them:

- ``traces`` is declaratively range-partitioned by month of ``keyed_at``, the time the
  trace id was first seen, taken from the one-row-per-trace table ``trace_keys`` (not
  partitioned). Every span of a trace therefore lands in the row of the trace's month,
  whenever it arrives, even in a later month.
- A write locks the ``trace_keys`` row of each trace it touches, in sorted order, then
  stores only the spans not stored yet (`spancost.store.postgres_write`).
- Retention drops whole partitions (`drop_partitions_before`); it never DELETEs
  traces (only the per-trace keys and the quarantined spans).
- The allocation (issue 12) as in SQLite: whatever changes an hour's busy time or
  usage locks the hour's ``allocation_dirty`` row, last, until it commits; `allocate`
  locks that row before reading the hour (`spancost.store.postgres_allocation`).

`PostgresStore` says which transaction each operation takes and runs the statements
of the modules beside it in it:

- `postgres_pool`: the connections, a transaction each, errors without the password;
- `postgres_write`: the write path (`write`, `attribute_orphans`);
- `postgres_reads`: the report's and the guard's queries of the totals;
- `postgres_allocation`: the allocation's usage, allocation, reads and repricing;
- `partitions`: the monthly partitions, created ahead and dropped for retention;
- `migrations.postgres`: the schema, applied by `migrations.runner`.

Times are ``timestamptz`` (sessions run in UTC), span times bigint nanoseconds.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from spancost.allocation.core import DEFAULT_WEIGHTS, Weights
from spancost.allocation.usage import NodeUsage, PodUsage
from spancost.store import partitions, postgres_allocation, postgres_reads, postgres_write
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
from spancost.store.common import PENDING_DOMAIN, add_months, month_start
from spancost.store.migrations import runner
from spancost.store.migrations.postgres import LEDGER, MIGRATIONS
from spancost.store.partitions import PARTITIONED_TABLES  # read at each call: a test replaces it
from spancost.store.postgres_pool import Cursor, Pool, masked_dsn
from spancost.totals.aggregate import Quarantined, SpanContribution, ns_from_utc
from spancost.totals.naming import TotalsConfig

if TYPE_CHECKING:
    from spancost.allocation.pricing import NodePrice

__all__ = ["PENDING_DOMAIN", "PostgresStore", "masked_dsn"]

logger = logging.getLogger(__name__)


class PostgresStore:
    """`TotalsStore` and `AllocationStore` over a PostgreSQL database (see the module
    docstring).

    Thread-safe: every operation borrows a connection from the pool for one
    transaction. Several stores, in several processes or hosts, may share a database.
    """

    def __init__(
        self,
        dsn: str,
        config: TotalsConfig | None = None,
        *,
        max_connections: int = 4,
        connect_timeout: timedelta = timedelta(seconds=10),
    ) -> None:
        self._config = config if config is not None else TotalsConfig()
        self._pool = Pool(dsn, max_connections=max_connections, connect_timeout=connect_timeout)
        self._months: set[datetime] = set()
        logger.info("PostgreSQL totals store %s", self._pool.dsn_for_logs)

    def close(self) -> None:
        self._pool.close()

    @property
    def config(self) -> TotalsConfig:
        return self._config

    def use_config(self, config: TotalsConfig) -> None:
        self._config = config

    def save_setting(self, name: str, value: str, now: datetime) -> str | None:
        def save(cursor: Cursor) -> str | None:
            cursor.execute(
                "SELECT value FROM store_settings WHERE name = %(name)s FOR UPDATE",
                {"name": name},
            )
            row = cursor.fetchone()
            cursor.execute(
                "INSERT INTO store_settings (name, value, updated_ns)"
                " VALUES (%(name)s, %(value)s, %(now)s)"
                " ON CONFLICT (name) DO UPDATE SET value = excluded.value,"
                " updated_ns = excluded.updated_ns",
                {"name": name, "value": value, "now": ns_from_utc(now)},
            )
            return None if row is None else str(row[0])

        return self._pool.transaction("save_setting", save)

    def setting(self, name: str) -> str | None:
        def read(cursor: Cursor) -> str | None:
            cursor.execute("SELECT to_regclass('store_settings') IS NOT NULL")
            exists = cursor.fetchone()
            if not exists or not exists[0]:  # not migrated that far: nothing saved
                return None
            cursor.execute("SELECT value FROM store_settings WHERE name = %(name)s", {"name": name})
            row = cursor.fetchone()
            return None if row is None else str(row[0])

        return self._pool.transaction("setting", read)

    def migrate(self) -> None:
        self._pool.transaction(
            "migrate", runner.migrate, MIGRATIONS, LEDGER, self._pool.dsn_for_logs
        )

    def ensure_partitions(self, now: datetime, months_ahead: int = 2) -> list[str]:
        """Create the monthly partitions from `now`'s month (UTC) to `months_ahead` after
        it, those missing; return the names created."""
        months = [add_months(month_start(now), offset) for offset in range(months_ahead + 1)]
        created = self._pool.transaction(
            "ensure_partitions", partitions.create_missing, PARTITIONED_TABLES, months
        )
        self._months.update(months)
        if created:
            logger.info("created totals partitions %s", ", ".join(created))
        return created

    def drop_partitions_before(self, cutoff: datetime) -> list[str]:
        """Detach and drop every monthly partition entirely before `cutoff`, with the
        ``trace_keys`` of those months; return the names dropped.

        Keep more than ``max_clock_skew`` (plus the longest trace): a span of a dropped
        trace arriving later would start the trace afresh.
        """
        boundary = month_start(cutoff)
        dropped = self._pool.transaction(
            "drop_partitions_before", partitions.drop_before, PARTITIONED_TABLES, boundary
        )
        self._months = {month for month in self._months if month >= boundary}
        if dropped:
            logger.info("dropped totals partitions %s", ", ".join(dropped))
        return dropped

    def write(
        self,
        contributions: Sequence[SpanContribution],
        quarantined: Sequence[Quarantined],
        now: datetime,
    ) -> WriteResult:
        if not contributions and not quarantined:
            return WriteResult()
        if month_start(now) not in self._months:
            self.ensure_partitions(now)
        return self._pool.transaction(
            "write", postgres_write.write, self._config, contributions, quarantined, now
        )

    def attribute_orphans(self, now: datetime, grace: timedelta, unattributed_name: str) -> int:
        return self._pool.transaction(
            "attribute_orphans",
            postgres_write.attribute_orphans,
            self._config,
            now,
            grace,
            unattributed_name,
        )

    def domain_spend(
        self, since: datetime, until: datetime, exclude_environments: Collection[str] = ()
    ) -> dict[str, float]:
        return self._pool.transaction(
            "domain_spend",
            postgres_reads.domain_spend,
            self._config,
            since,
            until,
            exclude_environments,
        )

    def domain_coverage(
        self, since: datetime, until: datetime, exclude_environments: Collection[str] = ()
    ) -> dict[str, tuple[int, int]]:
        return self._pool.transaction(
            "domain_coverage",
            postgres_reads.domain_coverage,
            self._config,
            since,
            until,
            exclude_environments,
        )

    def unpriced_reasons(
        self, since: datetime, until: datetime, exclude_environments: Collection[str] = ()
    ) -> list[tuple[str, int]]:
        return self._pool.transaction(
            "unpriced_reasons", postgres_reads.unpriced_reasons, since, until, exclude_environments
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
        return self._pool.transaction(
            "transaction_totals",
            postgres_reads.transaction_totals,
            since,
            until,
            exclude_environments,
            limit=limit,
            names=names,
        )

    def domain_totals(
        self, since: datetime, until: datetime, exclude_environments: Collection[str] = ()
    ) -> list[SpendRow]:
        return self._pool.transaction(
            "domain_totals", postgres_reads.domain_totals, since, until, exclude_environments
        )

    def hourly_totals(
        self,
        since: datetime,
        until: datetime,
        exclude_environments: Collection[str] = (),
        *,
        by_domain: bool = False,
    ) -> list[HourRow]:
        return self._pool.transaction(
            "hourly_totals",
            postgres_reads.hourly_totals,
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
        self._pool.transaction("write_usage", postgres_allocation.write_usage, nodes, pods, now)

    def allocate(self, weights: Weights = DEFAULT_WEIGHTS) -> int:
        """Allocate every hour marked since it was last allocated, each in a transaction of
        its own; the number allocated by this call.

        Each hour's transaction first locks the hour's ``allocation_dirty`` row (waiting
        for the writes to the hour in flight, which hold it until they commit) and only
        then reads the hour's usage and busy time. While it holds the row, no change to
        the hour can commit: its mark waits for the row. So the allocation reads every
        change marked before it, and deleting the row loses none: a change that waited
        inserts the row again once it is gone, and a later call allocates the hour anew.
        A second allocator waits on the same row and then finds it gone: it skips the
        hour (or finds it marked again, and allocates it again).
        """
        hours = self._pool.transaction("allocate", postgres_allocation.dirty_hours)
        allocated = 0
        for hour_ns in hours:
            if self._pool.transaction(
                "allocate", postgres_allocation.allocate_hour, hour_ns, weights, self._config
            ):
                allocated += 1
        return allocated

    def allocated_totals(
        self, since: datetime, until: datetime, exclude_environments: Collection[str] = ()
    ) -> list[AllocatedRow]:
        return self._pool.transaction(
            "allocated_totals",
            postgres_allocation.allocated_totals,
            since,
            until,
            exclude_environments,
        )

    def allocated_domain_spend(
        self, since: datetime, until: datetime, exclude_environments: Collection[str] = ()
    ) -> dict[str, float] | None:
        return self._pool.transaction(
            "allocated_domain_spend",
            postgres_allocation.allocated_domain_spend,
            since,
            until,
            exclude_environments,
        )

    def reconcile(self, since: datetime, until: datetime) -> list[ReconcileRow]:
        return self._pool.transaction("reconcile", postgres_allocation.reconcile, since, until)

    def allocation_by_node(
        self, since: datetime, until: datetime, weights: Weights = DEFAULT_WEIGHTS
    ) -> NodeAllocation:
        nodes, pods, busy, per_request = self._pool.transaction(
            "allocation_by_node", postgres_allocation.by_node_rows, since, until
        )
        return by_node(nodes, pods, busy, per_request, weights=weights, config=self._config)

    def reprice(
        self,
        since: datetime,
        until: datetime,
        price: Callable[[NodeUsage], NodePrice | None],
        now: datetime,
    ) -> list[RepricedRow]:
        return self._pool.transaction(
            "reprice", postgres_allocation.reprice, since, until, price, now
        )
