"""The ``spancost`` command line.

Exit codes: 0 after a clean stop (SIGTERM/SIGINT included) or success; 1 when
the command fails (cannot bind, a ``--preload`` plugin is missing, the Price
List API failed, no price known, the collector ``spancost demo`` sends to cannot
be reached); 2 for usage errors: a bad flag or environment variable, a listen
address beyond loopback (or a demo endpoint, without ``--allow-remote``), or the
pure-Python protobuf backend.

``spancost prices`` imports boto3 only when it talks to the API, so the
sidecar's start-up never pays for it.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import click

from spancost import __version__
from spancost.cli import db, export, guard, report, reprice
from spancost.cli.options import UsageFailure, log_level_option
from spancost.demo import (
    DEFAULT_REQUESTS,
    DEFAULT_SEED,
    MAX_REQUESTS,
    PROTOCOLS,
    DemoSendError,
    OtlpProtocol,
    build_batches,
    open_exporter,
    parse_endpoint,
    plan_requests,
    send,
    summary,
    transaction_names,
)
from spancost.errors import ListenAddressError, SpancostError, UnsupportedRuntimeError
from spancost.log import configure_logging
from spancost.pricing.aws_products import (
    ENDPOINT_REGIONS,
    OPERATING_SYSTEMS,
    is_plausible_instance_type,
    is_plausible_region,
)
from spancost.pricing.model import Ec2Key, Price
from spancost.registry import load_plugin
from spancost.sidecar.address import ListenAddress, parse_listen_address
from spancost.sidecar.instances import ANSWER_FORMS, AnswerForm, PluginInstances
from spancost.sidecar.runtime import check_protobuf_backend
from spancost.sidecar.server import (
    DEFAULT_GRACE_PERIOD,
    DEFAULT_MAX_MESSAGE_BYTES,
    DEFAULT_SERVER_MODE,
    DEFAULT_WORKERS,
    SERVER_MODES,
    ServerMode,
    ServerOptions,
    create_server,
    serve_until_signalled,
)

if TYPE_CHECKING:
    from spancost.pricing.aws import AwsPriceList
    from spancost.pricing.snapshot import BundledPrices

__all__ = ["cli", "main"]

logger = logging.getLogger(__name__)


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


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(
    __version__, "--version", prog_name="spancost", message="%(prog)s %(version)s"
)
def cli() -> None:
    """spancost: prices every span flowing through an OpenTelemetry Collector."""


@cli.command()
@click.option(
    "--listen",
    envvar="SPANCOST_SIDECAR_LISTEN",
    required=True,
    type=ListenAddressType(),
    help="unix:///abs/path.sock, 127.0.0.1:PORT, [::1]:PORT or localhost:PORT "
    "(env SPANCOST_SIDECAR_LISTEN, which the collector's python extension sets).",
)
@click.option(
    "--server-mode",
    type=click.Choice(SERVER_MODES),
    default=DEFAULT_SERVER_MODE,
    show_default=True,
    help="threads: grpc.server on a thread pool; asyncio: grpc.aio on an event loop.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=DEFAULT_WORKERS,
    show_default=True,
    help="Threads that run plugin work (batches processed at once).",
)
@click.option(
    "--grace-period",
    type=click.FloatRange(min=0),
    default=DEFAULT_GRACE_PERIOD,
    show_default=True,
    help="Seconds in-flight batches get to finish after SIGTERM/SIGINT.",
)
@click.option(
    "--max-message-bytes",
    type=click.IntRange(min=1024, max=2**31 - 1),
    default=DEFAULT_MAX_MESSAGE_BYTES,
    show_default=True,
    help="Largest gRPC message received or sent.",
)
@log_level_option()
@click.option(
    "--answer-form",
    type=click.Choice(ANSWER_FORMS),
    default="auto",
    show_default=True,
    help="auto: annotating plugins answer with their changes (the fast form), others with "
    "the whole batch; full: always the whole batch (to debug a plugin, or to compare in "
    "benchmarks).",
)
@click.option(
    "--preload",
    "preload",
    multiple=True,
    metavar="PLUGIN",
    help="Import this plugin at start so a missing one fails now (repeatable).",
)
def sidecar(
    *,
    listen: ListenAddress,
    server_mode: ServerMode,
    workers: int,
    grace_period: float,
    max_message_bytes: int,
    log_level: str,
    answer_form: AnswerForm,
    preload: tuple[str, ...],
) -> None:
    """Serve plugins to the collector's python processor over gRPC."""
    configure_logging(log_level)
    try:
        backend = check_protobuf_backend()
    except UnsupportedRuntimeError as exc:
        raise UsageFailure(str(exc)) from exc
    try:
        for name in preload:
            spec = load_plugin(name)
            logger.info("preloaded plugin %s (%s)", name, spec.version)
        options = ServerOptions(
            listen=listen,
            mode=server_mode,
            workers=workers,
            grace_period=grace_period,
            max_message_bytes=max_message_bytes,
        )
        logger.info(
            "spancost %s sidecar starting: mode=%s workers=%d protobuf=%s answer-form=%s",
            __version__,
            server_mode,
            workers,
            backend,
            answer_form,
        )
        instances = PluginInstances(answer_form=answer_form)
        serve_until_signalled(create_server(options, instances), grace_period)
    except SpancostError as exc:
        raise click.ClickException(str(exc)) from exc


