"""``spancost report``: what transactions and domains cost over a window.

Reads the totals store (`spancost.cli.database.open_database`) and hands the rows to the pure
`spancost.report`, which builds the figures, the table and the JSON document;
``--html FILE`` writes that document as a page (`spancost.htmlreport`). While the
queries run, a spinner turns on stderr when stderr is a terminal (never in pipes or
``--json`` output).

Exit codes: 0 done; 1 the database failed, or the page could not be written; 2 usage (a
bad window, flag or URL).
"""

from __future__ import annotations

import itertools
import json
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import click

from spancost.cli.database import open_database
from spancost.cli.options import UsageFailure, UtcDateTime, database_url_option, log_level_option
from spancost.errors import ConfigError
from spancost.htmlreport import render_html
from spancost.log import configure_logging
from spancost.pricing.fx import USD, FxTable
from spancost.report import (
    Report,
    build_allocation,
    build_report,
    format_reconcile,
    format_table,
    parse_span,
    reconcile_json,
    to_json,
)
from spancost.store.base import AllocationStore
from spancost.totals.naming import UNATTRIBUTED
from spancost.vocabulary import normalize_environment

__all__ = ["report"]

_SPINNER_FRAMES: Final = "|/-\\"
_SPINNER_INTERVAL_S: Final = 0.1


