"""The one migration runner of both totals stores: the versions of a backend's list not
yet recorded in ``schema_migrations`` are applied in order, each once, in the caller's
transaction (all of them commit, or none).

What differs between the backends is data: the list (`migrations.sqlite`,
`migrations.postgres`) and the `Ledger`, how the backend keeps ``schema_migrations``
(as each first created it: an existing database's table is never changed) and what
keeps two runners apart.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple, Protocol

__all__ = ["Cursor", "Ledger", "Migration", "migrate"]

logger = logging.getLogger(__name__)

Migration = tuple[int, tuple[str, ...]]
"""(version, statements)."""


class Cursor(Protocol):
    """What the runner needs of a DB-API cursor (``sqlite3``'s, psycopg's)."""

    def execute(self, query: str, params: Any = ..., /) -> Iterable[Any]: ...


class Ledger(NamedTuple):
    """How one backend records the versions applied."""

    create: str
    """Creates ``schema_migrations`` if it is missing."""
    record: str
    """Records one version applied, with the parameters `parameters` gives."""
    parameters: Callable[[int], tuple[object, ...]]
    """The parameters of `record` for a version."""
    lock: tuple[str, tuple[object, ...]] | None = None
    """A statement that waits for any other runner to commit, run first (None: the
    caller's transaction already excludes other writers)."""


def migrate(cursor: Cursor, migrations: Sequence[Migration], ledger: Ledger, target: str) -> None:
    """Apply the `migrations` not recorded yet, in order, logging each against `target`
    (the database, fit for a log line)."""
    if ledger.lock is not None:
        cursor.execute(*ledger.lock)
    cursor.execute(ledger.create)
    applied = {row[0] for row in cursor.execute("SELECT version FROM schema_migrations")}
    for version, statements in migrations:
        if version in applied:
            continue
        logger.info("applying totals schema migration %s to %s", version, target)
        for statement in statements:
            cursor.execute(statement)
        cursor.execute(ledger.record, ledger.parameters(version))
