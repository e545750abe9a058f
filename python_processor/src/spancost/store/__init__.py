"""Trace-totals stores: where the totals core's per-trace deltas are kept.

- `base`: the `TotalsStore` protocol every store implements, `WriteResult`, `StoreError`;
- `sqlite`: `SQLiteStore`, the embedded default (stdlib ``sqlite3``, one file).
"""

from spancost.store.base import StoreError, TotalsStore, WriteResult
from spancost.store.sqlite import SQLiteStore

__all__ = ["SQLiteStore", "StoreError", "TotalsStore", "WriteResult"]
