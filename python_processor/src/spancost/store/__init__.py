"""Trace-totals stores: where the totals core's per-trace deltas are kept.

- `base`: the `TotalsStore` protocol every store implements, `WriteResult`, `StoreError`;
- `sqlite`: `SQLiteStore`, the embedded default (stdlib ``sqlite3``, one file);
- `postgres`: `PostgresStore` (psycopg 3);
- `open`: `open_store(url)`, the store a database URL names (empty: SQLite in the data dir).
"""

from spancost.store.base import StoreError, TotalsStore, WriteResult
from spancost.store.open import open_store
from spancost.store.sqlite import SQLiteStore

__all__ = ["SQLiteStore", "StoreError", "TotalsStore", "WriteResult", "open_store"]
