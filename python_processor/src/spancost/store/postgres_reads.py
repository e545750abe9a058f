"""The report's and the guard's queries of the PostgreSQL totals store: spend by domain
over an exact window (`domain_spend`), coverage, unpriced reasons, and the totals by
transaction, domain and hour. Each runs in the caller's transaction; what the window
covers is decided in `spancost.store.common` (`spend_window`, `hour_window`), as for
the SQLite store.

Windows over trace rows also bound ``keyed_at`` (``keyed_at <= first_seen``), so the
planner skips the partitions of later months.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any, Final

from spancost.store.base import HourRow, SpendRow
from spancost.store.common import (
    PENDING_DOMAIN,
    hour_window,
    net_spend,
    spend_rows,
    spend_window,
)
from spancost.store.postgres_pool import Cursor
from spancost.totals.aggregate import utc_from_ns
from spancost.totals.naming import TotalsConfig

__all__ = [
    "domain_coverage",
    "domain_spend",
    "domain_totals",
    "hourly_totals",
    "transaction_totals",
    "unpriced_reasons",
]

# The trace rows first seen in the window; ``keyed_at <= first_seen`` lets the planner
# skip the partitions of later months.
_TRANSACTION_TOTALS: Final = """
SELECT transaction_name, sum(cost_usd), count(*), sum(span_count) FROM traces
WHERE first_seen >= %(start)s AND first_seen < %(end)s AND keyed_at < %(end)s
    AND transaction_name IS NOT NULL
    AND coalesce(environment, '') <> ALL(%(exclude)s::text[])
    AND (%(names)s::text[] IS NULL OR transaction_name = ANY(%(names)s::text[]))
GROUP BY transaction_name
ORDER BY 2 DESC, 1
LIMIT %(limit)s
"""

_DOMAIN_COVERAGE: Final = """
SELECT domain, sum(span_count), sum(unpriced_count) FROM traces
WHERE first_seen >= %(start)s AND first_seen < %(end)s AND keyed_at < %(end)s
    AND domain IS NOT NULL AND coalesce(environment, '') <> ALL(%(exclude)s::text[])
GROUP BY domain
"""

_CHARGES_COVERAGE: Final = """
SELECT domain, sum(spans), sum(unpriced_spans) FROM trace_charges
WHERE first_seen >= %(start)s AND first_seen < %(end)s AND keyed_at < %(end)s
    AND environment <> ALL(%(exclude)s::text[])
GROUP BY domain
"""

# The cost, and the traces, first seen in [start, end): the edges of domain_spend's
# window. keyed_at <= first_seen: the partitions after `end` are pruned.
_TRACES_FIRST_SEEN: Final = """
SELECT domain, sum(cost_usd), count(*) FROM traces
WHERE first_seen >= %s AND first_seen < %s AND keyed_at < %s
    AND domain IS NOT NULL AND coalesce(environment, '') <> ALL(%s::text[])
GROUP BY domain
"""

_CHARGES_FIRST_SEEN: Final = """
SELECT domain, sum(cost_usd), count(*) FROM trace_charges
WHERE first_seen >= %s AND first_seen < %s AND keyed_at < %s
    AND environment <> ALL(%s::text[])
GROUP BY domain
"""

_UNPRICED_REASONS: Final = """
SELECT reason, sum(spans) FROM unpriced_reasons
WHERE hour >= %(start)s AND hour < %(end)s AND environment <> ALL(%(exclude)s::text[])
GROUP BY reason
ORDER BY 2 DESC, 1
"""

_DOMAIN_TOTALS: Final = """
SELECT domain, sum(cost_usd), sum(traces), sum(spans) FROM domain_hourly
WHERE hour >= %(start)s AND hour < %(until)s AND environment <> ALL(%(exclude)s::text[])
GROUP BY domain
ORDER BY 2 DESC, 1
"""

_HOURLY_TOTALS: Final = """
SELECT hour, sum(cost_usd), sum(traces), sum(spans) FROM domain_hourly
WHERE hour >= %(start)s AND hour < %(until)s AND domain <> %(pending)s
    AND environment <> ALL(%(exclude)s::text[])
GROUP BY hour
ORDER BY hour
"""

_HOURLY_DOMAIN_TOTALS: Final = """
SELECT hour, domain, sum(cost_usd), sum(traces), sum(spans) FROM domain_hourly
WHERE hour >= %(start)s AND hour < %(until)s AND domain <> %(pending)s
    AND environment <> ALL(%(exclude)s::text[])
