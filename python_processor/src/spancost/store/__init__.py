"""Trace-totals stores: where the totals core's per-trace deltas are kept.

- `base`: the `TotalsStore` protocol every store implements, `WriteResult`, the query
  rows `SpendRow` and `HourRow`, `StoreError`;
- `common`, `busy`, `allocated`: what the SQL stores share, free of any database (the
  decisions both make; each store only runs its statements);
- `sqlite`: `SQLiteStore`, the embedded default (stdlib ``sqlite3``, one file), over
  `sqlite_connection`, `sqlite_write`, `sqlite_reads` and `sqlite_allocation`;
- `postgres`: `PostgresStore` (psycopg 3), over `postgres_pool`, `postgres_write`,
  `postgres_reads`, `postgres_allocation` and `partitions`;
- `migrations`: each backend's schema versions and the one runner both use;
- `open`: `open_store(url)`, the store a database URL names (empty: SQLite in the data dir).

`SQLiteStore` and `open_store` are imported on first use, so the pure modules that only
need `base` and `common` (``spancost.report``) load no database driver.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from spancost.store.base import HourRow, SpendRow, StoreError, TotalsStore, WriteResult

if TYPE_CHECKING:
    from spancost.store.open import open_store
    from spancost.store.sqlite import SQLiteStore

__all__ = [
    "HourRow",
    "SQLiteStore",
    "SpendRow",
    "StoreError",
    "TotalsStore",
    "WriteResult",
    "open_store",
]


def __getattr__(name: str) -> Any:
    if name == "SQLiteStore":
        from spancost.store.sqlite import SQLiteStore  # noqa: PLC0415

        return SQLiteStore
    if name == "open_store":
        from spancost.store.open import open_store  # noqa: PLC0415

        return open_store
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