@contextmanager
def progress(message: str) -> Iterator[None]:
    """A spinner with `message` on stderr while the block runs, if stderr is a terminal."""
    stream = sys.stderr
    if not stream.isatty():
        yield
        return
    stop = threading.Event()

    def spin() -> None:
        for frame in itertools.cycle(_SPINNER_FRAMES):
            stream.write(f"\r{frame} {message}")
            stream.flush()
            if stop.wait(_SPINNER_INTERVAL_S):
                break
        stream.write("\r" + " " * (len(message) + 2) + "\r")
        stream.flush()

    thread = threading.Thread(target=spin, name="spancost-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _write_page(path: Path, page: str) -> None:
    """Write `page` to `path` whole or not at all (a file beside it, then renamed), so a
    page being served or opened is never half written."""
    partial = path.with_name(f".{path.name}.partial")
    try:
        partial.write_text(page, encoding="utf-8")
        partial.replace(path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def _html_path(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
    if value is not None and not value.parent.is_dir():
        raise UsageFailure(f"--html {value}: there is no directory {value.parent}")
    return value


def _rates(values: tuple[str, ...]) -> dict[str, float]:
    rates: dict[str, float] = {}
    for value in values:
        code, separator, number = value.partition("=")
        try:
            rate = float(number)
        except ValueError:
            rate = float("nan")
        if not separator or not code.strip() or not rate > 0 or rate == float("inf"):
            raise UsageFailure(
                f"--rate {value!r}: must be CODE=RATE (1 USD in CODE), e.g. EUR=0.92"
            )
        rates[code.strip().upper()] = rate
    return rates


@click.command()
@database_url_option
@click.option(
    "--since",
    "since_text",
    default=None,
    metavar="DURATION",
    help="Look back this far from now: 24h (the default), 7d, 1d12h, 90m.",
)
@click.option(
    "--from",
    "from_time",
    type=UtcDateTime(),
    default=None,
    help="Start of the window (ISO 8601, UTC unless it has an offset); instead of --since.",
)
@click.option(
    "--to",
    "to_time",
    type=UtcDateTime(),
    default=None,
    help="End of the window (ISO 8601); default now.",
)
@click.option(
    "--top",
    type=click.IntRange(min=1, max=1000),
    default=10,
    show_default=True,
    help="How many transactions and domains to list.",
)
@click.option(
    "--exclude-environment",
    "excluded",
    multiple=True,
    metavar="ENV",
    help="Leave out the traces of this deployment environment (repeatable).",
)
@click.option(
    "--unattributed-name",
    default=UNATTRIBUTED,
    show_default=True,
    help="The transaction of traces without a root (the totals config's unattributed_name).",
)
@click.option(
    "--currency",
    default=USD,
    show_default=True,
    metavar="CODE",
    help="Show amounts in this currency (needs --rate CODE=RATE unless USD).",
)
@click.option(
    "--rate",
    "rate_values",
    multiple=True,
    metavar="CODE=RATE",
    help="An exchange rate: 1 USD in CODE, e.g. EUR=0.92 (repeatable).",
)
@click.option(
    "--reconcile",
    is_flag=True,
    help="Instead: per node and hour, its bill next to what was allocated (the difference"
    " is zero).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document (see the README).")
@click.option(
    "--html",
    "html_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    callback=_html_path,
    metavar="FILE",
    help="Write the report as one self-contained HTML page (charts included, opens"
    " offline) instead of printing the table; with --json, print the document it shows.",
)
@log_level_option("warning")
def report(
    *,
    database_url: str,
    since_text: str | None,
    from_time: datetime | None,
    to_time: datetime | None,
    top: int,
    excluded: tuple[str, ...],
    unattributed_name: str,
    currency: str,
    rate_values: tuple[str, ...],
    reconcile: bool,
    as_json: bool,
    html_path: Path | None,
    log_level: str,
) -> None:
    """Top transactions and domains by cost, cost per request, cost per hour, the
    unattributed share and the unpriced share with its top reasons, over a window of
    whole UTC hours (default: the last 24 hours)."""
    configure_logging(log_level)
    if since_text is not None and from_time is not None:
        raise UsageFailure("--since and --from exclude each other")
    if html_path is not None and reconcile:
        raise UsageFailure("--html and --reconcile exclude each other")
    until = to_time if to_time is not None else datetime.now(UTC)
    if from_time is not None:
        since = from_time
    else:
        try:
            since = until - parse_span(since_text if since_text is not None else "24h")
        except ConfigError as exc:
            raise UsageFailure(f"{exc.key}: {exc.message}") from exc
    if since >= until:
        raise UsageFailure(
            f"the window is empty: {since.isoformat()} is not before {until.isoformat()}"
        )
    try:
        fx = FxTable({"code": currency, "rates": _rates(rate_values)})
    except ConfigError as exc:
        raise UsageFailure(
            f"--currency {currency}: {exc.message}; give --rate {currency.upper()}=RATE"
            if exc.key.endswith("code")
            else f"--rate: {exc.message}"
        ) from exc
    # As the store keeps them (the totals adapter normalizes what senders write).
    environments = sorted({normalize_environment(name) for name in excluded})
    with open_database(database_url) as store, progress("querying the totals store"):
        allocation = store if isinstance(store, AllocationStore) else None
        if allocation is not None:
            allocation.allocate()  # the hours changed since the sink last allocated
        nodes = allocation.reconcile(since, until) if allocation is not None else []
        if reconcile:
            if as_json:
                click.echo(json.dumps(reconcile_json(nodes, fx.convert(1.0)), indent=1))
            else:
                click.echo(format_reconcile(nodes, fx.code, fx.convert(1.0)), nl=False)
            return
        allocated = (
            allocation.allocated_totals(since, until, environments)
            if allocation is not None
            else []
        )
        transactions = store.transaction_totals(since, until, environments, limit=top)
        unattributed = store.transaction_totals(
            since, until, environments, names=[unattributed_name]
        )
        domains = store.domain_totals(since, until, environments)
        hours = store.hourly_totals(since, until, environments)
        domain_hours = store.hourly_totals(since, until, environments, by_domain=True)
        coverage = store.domain_coverage(since, until, environments)
        reasons = store.unpriced_reasons(since, until, environments)
    result = build_report(
        since=since,
        until=until,
        transactions=transactions,
        unattributed=unattributed,
        domains=domains,
        hours=hours,
        domain_hours=domain_hours,
        coverage=coverage,
        reasons=reasons,
        top=top,
        unattributed_name=unattributed_name,
        currency=fx.code,
        rate=fx.convert(1.0),
        excluded_environments=environments,
        allocation=build_allocation(allocated, nodes, top=top, rate=fx.convert(1.0)),
    )
    _show(result, as_json=as_json, html_path=html_path)


def _show(result: Report, *, as_json: bool, html_path: Path | None) -> None:
    """The page to `html_path` (if given), then the JSON document or, without either
    flag, the table."""
    document = to_json(result)
    if html_path is not None:
        try:
            _write_page(html_path, render_html(document))
        except OSError as exc:
            raise click.ClickException(f"cannot write --html {html_path}: {exc}") from exc
        click.echo(f"wrote {html_path}", err=True)
    if as_json:
        click.echo(json.dumps(document, indent=1))
    elif html_path is None:
        click.echo(format_table(result), nl=False)
