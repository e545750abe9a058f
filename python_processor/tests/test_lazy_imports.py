"""The sidecar loads the heavy optional libraries only for a config that uses them:
the Kubernetes client (about 30 MiB of a process) for node facts from the API,
psycopg (about 12 MiB) for a PostgreSQL store. Checked in a fresh interpreter, since
this one has long imported both."""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = """
import json, sys
import spancost.sidecar.server, spancost.plugins.chain, spancost.plugins.cost
import spancost.plugins.environment, spancost.plugins.totals, spancost.store.open
from spancost.plugins.totals import TotalsSink
sink = TotalsSink({"database_url": sys.argv[1]})
sink.close()
print(json.dumps(sorted(m for m in ("kubernetes", "psycopg") if m in sys.modules)))
"""


def loaded(database_url: str) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, database_url],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    names: list[str] = json.loads(result.stdout.strip().splitlines()[-1])
    return names


def test_plugins_and_a_sqlite_store_load_neither(tmp_path: object) -> None:
    assert loaded(f"sqlite://{tmp_path}/totals.db") == []


def test_a_postgresql_url_loads_psycopg() -> None:
    # Unreachable: the sink logs it and retries; psycopg was needed to try.
    assert loaded("postgresql://nobody@127.0.0.1:1/none?connect_timeout=1") == ["psycopg"]
