"""The ``spancost`` command line: the root group, and a module for each command or group
of commands (`sidecar`, `health`, `demo`, `prices`, `db`, `report`, `reprice`, `export`,
`guard`), each saying its exit codes; what they share is in `options` and `database`.

Exit codes: 0 success, or a clean stop by SIGTERM/SIGINT; 1 the command failed; 2 usage
errors (a bad flag or environment variable, `options.UsageFailure`). Expected errors
print ``Error: <message>``, never a traceback.

The commands import what is heavy (boto3, the Kubernetes client, psycopg) only when they
run, so the sidecar's start-up never pays for it.
"""

from __future__ import annotations

import click

from spancost import __version__
from spancost.cli import db, demo, export, guard, health, prices, report, reprice, sidecar

__all__ = ["cli", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(
    __version__, "--version", prog_name="spancost", message="%(prog)s %(version)s"
)
def cli() -> None:
    """spancost: prices every span flowing through an OpenTelemetry Collector."""


cli.add_command(sidecar.sidecar)
cli.add_command(health.health)
cli.add_command(demo.demo)
cli.add_command(prices.prices)
cli.add_command(db.db)
cli.add_command(report.report)
cli.add_command(reprice.reprice)
cli.add_command(guard.guard)
cli.add_command(export.export)


def main() -> None:
    """Entry point of the ``spancost`` script."""
    cli(prog_name="spancost")
