"""Partition upkeep of the PostgreSQL totals store: the monthly partitions of the tables
partitioned by ``keyed_at`` (UTC month, ``<table>_pYYYYMM``), created ahead of the
writes and, for retention, detached and dropped with the rows of those months that
the tables not partitioned hold. No DELETE of a trace: its month goes whole.

`PostgresStore.ensure_partitions` and `drop_partitions_before` run these in one
transaction each; the store passes the tables (`PARTITIONED_TABLES`, which a test of
an older schema replaces).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Final

from psycopg import sql

from spancost.store.base import StoreError
from spancost.store.common import ALLOCATION_USAGE_TABLES, add_months
from spancost.store.postgres_pool import Cursor
from spancost.totals.aggregate import ns_from_utc

__all__ = [
    "PARTITIONED_TABLES",
    "create_missing",
    "drop_before",
    "partition_month",
    "partition_name",
]

logger = logging.getLogger(__name__)

PARTITIONED_TABLES: Final = ("traces", "trace_charges")
_PARTITION_NAME: Final = re.compile(r"^(?P<table>[a-z_]+)_p(?P<year>\d{4})(?P<month>\d{2})$")
# The pg_advisory_xact_lock key of partition DDL (migrations.postgres has the
# migrations'): one store at a time.
_PARTITION_LOCK: Final = 0x5370_6E63_0002


def partition_name(table: str, month: datetime) -> str:
    return f"{table}_p{month.year:04d}{month.month:02d}"


def partition_month(table: str, name: str) -> datetime | None:
    """The month of `table`'s partition `name`, or None: not a name spancost gives."""
    match = _PARTITION_NAME.match(name)
    if match is None or match["table"] != table:
        return None
    return datetime(int(match["year"]), int(match["month"]), 1, tzinfo=UTC)


def create_missing(cursor: Cursor, tables: Sequence[str], months: Sequence[datetime]) -> list[str]:
    """Create the partitions of `tables` for `months` (each a month's first instant) that
    are missing; the names created."""
    cursor.execute("SELECT pg_advisory_xact_lock(%s)", (_PARTITION_LOCK,))
    created: list[str] = []
    for table in tables:
        for month in months:
            name = partition_name(table, month)
            cursor.execute("SELECT to_regclass(%s)", (name,))
            if _one(cursor)[0] is not None:
                continue
            cursor.execute(
                sql.SQL(
                    "CREATE TABLE {partition} PARTITION OF {table}"
                    " FOR VALUES FROM ({start}) TO ({end})"
                ).format(
                    partition=sql.Identifier(name),
                    table=sql.Identifier(table),
                    start=sql.Literal(month),
                    end=sql.Literal(add_months(month, 1)),
                )
            )
            created.append(name)
    return created


def _one(cursor: Cursor) -> tuple[Any, ...]:
    """The one row a statement returns."""
    row = cursor.fetchone()
    if row is None:
        raise StoreError("totals store: a statement that returns a row returned none")
    return row


def drop_before(cursor: Cursor, tables: Sequence[str], boundary: datetime) -> list[str]:
    """Detach and drop every partition of `tables` of a month before `boundary` (a
    month's first instant), and delete the ``trace_keys``, quarantined spans and
    allocation usage before it; the partitions dropped."""
    cursor.execute("SELECT pg_advisory_xact_lock(%s)", (_PARTITION_LOCK,))
    dropped: list[str] = []
    for table in tables:
        cursor.execute(
            "SELECT child.relname FROM pg_inherits"
            " JOIN pg_class child ON child.oid = pg_inherits.inhrelid"
            " WHERE pg_inherits.inhparent = %s::regclass ORDER BY 1",
            (table,),
        )
        for (name,) in cursor.fetchall():
            month = partition_month(table, name)
            if month is None:
                logger.warning("leaving partition %s alone: not named by spancost", name)
                continue
            if month >= boundary:
                continue
            cursor.execute(
                sql.SQL("ALTER TABLE {table} DETACH PARTITION {partition}").format(
                    table=sql.Identifier(table), partition=sql.Identifier(name)
                )
            )
            cursor.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(name)))
            dropped.append(name)
    # One row per trace, not per span, and the (few) quarantined spans: the only
    # rows retention deletes.
    cursor.execute("DELETE FROM trace_keys WHERE keyed_at < %s", (boundary,))
    cursor.execute("DELETE FROM quarantined_spans WHERE keyed_at < %s", (boundary,))
    # The allocation's usage of those months (what repricing would need); what
    # was allocated stays, like the hourly rollup.
    hour_ns = ns_from_utc(boundary)
    for table in ALLOCATION_USAGE_TABLES:
        cursor.execute(
            sql.SQL("DELETE FROM {} WHERE hour_ns < %s").format(sql.Identifier(table)),
            (hour_ns,),
        )
    return dropped
