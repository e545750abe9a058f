"""What the ``spancost`` commands share, so that each reads the same flag, the same
environment variable and the same help, and fails the same way: the usage error (exit
code 2), ``--log-level``, ``--database-url``, the sidecar's address (``--listen``) and
the window (``--since``, ``--from``, ``--to``)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final, TypeVar

import click

from spancost.errors import ListenAddressError
from spancost.log import LOG_LEVELS
from spancost.sidecar.address import ListenAddress, parse_listen_address

__all__ = [
    "ListenAddressType",
    "UsageFailure",
    "UtcDateTime",
    "database_url_option",
    "listen_option",
    "log_level_option",
    "window",
    "window_options",
]

_F = TypeVar("_F", bound=Callable[..., Any])

EXIT_USAGE: Final = 2


class UsageFailure(click.ClickException):
    """An error the user fixes by changing how spancost is run (exit code 2)."""

    exit_code = EXIT_USAGE


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


class ListenAddressType(click.ParamType[ListenAddress]):
    """``--listen``: a unix socket or a loopback TCP address."""

    name = "ADDRESS"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> ListenAddress:
        if isinstance(value, ListenAddress):
            return value
        try:
            return parse_listen_address(str(value))
        except ListenAddressError as exc:
            self.fail(str(exc), param, ctx)


def listen_option(help_text: str) -> Callable[[_F], _F]:
    """``--listen`` (env ``SPANCOST_SIDECAR_LISTEN``, required): the sidecar's address, as
    `ListenAddressType` reads it, with the command's `help_text`."""
    return click.option(
        "--listen",
        envvar="SPANCOST_SIDECAR_LISTEN",
        required=True,
        type=ListenAddressType(),
        help=help_text,
    )


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
