"""``spancost export focus``: the allocation as a FinOps FOCUS 1.2 dataset (CSV).

Allocates the hours whose usage changed (as ``spancost report`` does), reads the
window's allocation per node and hour from the totals store, and writes what the pure
`spancost.focus` makes of it. The mapping, and what FOCUS asks that spancost cannot
fill, are in the README section "`spancost export focus`".

Exit codes: 0 done; 1 the database failed; 2 usage (a bad window, flag or URL).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Final

import click

from spancost.allocation.core import DEFAULT_WEIGHTS, Weights
from spancost.cli.database import open_database
from spancost.cli.options import (
    UsageFailure,
    database_url_option,
    log_level_option,
    window,
    window_options,
)
from spancost.focus import BillingAccount, focus_records, split_differs, summary, write_csv
from spancost.log import configure_logging
from spancost.store.base import AllocationStore
from spancost.store.common import hour_window
from spancost.totals.aggregate import utc_from_ns

__all__ = ["export"]

logger = logging.getLogger(__name__)

_STDOUT: Final = "-"


@click.group()
def export() -> None:
    """Write spancost's figures in a standard format for other tools."""


def _weights(value: str) -> Weights:
    cpu, separator, memory = value.partition(":")
    try:
        if not separator:
            raise ValueError("must be CPU:MEMORY")
        return Weights(cpu=float(cpu), memory=float(memory))
    except ValueError as exc:
        raise UsageFailure(f"--weights {value!r}: {exc} (e.g. 9:1)") from exc


@export.command()
@database_url_option
@window_options
@click.option(
    "--billing-account-id",
    envvar="SPANCOST_BILLING_ACCOUNT_ID",
    show_envvar=True,
    required=True,
    metavar="ID",
    help="The account the nodes are billed to (the AWS payer account): FOCUS requires it"
    " and spancost does not know it.",
)
@click.option(
    "--billing-account-name",
    envvar="SPANCOST_BILLING_ACCOUNT_NAME",
    show_envvar=True,
    default=None,
    metavar="NAME",
    help="Its display name (else empty).",
)
@click.option(
    "--output",
    "-o",
    default=_STDOUT,
    show_default=True,
    metavar="FILE",
    help="Write here (replaced whole once written); - for stdout.",
)
@click.option(
    "--format",
    "file_format",
    type=click.Choice(["csv"]),
    default="csv",
    show_default=True,
    help="The file format (CSV only: see the README for Parquet).",
)
@click.option(
    "--weights",
    "weights_text",
    default=f"{DEFAULT_WEIGHTS.cpu:g}:{DEFAULT_WEIGHTS.memory:g}",
    show_default=True,
    metavar="CPU:MEMORY",
    help="How a node's price divides between a vCPU and a GiB: the allocation's 9:1, or"
    " others to see how the bill would split under them.",
)
@log_level_option("warning")
def focus(
    *,
    database_url: str,
    since_text: str | None,
    from_time: datetime | None,
    to_time: datetime | None,
    billing_account_id: str,
    billing_account_name: str | None,
    output: str,
    file_format: str,
    weights_text: str,
    log_level: str,
) -> None:
    """The allocated cost per node, hour and transaction, untraced workload or idle, and
    the per-request prices, as a FOCUS 1.2 cost-and-usage dataset over whole UTC hours
    (the window: --since or --from, to --to or now)."""
    configure_logging(log_level)
    since, until = window(since_text, from_time, to_time)
    if not billing_account_id.strip():
        raise UsageFailure("--billing-account-id must not be empty")
    weights = _weights(weights_text)
    account = BillingAccount(billing_account_id.strip(), billing_account_name)
    with open_database(database_url) as store:
        if not isinstance(store, AllocationStore):
            raise click.ClickException("this store keeps no allocation to export")
        store.allocate(weights)  # the hours changed since the sink last allocated
        allocation = store.allocation_by_node(since, until, weights)
        stored = store.reconcile(since, until)
    totals = summary(allocation)
    if totals.unpriced_node_hours:
        logger.warning(
            "%s node-hours have no price and are left out (spancost report --reconcile says why)",
            totals.unpriced_node_hours,
        )
    differs = split_differs(allocation, stored)
    if differs:
        hour, node = differs[0]
        logger.warning(
            "%s node-hours (the first: %s at %s) were allocated with weights other than"
            " %s: the export splits them %s, so its transactions differ from spancost"
            " report's (the bill does not)",
            len(differs),
            node,
            f"{hour:%Y-%m-%d %H:%M}",
            weights_text,
            weights_text,
        )
    records = focus_records(allocation, account, weights)
    # CSV is the one format (--format is there for another): see the README on Parquet.
    try:
        with click.open_file(output, "w", encoding="utf-8", atomic=output != _STDOUT) as out:
            rows = write_csv(records, out)
    except OSError as exc:
        raise UsageFailure(f"--output {output}: {exc.strerror or exc}") from exc
    start, end = (utc_from_ns(bound) for bound in hour_window(since, until))
    click.echo(
        f"{rows} FOCUS 1.2 {file_format.upper()} rows from {start:%Y-%m-%d %H:%M} to"
        f" {end:%Y-%m-%d %H:%M} UTC: {totals.total_usd:.6f} USD = the nodes' bill"
        f" {totals.bill_usd:.6f} + per-request prices {totals.per_request_usd:.6f}",
        err=True,
    )
