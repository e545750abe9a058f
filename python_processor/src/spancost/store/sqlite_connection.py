"""The SQLite totals store's connection: one ``sqlite3`` connection (WAL, ``synchronous
= FULL``) guarded by a lock, each use one transaction, ``sqlite3``'s errors turned
into `StoreError` and `StoreDataError`.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Concatenate, ParamSpec, TypeVar

from spancost.store.base import StoreDataError, StoreError

__all__ = ["Connection"]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")
_P = ParamSpec("_P")


class Connection:
    """One connection to a totals file, each use one transaction.

    Thread-safe (a lock guards the connection); several connections, in threads or
    processes, may open the same file. `path` names it in log lines and errors.
    """

    def __init__(self, path: str | Path, *, busy_timeout: timedelta) -> None:
        self._lock = threading.Lock()
        try:
            # isolation_level=None: no implicit transactions; every method opens its own.
            self._connection = sqlite3.connect(
                path,
                timeout=busy_timeout.total_seconds(),
                isolation_level=None,
                check_same_thread=False,
            )
            self._connection.execute("PRAGMA journal_mode = WAL")
            # FULL: a batch acknowledged to the exporter survives a power loss, not only a crash.
            self._connection.execute("PRAGMA synchronous = FULL")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open SQLite totals store {str(path)!r}: {exc}") from exc
        self.path = str(path)

    def close(self) -> None:
        with self._lock:
            self._connection.close()

    def transaction(
        self,
        operation: str,
        work: Callable[Concatenate[sqlite3.Cursor, _P], _T],
        *args: _P.args,
        **kwargs: _P.kwargs,
    ) -> _T:
        """``work(cursor, *args, **kwargs)`` in one transaction that may write: all of it
        commits, or none and it raises; `operation` names it in the error. It begins
        IMMEDIATE: the write lock up front, so two writers never deadlock upgrading a
        read lock."""
        return self._run(operation, "BEGIN IMMEDIATE", lambda cursor: work(cursor, *args, **kwargs))

    def read(
        self,
        operation: str,
        work: Callable[Concatenate[sqlite3.Cursor, _P], _T],
        *args: _P.args,
        **kwargs: _P.kwargs,
    ) -> _T:
        """``work(cursor, *args, **kwargs)`` in one transaction that only reads: it begins
        DEFERRED and does not block writers (WAL)."""
        return self._run(operation, "BEGIN", lambda cursor: work(cursor, *args, **kwargs))

    def _run(self, operation: str, begin: str, work: Callable[[sqlite3.Cursor], _T]) -> _T:
        with self._lock:
            try:
                cursor = self._connection.cursor()
                cursor.execute(begin)
            except sqlite3.Error as exc:
                raise StoreError(f"totals store {operation}: {exc}") from exc
            try:
                result = work(cursor)
                cursor.execute("COMMIT")
            except BaseException as exc:
                try:
                    self._connection.rollback()
                except sqlite3.Error:
                    logger.warning("totals store %s: rollback failed", operation, exc_info=True)
                if isinstance(exc, sqlite3.DataError | sqlite3.IntegrityError | OverflowError):
                    # A value SQLite cannot hold (an integer beyond 64 bits, a CHECK):
                    # the same write fails again.
                    raise StoreDataError(f"totals store {operation}: {exc}") from exc
                if isinstance(exc, sqlite3.Error):
                    raise StoreError(f"totals store {operation}: {exc}") from exc
                raise
            return result
