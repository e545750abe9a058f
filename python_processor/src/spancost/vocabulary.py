"""Words every layer of spancost shares, at the bottom of the house (no spancost import):
the resource attribute keys of the deployment environment and the one form environment
names are compared in. The pricing plugin reads and tags by them, the totals adapter
stores by them, and the report, the guard and the export filter by them, so an
environment named ``Staging`` by a sender, ``staging`` in a budgets file and
``STAGING`` on a command line are one environment."""

from __future__ import annotations

from typing import Final

__all__ = ["ENVIRONMENT_KEY", "ENVIRONMENT_KEYS", "LEGACY_ENVIRONMENT_KEY", "normalize_environment"]

ENVIRONMENT_KEY: Final = "deployment.environment.name"
"""The OpenTelemetry semantic conventions' key (since 1.27)."""
LEGACY_ENVIRONMENT_KEY: Final = "deployment.environment"
"""The key it replaced, still sent by older SDKs: read after the current one."""
ENVIRONMENT_KEYS: Final = (ENVIRONMENT_KEY, LEGACY_ENVIRONMENT_KEY)


def normalize_environment(name: str) -> str:
    """The form environment names are stored and compared in: trimmed, case-folded."""
    return name.strip().casefold()
