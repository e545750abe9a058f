"""A SQLite totals store holding a given 24 h spend per domain: what the guard reads."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from pathlib import Path

from spancost.store import SQLiteStore
from spancost.totals import split
from spancost.totals.aggregate import SpanContribution, ns_from_utc


def store_with(path: Path, now: datetime, **spend: float) -> SQLiteStore:
    """A SQLite totals store where each domain spent `spend[domain]` USD in production."""
    store = SQLiteStore(path)
    store.migrate()
    spans = [
        SpanContribution(
            trace_id=uuid.uuid4().hex,
            span_id=f"{index + 1:016x}",
            start_ns=ns_from_utc(now) - 10**9,
            end_ns=ns_from_utc(now),
            cost_usd=cost,
            is_root=True,
            name=domain,
            service="web",
            environment="production",
        )
        for index, (domain, cost) in enumerate(spend.items())
    ]
    accepted, quarantined = split(spans, now, timedelta(hours=2))
    store.write(accepted, quarantined, now)
    return store
