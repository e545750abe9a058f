"""``spancost sidecar``: serve plugins to the collector's ``python`` processor over gRPC
(`spancost.sidecar.server`) until SIGTERM or SIGINT.

Exit codes: 0 after a clean stop (SIGTERM/SIGINT); 1 when it cannot start (cannot bind,
a ``--preload`` plugin is missing or broken); 2 for usage errors: a bad flag or
environment variable, a listen address beyond loopback, or the pure-Python protobuf
backend.
"""

from __future__ import annotations

import logging

import click

from spancost import __version__
from spancost.cli.options import UsageFailure, listen_option, log_level_option
from spancost.errors import SpancostError, UnsupportedRuntimeError
from spancost.log import configure_logging
from spancost.registry import load_plugin
from spancost.sidecar.address import ListenAddress
from spancost.sidecar.instances import ANSWER_FORMS, AnswerForm, PluginInstances
from spancost.sidecar.runtime import check_protobuf_backend
from spancost.sidecar.server import (
    DEFAULT_GRACE_PERIOD,
    DEFAULT_MAX_MESSAGE_BYTES,
    DEFAULT_WORKERS,
    SINK_THREADS,
    ServerOptions,
    SidecarServer,
    serve_until_signalled,
)
from spancost.sidecar.sinkhost import SinkHost

__all__ = ["sidecar"]

logger = logging.getLogger(__name__)


@click.command()
@listen_option(
    "unix:///abs/path.sock, 127.0.0.1:PORT, [::1]:PORT or localhost:PORT "
    "(env SPANCOST_SIDECAR_LISTEN, which the collector's python extension sets)."
)
@click.option(
    "--server-mode",
    type=click.Choice(["threads"]),
    default="threads",
    show_default=True,
    help="grpc.server on thread pools, the only mode (asyncio was removed; the flag "
    "stays so that command lines naming it still start).",
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
    server_mode: str,
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
        sinks = SinkHost(log_level, SINK_THREADS)
        instances = PluginInstances(answer_form=answer_form, sinks=sinks)
        serve_until_signalled(SidecarServer(options, instances), grace_period)
    except SpancostError as exc:
        raise click.ClickException(str(exc)) from exc
