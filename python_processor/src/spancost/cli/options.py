"""Command-line options shared by the ``spancost`` commands, so each reads the same
flag, the same environment variable and the same help."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from spancost.log import LOG_LEVELS

__all__ = ["database_url_option", "log_level_option"]

_F = TypeVar("_F", bound=Callable[..., Any])


def database_url_option(function: _F) -> _F:
    """``--database-url`` (env ``DATABASE_URL``): the totals store, as `open_store` reads it."""
    return click.option(
        "--database-url",
        envvar="DATABASE_URL",
        default="",
        show_envvar=True,
        metavar="URL",
        help="postgresql://user:password@host/db, sqlite:///path/to/totals.db, or empty for "
        "the embedded SQLite file in $SPANCOST_DATA_DIR (default ~/.local/share/spancost).",
    )(function)


def log_level_option(default: str = "info") -> Callable[[_F], _F]:
    """``--log-level`` (env ``SPANCOST_LOG_LEVEL``) with `default`."""
    return click.option(
        "--log-level",
        envvar="SPANCOST_LOG_LEVEL",
        type=click.Choice(LOG_LEVELS, case_sensitive=False),
        default=default,
        show_default=True,
        help="Log level of the lines on stderr (env SPANCOST_LOG_LEVEL).",
    )
