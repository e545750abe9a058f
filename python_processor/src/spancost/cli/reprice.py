"""``spancost reprice``: price stored node-hours again, without replaying any span.

The store keeps usage (how long each node ran each hour, and what ran on it) apart from
the price applied to it (`spancost.allocation`), so a corrected or refreshed price
changes history by pricing the node-hours again: each change is recorded in the store
(``repricings``: when, which node-hour, from which price to which), and the hours are
allocated anew.

Spot node-hours keep their price unless ``--include-spot``: a live spot price is the
price of its hour and cannot be asked for again later; the book here has only the
snapshot, so it would replace them by the on-demand price less the discount.

Exit codes: 0 done; 1 the database failed; 2 usage.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import click

from spancost.cli.database import open_database
from spancost.cli.options import (
    UsageFailure,
    database_url_option,
    log_level_option,
    window,
    window_options,
)
from spancost.errors import ConfigError
from spancost.log import configure_logging
from spancost.store.base import AllocationStore

__all__ = ["reprice"]


@click.command()
@database_url_option
@window_options
@click.option(
    "--snapshot",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Price from this snapshot (`spancost prices refresh` writes one) instead of the"
    " one shipped with spancost.",
)
@click.option(
    "--spot-discount",
    type=click.FloatRange(0, 1, max_open=True),
    default=0.7,
    show_default=True,
    help="Off the on-demand price for spot nodes (with --include-spot).",
)
@click.option("--include-spot", is_flag=True, help="Reprice spot node-hours too (see above).")
@click.option("--json", "as_json", is_flag=True, help="Print what changed as JSON.")
@log_level_option("warning")
def reprice(
    *,
    database_url: str,
    since_text: str | None,
    from_time: datetime | None,
    to_time: datetime | None,
    snapshot: Path | None,
    spot_discount: float,
    include_spot: bool,
    as_json: bool,
    log_level: str,
) -> None:
    """Price the node-hours of a window again, record what changed, and allocate the hours
    anew (the window: --since or --from, to --to or now)."""
    from spancost.allocation.pricing import NodePrice, price_node  # noqa: PLC0415 - pricing
    from spancost.allocation.usage import NodeUsage  # noqa: PLC0415
    from spancost.pricing.catalog import build_price_book  # noqa: PLC0415
    from spancost.pricing.compute import ComputeSettings  # noqa: PLC0415

    configure_logging(log_level)
    since, until = window(since_text, from_time, to_time)
    prices = {"bundled": {"path": str(snapshot)}} if snapshot is not None else {}
    try:
        book = build_price_book(prices)
    except ConfigError as exc:
        raise UsageFailure(f"--snapshot: {exc.message}") from exc
    settings = ComputeSettings(
        spot_discount=spot_discount, default_operating_system=book.default_operating_system
    )

    def price(node: NodeUsage) -> NodePrice | None:
        if node.capacity_type == "spot" and not include_spot:
            return None
        return price_node(node, book, settings)

    try:
        with open_database(database_url) as store:
            if not isinstance(store, AllocationStore):
                raise click.ClickException("this store keeps no node usage to reprice")
            changed = store.reprice(since, until, price, datetime.now(UTC))
            store.allocate()
    finally:
        book.close()
    if as_json:
        click.echo(
            json.dumps(
                [
                    {
                        "hour": row.hour.strftime("%Y-%m-%dT%H:%M:%SZ"),
                        "node": row.node,
                        "old_hourly_usd": row.old_hourly_usd,
                        "old_source": row.old_source,
                        "new_hourly_usd": row.new_hourly_usd,
                        "new_source": row.new_source,
                    }
                    for row in changed
                ],
                indent=1,
            )
        )
        return
    for row in changed:
        click.echo(
            f"{row.hour:%Y-%m-%d %H:%M} {row.node}: {row.old_hourly_usd} ({row.old_source})"
            f" -> {row.new_hourly_usd} ({row.new_source}) per hour"
        )
    start, end = f"{since:%Y-%m-%d %H:%M}", f"{until:%Y-%m-%d %H:%M}"
    click.echo(f"repriced {len(changed)} node-hours from {start} to {end} UTC")
