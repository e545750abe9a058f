"""A private PostgreSQL server for the test session: started by the tests, stopped after.

`postgres_server()` runs ``initdb`` (trust authentication, as the ``postgres`` user via
``runuser`` when the tests run as root) in a temporary directory, starts the server on
a free 127.0.0.1 port with its unix socket in that directory, yields a DSN and stops
it. It depends on nothing started outside the tests; it raises `PostgresUnavailableError`
(with the reason and the server log) when PostgreSQL cannot be started.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["PostgresUnavailableError", "postgres_server"]

_TIMEOUT_S = 60


class PostgresUnavailableError(RuntimeError):
    """PostgreSQL could not be found or started."""


def _bindir() -> Path:
    """``$PG_BINDIR``, else the newest ``/usr/lib/postgresql/*/bin``, else ``initdb`` on PATH."""
    candidates = [os.environ.get("PG_BINDIR", "")]
    candidates += sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name)
    )[::-1]
    initdb = shutil.which("initdb")
    candidates.append(str(Path(initdb).parent) if initdb else "")
    for candidate in candidates:
        if candidate and (Path(candidate) / "initdb").is_file():
            return Path(candidate)
    raise PostgresUnavailableError(
        "PostgreSQL binaries not found: set PG_BINDIR, or install postgresql (initdb, pg_ctl)"
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _run(command: list[str], what: str, log: Path | None = None) -> None:
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=_TIMEOUT_S, check=False
    )
    if result.returncode != 0:
        server_log = log.read_text(errors="replace") if log and log.exists() else ""
        raise PostgresUnavailableError(
            f"{what} failed (exit {result.returncode}): {' '.join(command)}\n"
            f"{result.stdout}{result.stderr}{server_log}"
        )


@contextmanager
def postgres_server() -> Iterator[str]:
    """Start a throw-away PostgreSQL server; yield a DSN for its ``postgres`` database."""
    bindir = _bindir()
    as_user: list[str] = []
    base = Path(tempfile.mkdtemp(prefix="spancost-pg-"))
    if os.geteuid() == 0:  # initdb and postgres refuse to run as root
        try:
            account = pwd.getpwnam("postgres")
        except KeyError as exc:
            raise PostgresUnavailableError(
                "running as root and no 'postgres' user to run as"
            ) from exc
        os.chown(base, account.pw_uid, account.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    data, log, port = base / "data", base / "server.log", _free_port()
    try:
        _run(
            [*as_user, str(bindir / "initdb"), "-D", str(data), "-U", "postgres",
             "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C"],
            "initdb",
        )  # fmt: skip
        options = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off"
        _run(
            [*as_user, str(bindir / "pg_ctl"), "start", "-w", "-t", str(_TIMEOUT_S),
             "-D", str(data), "-l", str(log), "-o", options],
            "pg_ctl start",
            log,
        )  # fmt: skip
        try:
            yield f"host=127.0.0.1 port={port} user=postgres dbname=postgres"
        finally:
            subprocess.run(
                [*as_user, str(bindir / "pg_ctl"), "stop", "-D", str(data), "-m", "fast", "-w"],
                capture_output=True,
                timeout=_TIMEOUT_S,
                check=False,
            )
    finally:
        shutil.rmtree(base, ignore_errors=True)
