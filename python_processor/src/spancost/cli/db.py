"""``spancost db``: create, upgrade and maintain the totals database.

- ``spancost db migrate``: create or upgrade the schema (PostgreSQL or SQLite);
- ``spancost db maintain``: migrate, then for PostgreSQL create the monthly partitions
  ahead and drop those older than the retention; for SQLite delete the traces older
  than the retention (SQLite has no partitions). Idempotent: meant for a CronJob.

The database comes from ``--database-url`` or ``$DATABASE_URL``; empty means the
embedded SQLite file in the data directory (`spancost.store.open`). A URL is only ever
shown with its password masked.

Exit codes: 0 done; 1 the database failed (unreachable, a wrong password, an SQL error);
2 usage: a URL of an unknown kind, a bad flag.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, Final, TypeVar

import click

from spancost.cli.options import database_url_option, log_level_option
from spancost.errors import SpancostError
from spancost.log import configure_logging
from spancost.store.base import StoreError, TotalsStore
from spancost.store.common import DEFAULT_RETENTION_MONTHS, retention_cutoff
from spancost.totals.naming import TotalsConfig

__all__ = [
    "DEFAULT_MONTHS_AHEAD",
    "DEFAULT_RETENTION_MONTHS",
    "UsageFailure",
    "db",
    "open_database",
    "retention_cutoff",
    "window",
    "window_options",
]

logger = logging.getLogger(__name__)

_F = TypeVar("_F", bound=Callable[..., Any])

DEFAULT_MONTHS_AHEAD: Final = 2
EXIT_USAGE: Final = 2


class UsageFailure(click.ClickException):
    """An error the user fixes by changing how spancost is run (exit code 2)."""

    exit_code = EXIT_USAGE


class UtcDateTime(click.ParamType[datetime]):
    """An ISO 8601 instant; without an offset it is taken as UTC."""

    name = "ISO-TIME"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            moment = datetime.fromisoformat(str(value).strip())
        except ValueError:
            self.fail(f"{value!r} is not an ISO 8601 time such as 2025-01-31T12:00:00Z", param, ctx)
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def window_options(function: _F) -> _F:
    """``--since``, ``--from`` and ``--to``, the window `window` reads."""
    for option in reversed(
        (
            click.option(
                "--since", "since_text", metavar="DURATION", help="Look back this far: 7d, 24h."
            ),
            click.option(
                "--from", "from_time", type=UtcDateTime(), help="Start (ISO 8601); or --since."
            ),
            click.option(
                "--to", "to_time", type=UtcDateTime(), help="End (ISO 8601); default now."
            ),
        )
    ):
        function = option(function)
    return function


def window(
    since_text: str | None, from_time: datetime | None, to_time: datetime | None
) -> tuple[datetime, datetime]:
    """The window of a command taking ``--since`` or ``--from``, and ``--to`` (default now):
    (since, until), not empty, or a `UsageFailure` naming the flag."""
    from spancost.errors import ConfigError  # noqa: PLC0415
    from spancost.report import parse_span  # noqa: PLC0415

    if (since_text is None) == (from_time is None):
        raise UsageFailure("give one of --since and --from")
    until = to_time if to_time is not None else datetime.now(UTC)
    try:
        since = from_time if from_time is not None else until - parse_span(since_text or "")
    except ConfigError as exc:
        raise UsageFailure(f"{exc.key}: {exc.message}") from exc
    if since >= until:
        raise UsageFailure(f"the window is empty: {since.isoformat()} is not before {until}")
    return since, until


@contextmanager
def open_database(url: str, config: TotalsConfig | None = None) -> Iterator[TotalsStore]:
    """The store `url` names, closed afterwards; errors become exit codes 2 (the URL
    cannot be understood) or 1 (the database cannot be reached or failed)."""
    from spancost.store.open import describe_url, open_store  # noqa: PLC0415

    try:
        where = describe_url(url)
    except StoreError as exc:
        raise UsageFailure(f"--database-url / DATABASE_URL: {exc}") from exc
    try:
        store = open_store(url, config, max_connections=1)
    except SpancostError as exc:
        raise click.ClickException(str(exc)) from exc
    logger.debug("totals store %s", where)
    try:
        yield store
    except SpancostError as exc:
        raise click.ClickException(f"{where}: {exc}") from exc
    finally:
        store.close()


def describe(url: str) -> str:
    """`url` as it may be printed (password masked)."""
    from spancost.store.open import describe_url  # noqa: PLC0415

    return describe_url(url)


@click.group()
@log_level_option()
def db(log_level: str) -> None:
    """Create, upgrade and maintain the totals database (PostgreSQL or SQLite)."""
    configure_logging(log_level)


@db.command()
@database_url_option
def migrate(*, database_url: str) -> None:
    """Create or upgrade the totals schema; safe to run again, and from several places
    at once."""
    with open_database(database_url) as store:
        store.migrate()
    click.echo(f"totals schema of {describe(database_url)} is up to date")


_now_option = click.option(
    "--now",
    type=UtcDateTime(),
    default=None,
    hidden=True,
    help="Act as if it were this time (tests).",
)


@db.command()
@database_url_option
@click.option(
    "--retention-months",
    type=click.IntRange(min=1),
    default=DEFAULT_RETENTION_MONTHS,
    show_default=True,
    help="Keep the current month and this many whole months before it; older traces go "
    "(PostgreSQL: their monthly partitions are dropped; SQLite: their rows are deleted).",
)
@click.option(
    "--months-ahead",
    type=click.IntRange(min=0, max=24),
    default=DEFAULT_MONTHS_AHEAD,
    show_default=True,
    help="PostgreSQL: create the partitions of this many months after the current one.",
)
@_now_option
def maintain(
    *, database_url: str, retention_months: int, months_ahead: int, now: datetime | None
) -> None:
    """Migrate, create partitions ahead and apply the retention; idempotent (run it daily,
    e.g. as a Kubernetes CronJob)."""
    from spancost.store.postgres import PostgresStore  # noqa: PLC0415
    from spancost.store.sqlite import SQLiteStore  # noqa: PLC0415

    moment = now if now is not None else datetime.now(UTC)
    cutoff = retention_cutoff(moment, retention_months)
    where = describe(database_url)
    with open_database(database_url) as store:
        store.migrate()
        if isinstance(store, PostgresStore):
            created = store.ensure_partitions(moment, months_ahead=months_ahead)
            dropped = store.drop_partitions_before(cutoff)
            click.echo(f"{where}: partitions created: {', '.join(created) or 'none'}")
            click.echo(
                f"{where}: partitions dropped (before {cutoff:%Y-%m}):"
                f" {', '.join(dropped) or 'none'}"
            )
        elif isinstance(store, SQLiteStore):
            deleted = store.delete_before(cutoff)
            click.echo(
                f"{where}: deleted {deleted.traces} traces and {deleted.contributions}"
                f" contributions stored before {cutoff:%Y-%m-%d}"
            )
        else:  # pragma: no cover - open_store returns one of the two
            raise click.ClickException(f"{where}: no maintenance for {type(store).__name__}")