# -- spancost demo ------------------------------------------------------------------------


@cli.command("demo")
@click.option(
    "--endpoint",
    "endpoint_text",
    metavar="ADDRESS",
    help="The collector's OTLP receiver. gRPC: host:port (default 127.0.0.1:4317); HTTP: "
    "a URL (default http://127.0.0.1:4318; /v1/traces is added to a URL without a path).",
)
@click.option(
    "--protocol",
    type=click.Choice(PROTOCOLS),
    default="grpc",
    show_default=True,
    help="OTLP over gRPC, or over HTTP with protobuf bodies.",
)
@click.option(
    "--requests",
    "requests_per_transaction",
    type=click.IntRange(min=1, max=MAX_REQUESTS),
    default=DEFAULT_REQUESTS,
    show_default=True,
    help="Production requests (traces) per business transaction; a quarter as many "
    "again come from CI.",
)
@click.option(
    "--business-transaction",
    "transactions",
    multiple=True,
    metavar="NAME",
    help="A business transaction to send (repeatable; default: checkout and search). "
    "checkout and search have services of their own; other names call a generic one.",
)
@click.option(
    "--seed",
    type=int,
    default=DEFAULT_SEED,
    show_default=True,
    help="Durations and token counts follow the seed: one seed always costs the same.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.1),
    default=10.0,
    show_default=True,
    help="Seconds to wait for the collector to answer each batch.",
)
@click.option(
    "--allow-remote",
    is_flag=True,
    help="Send to an endpoint beyond this host. The demo's spans say production: "
    "there they count against real budgets.",
)
def demo_command(
    *,
    endpoint_text: str | None,
    protocol: OtlpProtocol,
    requests_per_transaction: int,
    transactions: tuple[str, ...],
    seed: int,
    timeout: float,
    allow_remote: bool,
) -> None:
    """Send realistic traffic to a running collector, to see what it costs.

    Requests of each business transaction from services on EKS (EC2), a Lambda
    function and an LLM call, some CI requests (which configs/local.yaml drops) and
    one span spancost cannot price. Then run `spancost report`.
    """
    try:
        endpoint = parse_endpoint(endpoint_text, protocol)
        names = transaction_names(transactions)
    except ValueError as exc:
        raise UsageFailure(str(exc)) from exc
    if not endpoint.loopback and not allow_remote:
        raise UsageFailure(
            f"{endpoint} is not on this host, and the demo's spans say production: they "
            "would count against that collector's budgets. Add --allow-remote to send anyway."
        )
    requests = plan_requests(names, requests_per_transaction)
    exporter = open_exporter(endpoint, timeout)
    try:
        sent = send(build_batches(requests, seed=seed, now_ns=time.time_ns()), exporter)
    except DemoSendError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        exporter.close()
    click.echo(summary(requests, endpoint, sent))


# -- spancost prices ----------------------------------------------------------------------


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


@cli.command()
@click.option(
    "--listen",
    envvar="SPANCOST_SIDECAR_LISTEN",
    required=True,
    type=ListenAddressType(),
    help="The sidecar's address, as given to `spancost sidecar` (env SPANCOST_SIDECAR_LISTEN).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.1),
    default=3.0,
    show_default=True,
    help="Seconds to wait for the answer.",
)
def health(*, listen: ListenAddress, timeout: float) -> None:
    """Ask a running sidecar whether it serves (grpc.health.v1): exit 0 if it does, 1 if not.

    For a Kubernetes exec probe on the sidecar container, whose Unix socket a
    `grpc:` probe cannot reach.
    """
    # Imported here: `spancost health` runs every few seconds as a probe and
    # should load no more than it needs.
    import grpc  # noqa: PLC0415
    from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: PLC0415

    from spancost.sidecar.servicer import SERVICE_NAME  # noqa: PLC0415

    with grpc.insecure_channel(listen.grpc_target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            answer = stub.Check(
                health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=timeout
            )
        except grpc.RpcError as exc:
            raise click.ClickException(
                f"sidecar at {listen} did not answer: {exc.code().name}: {exc.details()}"
            ) from exc
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)
    if answer.status != health_pb2.HealthCheckResponse.SERVING:
        raise click.ClickException(f"sidecar at {listen} is {status}")
    click.echo(f"sidecar at {listen} is {status}")


@cli.group()
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


cli.add_command(db.db)
cli.add_command(report.report)
cli.add_command(reprice.reprice)
cli.add_command(guard.guard)
cli.add_command(export.export)


def main() -> None:
    """Entry point of the ``spancost`` script."""
    cli(prog_name="spancost")
