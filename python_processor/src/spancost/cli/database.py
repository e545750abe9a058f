"""The totals store a command's ``--database-url`` names, opened for the command: its
errors become exit codes, and its URL is only ever shown with the password masked."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import click

from spancost.cli.options import UsageFailure
from spancost.errors import SpancostError
from spancost.store.base import StoreError, TotalsStore
from spancost.totals.naming import TotalsConfig

__all__ = ["describe", "open_database"]

logger = logging.getLogger(__name__)


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
