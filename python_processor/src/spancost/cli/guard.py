"""``spancost guard``: rolling 24 h budgets per domain that alert and scale Deployments down.

Exit codes with ``--once``: 0 when the run did its job (a breach that was acted on
included), 1 when the totals store or the Kubernetes API could not be used or a
write failed, 2 for a bad flag or budgets file. The loop (no ``--once``) runs
until SIGTERM/SIGINT and exits 0; a run that fails is logged, alerted and retried
at the next interval; the budgets file is read again before each run, and a bad
version is reported (log, alert, an Event on the Pod named by POD_NAME and
POD_NAMESPACE) while the last good one stays in force (`spancost.guard.loop`).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
from collections.abc import Callable, Collection
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import click

from spancost.cli.options import UsageFailure, database_url_option, log_level_option
from spancost.config import parse_duration
from spancost.errors import SpancostError
from spancost.log import configure_logging

if TYPE_CHECKING:
    from spancost.guard.alerts import AlertSender
    from spancost.guard.budgets import BudgetsFile, GuardConfig
    from spancost.guard.kube import KubeCluster
    from spancost.guard.loop import Run
    from spancost.guard.run import RunReport

__all__ = ["guard"]

logger = logging.getLogger(__name__)


@click.command()
@click.option(
    "--budgets",
    "budgets_path",
    envvar="SPANCOST_GUARD_BUDGETS",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The budgets file (YAML; env SPANCOST_GUARD_BUDGETS).",
)
@database_url_option
@click.option("--once", is_flag=True, help="One run, then exit (for a CronJob).")
@click.option(
    "--interval",
    default="5m",
    show_default=True,
    help="Time between runs without --once, e.g. 5m, 1h.",
)
@click.option("--dry-run", is_flag=True, help="Decide and report, change nothing (every budget).")
@click.option(
    "--kubeconfig",
    type=click.Path(dir_okay=False),
    help="A kubeconfig file; default $KUBECONFIG or ~/.kube/config, or the in-cluster "
    "service account when running in a pod.",
)
@click.option("--context", help="The kubeconfig context to use.")
@click.option(
    "--output",
    type=click.Choice(["none", "json"]),
    default="none",
    show_default=True,
    help="json: print each run's report (spend, decisions, alerts) on stdout.",
)
@click.option(
    "--metrics-listen",
    envvar="SPANCOST_GUARD_METRICS_LISTEN",
    default="",
    metavar="HOST:PORT",
    help="Serve /metrics (what each run read and decided) here, e.g. 0.0.0.0:9465; the"
    " loop only (env SPANCOST_GUARD_METRICS_LISTEN).",
)
@log_level_option()
def guard(
    *,
    budgets_path: Path,
    database_url: str,
    once: bool,
    interval: str,
    dry_run: bool,
    kubeconfig: str | None,
    context: str | None,
    output: str,
    metrics_listen: str,
    log_level: str,
) -> None:
    """Compare each domain's rolling 24 h spend with its budget; warn, and scale the
    domain's non-critical Deployments down when it is exceeded (reversibly)."""
    configure_logging(log_level)
    # Imported here: the other commands should not pay for the kubernetes client.
    from spancost.guard.alerts import AlertSender  # noqa: PLC0415
    from spancost.guard.budgets import BudgetsFile  # noqa: PLC0415
    from spancost.guard.kube import KubeCluster, load_api_client  # noqa: PLC0415
    from spancost.guard.run import run_once  # noqa: PLC0415
    from spancost.store.open import describe_url, open_store  # noqa: PLC0415

    try:
        budgets = BudgetsFile(budgets_path)
        seconds = parse_duration(interval, "--interval")
        store_description = describe_url(database_url)
    except SpancostError as exc:  # ConfigError, or a database URL that is not understood
        raise UsageFailure(str(exc)) from exc
    listen = _listen_address(metrics_listen) if metrics_listen else None
    if listen is not None and once:
        raise UsageFailure("--metrics-listen serves the loop's runs; it makes no sense with --once")
    config = budgets.config
    logger.info(
        "spancost guard: %d budget(s) from %s, store %s, %s%s",
        len(config.budgets),
        budgets_path,
        store_description,
        "once" if once else f"every {interval}",
        ", dry run" if dry_run or config.dry_run else "",
    )

    def connect() -> KubeCluster:
        return KubeCluster(load_api_client(kubeconfig, context))

    metrics = None
    if listen is not None:
        from prometheus_client import start_http_server  # noqa: PLC0415

        from spancost.guard.metrics import GuardMetrics  # noqa: PLC0415

        metrics = GuardMetrics()
        try:
            start_http_server(listen[1], listen[0], registry=metrics.registry())
        except OSError as exc:
            raise UsageFailure(f"--metrics-listen {metrics_listen}: {exc}") from exc
        logger.info("spancost guard: metrics on http://%s:%d/metrics", *listen)

    def run(current: GuardConfig, sender: AlertSender, retired: Collection[str]) -> RunReport:
        report = run_once(
            current,
            lambda: open_store(database_url),
            connect,
            sender,
            dry_run=dry_run,
            retired=retired,
        )
        if output == "json":
            click.echo(json.dumps(report.to_json(), sort_keys=True))
        if metrics is not None:
            metrics.record(report)
        return report

    if once:
        config.fx.refresh_now()
        sender = AlertSender(config.webhooks)
        try:
            report = run(config, sender, ())
        finally:
            config.fx.close()
            sender.close()
        if not report.ok:
            raise click.ClickException(
                "; ".join(report.errors) or "some Deployments could not be changed (see the log)"
            )
        return

    _loop(budgets, run, connect, seconds)


def _listen_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``:PORT`` listens on every address)."""
    host, separator, port = text.rpartition(":")
    if not separator or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageFailure(f"--metrics-listen {text!r}: must be HOST:PORT, e.g. 0.0.0.0:9465")
    return host.strip("[]") or "0.0.0.0", int(port)  # noqa: S104 - as asked


def _loop(
    budgets: BudgetsFile,
    run: Run,
    connect: Callable[[], KubeCluster],
    seconds: float,
) -> None:
    """Runs every `seconds` until SIGTERM or SIGINT; a bad budgets file becomes an Event
    on the guard's own Pod (POD_NAME, POD_NAMESPACE, POD_UID from the downward API)."""
    from spancost.guard.kube import KubeError, PodRef  # noqa: PLC0415
    from spancost.guard.loop import GuardLoop  # noqa: PLC0415
    from spancost.guard.run import run_forever  # noqa: PLC0415

    pod = PodRef.from_environ(os.environ)

    def report_error(message: str) -> None:
        if pod is None:
            logger.warning("POD_NAME or POD_NAMESPACE not set: no Event for the bad budgets file")
            return
        try:
            connect().record_pod_event(pod, "BudgetsFileInvalid", message, datetime.now(UTC))
        except KubeError as exc:
            logger.error("cannot record an Event on pod %s/%s: %s", pod.namespace, pod.name, exc)

    loop = GuardLoop(budgets, run, report_error)
    try:
        stop = threading.Event()

        def on_signal(signum: int, _frame: FrameType | None) -> None:
            logger.info("spancost guard: %s, stopping", signal.Signals(signum).name)
            stop.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        run_forever(loop.run_once, seconds, stop)
    finally:
        loop.close()
