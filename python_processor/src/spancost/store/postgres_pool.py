"""The PostgreSQL totals store's connections: a `psycopg_pool.ConnectionPool` whose every
use is one transaction, sessions in UTC, psycopg's errors turned into `StoreError` and
`StoreDataError`, and the DSN's password never in a log line or an error message.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any, Concatenate, Final, ParamSpec, TypeVar

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import ConnectionPool

from spancost.store.base import StoreDataError, StoreError

__all__ = ["Cursor", "Pool", "masked_dsn"]

_MASK: Final = "***"

Cursor = psycopg.Cursor[tuple[Any, ...]]
_T = TypeVar("_T")
_P = ParamSpec("_P")


def masked_dsn(dsn: str) -> str:
    """`dsn` as it may be logged: the password replaced by ``***``."""
    try:
        parameters = conninfo_to_dict(dsn)
    except psycopg.Error:
        return "<unparsable DSN>"
    if "password" in parameters:
        parameters["password"] = _MASK
    return make_conninfo("", **parameters)


class Pool:
    """Connections to one totals database, each borrowed for one transaction.

    Thread-safe; `dsn_for_logs` names the database in log lines and errors.
    """

    def __init__(self, dsn: str, *, max_connections: int, connect_timeout: timedelta) -> None:
        self.dsn_for_logs = masked_dsn(dsn)
        self._password = _passwords(dsn)
        seconds = max(1, round(connect_timeout.total_seconds()))
        try:
            conninfo_to_dict(dsn)
            # Connect once up front: a wrong host or password is reported now, with
            # libpq's reason, rather than as a pool timeout on the first write.
            psycopg.connect(dsn, connect_timeout=seconds).close()
        except psycopg.Error as exc:
            raise StoreError(
                f"cannot connect to PostgreSQL totals store {self.dsn_for_logs}:"
                f" {self._scrub(str(exc))}"
            ) from None  # the cause's text may quote the DSN, password and all
        self._pool: ConnectionPool[psycopg.Connection[tuple[Any, ...]]] = ConnectionPool(
            dsn,
            min_size=1,
            max_size=max_connections,
            kwargs={"autocommit": True, "connect_timeout": seconds},
            configure=_configure,
            timeout=connect_timeout.total_seconds(),
            name="spancost-totals",
            open=True,
        )

    def close(self) -> None:
        self._pool.close()

    def transaction(
        self,
        operation: str,
        work: Callable[Concatenate[Cursor, _P], _T],
        *args: _P.args,
        **kwargs: _P.kwargs,
    ) -> _T:
        """``work(cursor, *args, **kwargs)`` in one transaction: all of it commits, or
        none and it raises; `operation` names it in the error."""
        try:
            with (
                self._pool.connection() as connection,
                connection.transaction(),
                connection.cursor() as cursor,
            ):
                return work(cursor, *args, **kwargs)
        except psycopg.DataError as exc:
            # SQLSTATE class 22 (a value out of range, a text PostgreSQL cannot hold):
            # the same write fails again.
            raise StoreDataError(f"totals store {operation}: {self._scrub(str(exc))}") from exc
        except psycopg.Error as exc:
            raise StoreError(f"totals store {operation}: {self._scrub(str(exc))}") from exc

    def _scrub(self, message: str) -> str:
        for password in self._password:
            message = message.replace(password, _MASK)
        return message


def _passwords(dsn: str) -> list[str]:
    """Every string in `dsn` that may be a password, to scrub from error messages
    (libpq quotes pieces of a DSN it cannot parse)."""
    found = re.findall(r"password\s*=\s*'?([^'\s]+)", dsn)
    found += re.findall(r"://[^:/@]*:([^@]+)@", dsn)
    try:
        password = conninfo_to_dict(dsn).get("password")
    except psycopg.Error:
        password = None
    if password:
        found.append(str(password))
    return sorted({piece for piece in found if piece}, key=len, reverse=True)


def _configure(connection: psycopg.Connection[tuple[Any, ...]]) -> None:
    # Month and hour boundaries are UTC whatever the server's or role's time zone.
    connection.execute("SET TIME ZONE 'UTC'")
