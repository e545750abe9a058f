"""``spancost health``: ask a running sidecar whether it serves (``grpc.health.v1``).

Exit codes: 0 when it is SERVING; 1 when it is not, or does not answer in time; 2 for
usage errors (a bad flag, or a listen address beyond loopback).
"""

from __future__ import annotations

import click

from spancost.cli.options import listen_option
from spancost.sidecar.address import ListenAddress

__all__ = ["health"]


@click.command()
@listen_option(
    "The sidecar's address, as given to `spancost sidecar` (env SPANCOST_SIDECAR_LISTEN)."
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
