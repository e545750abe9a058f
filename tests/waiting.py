"""Bounded polling, shared by the end-to-end and the Kubernetes test harnesses."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_for(
    predicate: Callable[[], bool],
    timeout: float,
    what: str,
    interval: float = 0.02,
    error: type[Exception] = AssertionError,
) -> None:
    """Return once `predicate()` is true; raise `error` naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise error(f"timed out after {timeout:g} s waiting for {what}")
