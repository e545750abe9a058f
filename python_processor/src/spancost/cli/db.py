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

from datetime import UTC, datetime
from typing import Final

import click

from spancost.cli.database import describe, open_database
from spancost.cli.options import UtcDateTime, database_url_option, log_level_option
from spancost.log import configure_logging
from spancost.store.common import DEFAULT_RETENTION_MONTHS, retention_cutoff

__all__ = ["DEFAULT_MONTHS_AHEAD", "db"]

DEFAULT_MONTHS_AHEAD: Final = 2


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
