"""The totals core stays pure: no gRPC, database, AWS or Kubernetes client is imported."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

FORBIDDEN = ("grpc", "psycopg", "psycopg_pool", "boto3", "botocore", "kubernetes", "sqlite3")

_PROBE = """
import json, sys
for module in sys.argv[1:]:
    __import__(module)
print(json.dumps(sorted({name.split(".")[0] for name in sys.modules})))
"""


def loaded_after_importing(*modules: str) -> set[str]:
    """Top-level packages loaded by a fresh interpreter that imports `modules`."""
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, *modules],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return set(json.loads(result.stdout))


@pytest.mark.parametrize(
    "modules",
    [
        ("spancost.totals", "spancost.totals.aggregate", "spancost.totals.naming"),
        ("spancost.totals.otlp",),
        ("spancost.allocation.core", "spancost.allocation.usage", "spancost.store.busy"),
    ],
)
def test_no_io_client_is_imported(modules: tuple[str, ...]) -> None:
    loaded = loaded_after_importing(*modules)
    assert "spancost" in loaded
    assert loaded.isdisjoint(FORBIDDEN), sorted(loaded.intersection(FORBIDDEN))


def test_the_core_does_not_even_need_protobuf() -> None:
    loaded = loaded_after_importing("spancost.totals")
    assert "google" not in loaded
    assert "opentelemetry" not in loaded
