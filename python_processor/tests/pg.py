"""A private PostgreSQL server for the test session: started by the tests, stopped after.

`postgres_server()` runs ``initdb`` (trust authentication, as the ``postgres`` user via
``runuser`` when the tests run as root) in a temporary directory, starts the server on
a free 127.0.0.1 port with its unix socket in that directory, yields a DSN and stops
it. It depends on nothing started outside the tests; it raises `PostgresUnavailableError`
(with the reason and the server log) when PostgreSQL cannot be started.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg import sql

__all__ = [
    "PostgresServer",
    "PostgresUnavailableError",
    "create_database",
    "postgres_server",
    "running_postgres",
]

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


class PostgresServer:
    """A throw-away PostgreSQL server in a temporary directory; `stop` and `start`
    it again (same data, same port) to simulate an outage."""

    def __init__(self) -> None:
        self._bindir = _bindir()
        self._as_user: list[str] = []
        self.base = Path(tempfile.mkdtemp(prefix="spancost-pg-"))
        if os.geteuid() == 0:  # initdb and postgres refuse to run as root
            try:
                account = pwd.getpwnam("postgres")
            except KeyError as exc:
                shutil.rmtree(self.base, ignore_errors=True)
                raise PostgresUnavailableError(
                    "running as root and no 'postgres' user to run as"
                ) from exc
            os.chown(self.base, account.pw_uid, account.pw_gid)
            self._as_user = ["runuser", "-u", "postgres", "--"]
        self.data, self.log, self.port = self.base / "data", self.base / "server.log", _free_port()
        self.dsn = f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"
        try:
            _run(
                [*self._as_user, str(self._bindir / "initdb"), "-D", str(self.data),
                 "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C"],
                "initdb",
            )  # fmt: skip
        except BaseException:
            shutil.rmtree(self.base, ignore_errors=True)
            raise

    def start(self) -> None:
        options = f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 -c fsync=off"
        _run(
            [*self._as_user, str(self._bindir / "pg_ctl"), "start", "-w", "-t", str(_TIMEOUT_S),
             "-D", str(self.data), "-l", str(self.log), "-o", options],
            "pg_ctl start",
            self.log,
        )  # fmt: skip

    def stop(self) -> None:
        """Stop the server (fast shutdown: open connections are closed)."""
        subprocess.run(
            [*self._as_user, str(self._bindir / "pg_ctl"), "stop", "-D", str(self.data),
             "-m", "fast", "-w"],
            capture_output=True,
            timeout=_TIMEOUT_S,
            check=False,
        )  # fmt: skip

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)


@contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    """A started `PostgresServer`, stopped and removed afterwards."""
    server = PostgresServer()
    try:
        server.start()
        yield server
    finally:
        server.remove()


@contextmanager
def postgres_server() -> Iterator[str]:
    """Start a throw-away PostgreSQL server; yield a DSN for its ``postgres`` database."""
    with running_postgres() as server:
        yield server.dsn


_databases = itertools.count(1)


def create_database(server_dsn: str, prefix: str = "test") -> str:
    """A new, empty database on the server of `server_dsn` (a libpq key=value DSN of
    its ``postgres`` database); the DSN of the new one."""
    name = f"{prefix}_{next(_databases)}"
    with psycopg.connect(server_dsn, autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return server_dsn.replace("dbname=postgres", f"dbname={name}")