GROUP BY hour, domain
ORDER BY hour, domain
"""


def domain_spend(
    cursor: Cursor,
    config: TotalsConfig,
    since: datetime,
    until: datetime,
    exclude_environments: Collection[str],
) -> dict[str, float]:
    window = spend_window(since, until)
    excluded = sorted(exclude_environments)
    edge = _CHARGES_FIRST_SEEN if config.owner_attribute is not None else _TRACES_FIRST_SEEN
    cursor.execute(
        "SELECT domain, sum(cost_usd), sum(traces) FROM domain_hourly"
        " WHERE hour >= %s AND hour < %s AND domain <> %s"
        " AND environment <> ALL(%s::text[]) GROUP BY domain",
        (
            utc_from_ns(window.hours_start),
            utc_from_ns(window.hours_end),
            PENDING_DOMAIN,
            excluded,
        ),
    )
    rows = [(domain, float(cost), int(traces)) for domain, cost, traces in cursor]
    for start_ns, end_ns, sign in window.edges:
        # timestamptz holds microseconds: both bounds rounded up to one select
        # exactly the stored times in [start_ns, end_ns).
        start, end = utc_from_ns(start_ns + 999), utc_from_ns(end_ns + 999)
        # keyed_at <= first_seen: the partitions after `end` are pruned.
        cursor.execute(edge, (start, end, end, excluded))
        rows += [
            (domain, sign * float(cost), sign * int(traces)) for domain, cost, traces in cursor
        ]
    return net_spend(rows)


def domain_coverage(
    cursor: Cursor,
    config: TotalsConfig,
    since: datetime,
    until: datetime,
    exclude_environments: Collection[str],
) -> dict[str, tuple[int, int]]:
    query = _CHARGES_COVERAGE if config.owner_attribute is not None else _DOMAIN_COVERAGE
    cursor.execute(query, _hours(since, until, exclude_environments))
    return {domain: (int(spans), int(unpriced)) for domain, spans, unpriced in cursor}


def unpriced_reasons(
    cursor: Cursor, since: datetime, until: datetime, exclude_environments: Collection[str]
) -> list[tuple[str, int]]:
    cursor.execute(_UNPRICED_REASONS, _hours(since, until, exclude_environments))
    return [(reason, int(spans)) for reason, spans in cursor]


def transaction_totals(
    cursor: Cursor,
    since: datetime,
    until: datetime,
    exclude_environments: Collection[str],
    *,
    limit: int | None,
    names: Collection[str] | None,
) -> list[SpendRow]:
    parameters = {
        **_hours(since, until, exclude_environments),
        "names": None if names is None else sorted(names),
        "limit": limit,
    }
    cursor.execute(_TRANSACTION_TOTALS, parameters)
    return spend_rows(cursor)


def domain_totals(
    cursor: Cursor, since: datetime, until: datetime, exclude_environments: Collection[str]
) -> list[SpendRow]:
    parameters = {
        "start": _hour(since),
        "until": until,
        "exclude": sorted(exclude_environments),
    }
    cursor.execute(_DOMAIN_TOTALS, parameters)
    return spend_rows(cursor)


def hourly_totals(
    cursor: Cursor,
    since: datetime,
    until: datetime,
    exclude_environments: Collection[str],
    *,
    by_domain: bool,
) -> list[HourRow]:
    parameters = {
        "start": _hour(since),
        "until": until,
        "pending": PENDING_DOMAIN,
        "exclude": sorted(exclude_environments),
    }
    if by_domain:
        cursor.execute(_HOURLY_DOMAIN_TOTALS, parameters)
        return [
            HourRow(hour.astimezone(UTC), float(cost), int(traces), int(spans), domain)
            for hour, domain, cost, traces, spans in cursor
        ]
    cursor.execute(_HOURLY_TOTALS, parameters)
    return [
        HourRow(hour.astimezone(UTC), float(cost), int(traces), int(spans))
        for hour, cost, traces, spans in cursor
    ]


def _hours(
    since: datetime, until: datetime, exclude_environments: Collection[str]
) -> dict[str, Any]:
    """The parameters of a query over the whole hours of a window (`hour_window`)."""
    start_ns, end_ns = hour_window(since, until)
    return {
        "start": utc_from_ns(start_ns),
        "end": utc_from_ns(end_ns),
        "exclude": sorted(exclude_environments),
    }


def _hour(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
