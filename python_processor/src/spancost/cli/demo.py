"""``spancost demo``: send a small shop's traffic (`spancost.demo`) to a running collector.

Exit codes: 0 sent; 1 the collector cannot be reached or refused a batch; 2 for usage
errors: a bad flag, or an endpoint beyond this host without ``--allow-remote``.
"""

from __future__ import annotations

import time

import click

from spancost.cli.options import UsageFailure
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

__all__ = ["demo"]


@click.command("demo")
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
def demo(
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
