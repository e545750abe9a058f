"""The report's and the guard's queries of the SQLite totals store: spend by domain over
an exact window (`domain_spend`), coverage, unpriced reasons, and the totals by
transaction, domain and hour. Each runs in the caller's (read) transaction; what the
window covers is decided in `spancost.store.common` (`spend_window`, `hour_window`),
as for the PostgreSQL store. Environments to leave out travel as one JSON array.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection
from datetime import datetime

from spancost.store.base import HourRow, SpendRow
from spancost.store.common import (
    PENDING_DOMAIN,
    hour_window,
    net_spend,
    spend_rows,
    spend_window,
)
from spancost.totals.aggregate import ns_from_utc, utc_from_ns
from spancost.totals.naming import TotalsConfig

__all__ = [
    "domain_coverage",
    "domain_spend",
    "domain_totals",
    "hourly_totals",
    "transaction_totals",
    "unpriced_reasons",
]


def domain_spend(
    cursor: sqlite3.Cursor,
    config: TotalsConfig,
    since: datetime,
    until: datetime,
    exclude_environments: Collection[str],
) -> dict[str, float]:
    window = spend_window(since, until)
    rows: list[tuple[str, str, float, int]] = cursor.execute(
        "SELECT domain, environment, sum(cost_usd), sum(traces) FROM domain_hourly"
        " WHERE hour_ns >= ? AND hour_ns < ? AND domain != ? GROUP BY domain, environment",
        (window.hours_start, window.hours_end, PENDING_DOMAIN),
    ).fetchall()
    edge = (
        "SELECT domain, environment, sum(cost_usd), count(*) FROM trace_charges"
        " WHERE first_seen_ns >= ? AND first_seen_ns < ? GROUP BY domain, environment"
        if config.owner_attribute is not None
        else "SELECT domain, coalesce(environment, ''), sum(cost_usd), count(*)"
        " FROM traces WHERE first_seen_ns >= ? AND first_seen_ns < ?"
        " AND domain IS NOT NULL GROUP BY domain, environment"
    )
    for start_ns, end_ns, sign in window.edges:
        rows += [
            (domain, environment, sign * cost, sign * traces)
            for domain, environment, cost, traces in cursor.execute(edge, (start_ns, end_ns))
        ]
    excluded = frozenset(exclude_environments)
    return net_spend(
        (domain, cost, traces)
        for domain, environment, cost, traces in rows
        if environment not in excluded
    )


def domain_coverage(
    cursor: sqlite3.Cursor,
    config: TotalsConfig,
    since: datetime,
    until: datetime,
    exclude_environments: Collection[str],
) -> dict[str, tuple[int, int]]:
    start_ns, end_ns = hour_window(since, until)
    query = (
        "SELECT domain, sum(spans), sum(unpriced_spans) FROM trace_charges"
        " WHERE first_seen_ns >= ? AND first_seen_ns < ?"
        " AND environment NOT IN (SELECT value FROM json_each(?)) GROUP BY domain"
        if config.owner_attribute is not None
        else "SELECT domain, sum(span_count), sum(unpriced_count) FROM traces"
        " WHERE first_seen_ns >= ? AND first_seen_ns < ? AND domain IS NOT NULL"
        " AND coalesce(environment, '') NOT IN (SELECT value FROM json_each(?))"
        " GROUP BY domain"
    )
    rows = cursor.execute(query, (start_ns, end_ns, _json(exclude_environments))).fetchall()
    return {domain: (int(spans), int(unpriced)) for domain, spans, unpriced in rows}


def unpriced_reasons(
    cursor: sqlite3.Cursor,
    since: datetime,
    until: datetime,
    exclude_environments: Collection[str],
) -> list[tuple[str, int]]:
    start_ns, end_ns = hour_window(since, until)
    rows = cursor.execute(
        "SELECT reason, sum(spans) FROM unpriced_reasons"
        " WHERE hour_ns >= ? AND hour_ns < ?"
        " AND environment NOT IN (SELECT value FROM json_each(?))"
        " GROUP BY reason ORDER BY 2 DESC, 1",
        (start_ns, end_ns, _json(exclude_environments)),
    ).fetchall()
    return [(reason, int(spans)) for reason, spans in rows]


def transaction_totals(
    cursor: sqlite3.Cursor,
    since: datetime,
    until: datetime,
    exclude_environments: Collection[str],
    *,
    limit: int | None,
    names: Collection[str] | None,
) -> list[SpendRow]:
    start_ns, end_ns = hour_window(since, until)
    query = (
        "SELECT transaction_name, sum(cost_usd), count(*), sum(span_count) FROM traces"
        " WHERE first_seen_ns >= ? AND first_seen_ns < ? AND transaction_name IS NOT NULL"
        " AND coalesce(environment, '') NOT IN (SELECT value FROM json_each(?))"
        " AND (? IS NULL OR transaction_name IN (SELECT value FROM json_each(?)))"
        " GROUP BY transaction_name ORDER BY 2 DESC, 1 LIMIT ?"
    )
    wanted = None if names is None else _json(names)
    parameters = (
        start_ns,
        end_ns,
        _json(exclude_environments),
        wanted,
        wanted,
        -1 if limit is None else limit,
    )
    return spend_rows(cursor.execute(query, parameters).fetchall())


def domain_totals(
    cursor: sqlite3.Cursor,
    since: datetime,
    until: datetime,
    exclude_environments: Collection[str],
) -> list[SpendRow]:
    query = (
        "SELECT domain, sum(cost_usd), sum(traces), sum(spans) FROM domain_hourly"
        " WHERE hour_ns >= ? AND hour_ns < ?"
        " AND environment NOT IN (SELECT value FROM json_each(?))"
        " GROUP BY domain ORDER BY 2 DESC, 1"
    )
    parameters = (hour_window(since, until)[0], ns_from_utc(until), _json(exclude_environments))
    return spend_rows(cursor.execute(query, parameters).fetchall())


def hourly_totals(
    cursor: sqlite3.Cursor,
    since: datetime,
    until: datetime,
    exclude_environments: Collection[str],
    *,
    by_domain: bool,
) -> list[HourRow]:
    grouping = "hour_ns, domain" if by_domain else "hour_ns"
    query = (
        f"SELECT {grouping}, sum(cost_usd), sum(traces), sum(spans) FROM domain_hourly"  # noqa: S608 - one of two constants
        " WHERE hour_ns >= ? AND hour_ns < ? AND domain != ?"
        " AND environment NOT IN (SELECT value FROM json_each(?))"
        f" GROUP BY {grouping} ORDER BY {grouping}"
    )
    parameters = (
        hour_window(since, until)[0],
        ns_from_utc(until),
        PENDING_DOMAIN,
        _json(exclude_environments),
    )
    rows = cursor.execute(query, parameters).fetchall()
    if by_domain:
        return [
            HourRow(utc_from_ns(hour_ns), float(cost), traces, spans, domain)
            for hour_ns, domain, cost, traces, spans in rows
        ]
    return [
        HourRow(utc_from_ns(hour_ns), float(cost), traces, spans)
        for hour_ns, cost, traces, spans in rows
    ]


def _json(names: Collection[str]) -> str:
    """`names` as the one JSON array a query reads with ``json_each``, sorted."""
    return json.dumps(sorted(names))
