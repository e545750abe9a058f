"""``spancost prices``: ``show`` an EC2 price (from the snapshot or the live AWS Price
List API) and ``refresh`` the price snapshot from the live API.

Imports boto3 only when it talks to the API, so the sidecar's start-up never pays for it.

Exit codes: 0 done; 1 the Price List API failed, no price is known, or the snapshot could
not be written; 2 for usage errors (a bad flag or combination of flags).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import click

from spancost.cli.options import UsageFailure, log_level_option
from spancost.errors import SpancostError
from spancost.log import configure_logging
from spancost.pricing.aws_products import (
    ENDPOINT_REGIONS,
    OPERATING_SYSTEMS,
    is_plausible_instance_type,
    is_plausible_region,
)
from spancost.pricing.model import Ec2Key, Price

if TYPE_CHECKING:
    from spancost.pricing.aws import AwsPriceList
    from spancost.pricing.snapshot import BundledPrices

__all__ = ["prices"]

logger = logging.getLogger(__name__)


class RegionType(click.ParamType[str]):
    """An AWS region code such as ``us-east-1``."""

    name = "REGION"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        region = str(value).strip()
        if not is_plausible_region(region):
            self.fail(f"{value!r} is not an AWS region code such as us-east-1", param, ctx)
        return region


class EndpointUrlType(click.ParamType[str]):
    """An http(s) URL for the Price List API (a proxy or a test server)."""

    name = "URL"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        parts = urlsplit(str(value))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            self.fail(f"{value!r} is not an http:// or https:// URL", param, ctx)
        return str(value)


_endpoint_url_option = click.option(
    "--endpoint-url",
    type=EndpointUrlType(),
    help="Send Price List API requests here instead of AWS (a proxy, a test server).",
)
_endpoint_region_option = click.option(
    "--endpoint-region",
    type=click.Choice(ENDPOINT_REGIONS),
    default=ENDPOINT_REGIONS[0],
    show_default=True,
    help="The Price List API endpoint to ask (each answers for every region).",
)
_snapshot_option = click.option(
    "--snapshot",
    "snapshot_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A price snapshot file to read instead of the bundled one.",
)


@click.group()
@log_level_option("warning")
def prices(log_level: str) -> None:
    """Show AWS prices, and regenerate the bundled price snapshot from the AWS Price List API.

    The live API needs AWS credentials (the usual chain: environment, profile,
    instance or pod role) with pricing:GetProducts.
    """
    configure_logging(log_level)


@prices.command("show")
@click.argument("instance_type")
@click.option("--region", required=True, type=RegionType(), help="The AWS region, e.g. us-east-1.")
@click.option(
    "--os",
    "operating_system",
    type=click.Choice(OPERATING_SYSTEMS, case_sensitive=False),
    default="Linux",
    show_default=True,
    help="The operating system the instance runs.",
)
@click.option(
    "--live", is_flag=True, help="Ask the AWS Price List API now instead of the snapshot."
)
@_endpoint_url_option
@_endpoint_region_option
@_snapshot_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def prices_show(
    *,
    instance_type: str,
    region: str,
    operating_system: str,
    live: bool,
    endpoint_url: str | None,
    endpoint_region: str,
    snapshot_path: Path | None,
    as_json: bool,
) -> None:
    """Print the on-demand hourly price of an EC2 INSTANCE_TYPE (e.g. t3.xlarge).

    From the bundled snapshot (or --snapshot FILE) unless --live is given.
    """
    if not is_plausible_instance_type(instance_type):
        raise click.BadParameter(
            f"{instance_type!r} is not an EC2 instance type such as m5.large",
            param_hint="INSTANCE_TYPE",
        )
    if not live and (endpoint_url is not None or endpoint_region != ENDPOINT_REGIONS[0]):
        raise UsageFailure("--endpoint-url and --endpoint-region need --live")
    if live and snapshot_path is not None:
        raise UsageFailure("--snapshot and --live exclude each other")
    key = Ec2Key(region, instance_type, operating_system)
    try:
        if live:
            source = _live_source(endpoint_url, endpoint_region)
            try:
                price = source.fetch_ec2(key)
            finally:
                source.close()
            where = "the AWS Price List API"
        else:
            snapshot = _load_snapshot(snapshot_path)
            price = snapshot.ec2(key)
            where = f"the price snapshot ({snapshot_path or 'bundled'}, as of {snapshot.as_of})"
    except SpancostError as exc:
        raise click.ClickException(str(exc)) from exc
    if price is None:
        hint = "" if live else "; --live asks the AWS Price List API"
        raise click.ClickException(
            f"no price for {instance_type} ({operating_system}) in {region} in {where}{hint}"
        )
    if as_json:
        click.echo(json.dumps(_price_json(key, price)))
    else:
        click.echo(
            f"{instance_type} ({operating_system}) in {region}: {price.usd:g} USD per {price.unit}"
            f" (source {price.source}, as of {price.as_of})"
        )


@prices.command("refresh")
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
    help="Where to write the new snapshot ('-': stdout). Default: the bundled file itself.",
)
@click.option(
    "--regions",
    "regions_option",
    multiple=True,
    metavar="REGION[,REGION...]",
    help="Fetch these regions instead of the snapshot's (repeatable or comma-separated).",
)
@_endpoint_url_option
@_endpoint_region_option
@_snapshot_option
@click.option(
    "--workers",
    type=click.IntRange(min=1, max=16),
    default=4,
    show_default=True,
    help="Queries in flight at once (botocore backs off when throttled).",
)
def prices_refresh(
    *,
    output: Path | None,
    regions_option: tuple[str, ...],
    endpoint_url: str | None,
    endpoint_region: str,
    snapshot_path: Path | None,
    workers: int,
) -> None:
    """Regenerate the price snapshot from the AWS Price List API.

    Fetches the prices of every instance type, Lambda and Fargate region of the
    current snapshot (the bundled one, or --snapshot FILE) and writes a file of
    the same format. Nothing is written unless every query succeeded.
    """
    regions = _split_regions(regions_option)
    target = output if output is not None else _bundled_snapshot_path()
    try:
        from spancost.pricing.aws_refresh import refresh_snapshot  # noqa: PLC0415

        current = _load_snapshot(snapshot_path)
        source = _live_source(endpoint_url, endpoint_region)
        try:
            result = refresh_snapshot(
                source,
                current,
                regions=regions,
                workers=workers,
                progress=lambda what: logger.info("fetched %s", what),
            )
        finally:
            source.close()
    except SpancostError as exc:
        raise click.ClickException(str(exc)) from exc
    document = result.snapshot.to_document()
    counts = {name: _count_prices(document, name) for name in ("ec2", "lambda", "fargate")}
    if not any(counts.values()):
        raise click.ClickException(
            "the AWS Price List API answered no price at all; nothing written"
        )
    text = json.dumps(document, indent=1, sort_keys=False) + "\n"
    if str(target) == "-":
        click.echo(text, nl=False)
    else:
        _write_atomically(target, text)
    summary = (
        f"{counts['ec2']} EC2, {counts['lambda']} Lambda and {counts['fargate']} Fargate prices "
        f"(as of {document['as_of']}) written to {'stdout' if str(target) == '-' else target}"
    )
    click.echo(summary, err=True)
    if result.missing:
        shown = ", ".join(result.missing[:10])
        more = f" and {len(result.missing) - 10} more" if len(result.missing) > 10 else ""
        click.echo(
            f"warning: the API has no price for {len(result.missing)} of the snapshot's keys, "
            f"left out: {shown}{more}",
            err=True,
        )


def _live_source(endpoint_url: str | None, endpoint_region: str) -> AwsPriceList:
    from spancost.pricing.aws import AwsPriceList  # noqa: PLC0415 - boto3 only when asked

    config: dict[str, Any] = {"endpoint_region": endpoint_region}
    if endpoint_url is not None:
        config["endpoint_url"] = endpoint_url
    return AwsPriceList(config)


def _load_snapshot(path: Path | None) -> BundledPrices:
    try:
        from spancost.pricing.snapshot import load_bundled, load_snapshot  # noqa: PLC0415
    except ImportError as exc:
        raise click.ClickException(
            f"the price snapshot is not available in this build of spancost ({exc}); use --live"
        ) from exc
    return load_snapshot(path) if path is not None else load_bundled()


def _bundled_snapshot_path() -> Path:
    location = resources.files("spancost.pricing").joinpath("data", "aws_prices.json")
    if not isinstance(location, Path):
        raise UsageFailure("the bundled snapshot is not a plain file here: give --output")
    return location


def _split_regions(values: Sequence[str]) -> list[str] | None:
    if not values:
        return None
    regions: list[str] = []
    for value in values:
        for part in value.split(","):
            region = part.strip()
            if not is_plausible_region(region):
                raise click.BadParameter(
                    f"{part!r} is not an AWS region code such as us-east-1", param_hint="--regions"
                )
            if region not in regions:
                regions.append(region)
    return regions


def _count_prices(document: dict[str, Any], name: str) -> int:
    table = document[name]
    if name == "ec2":
        return sum(len(types) for per_region in table.values() for types in per_region.values())
    return sum(len(per_arch) for per_arch in table.values())


def _write_atomically(path: Path, text: str) -> None:
    """Write a sibling temporary file and rename it: readers never see half a snapshot."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as file:
                file.write(text)
            os.chmod(temporary, 0o644)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise click.ClickException(f"cannot write {path}: {exc.strerror or exc}") from exc


def _price_json(key: Ec2Key, price: Price) -> dict[str, Any]:
    return {
        "instance_type": key.instance_type,
        "region": key.region,
        "operating_system": key.operating_system,
        "usd": price.usd,
        "unit": price.unit,
        "currency": "USD",
        "source": price.source,
        "as_of": price.as_of,
    }
