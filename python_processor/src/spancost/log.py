"""Logging for the spancost commands: one line per record on stderr, UTC timestamps."""

from __future__ import annotations

import logging
import sys
import time

__all__ = ["LOG_LEVELS", "UtcFormatter", "configure_logging"]

LOG_LEVELS = ("debug", "info", "warning", "error")


class UtcFormatter(logging.Formatter):
    """``2025-01-31T12:00:00.123Z INFO spancost.sidecar.server: message``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatTime(  # noqa: N802 - overrides logging.Formatter.formatTime
        self, record: logging.LogRecord, datefmt: str | None = None
    ) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        return f"{stamp}.{int(record.msecs):03d}Z"


def configure_logging(level: str) -> None:
    """Send every record at `level` or above to stderr, replacing earlier handlers."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(UtcFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
