"""A real Prometheus server for the tests, as a private process.

`Prometheus` starts Debian's ``prometheus`` (``scripts/deps.sh`` installs it;
``$PROMETHEUS`` names another binary) on a free 127.0.0.1 port, with a generated
configuration that scrapes the given targets every half second and a TSDB in a
temporary directory, and waits until it says it is ready. A missing binary fails the
test, naming the install step; it never skips it.

What the tests read is what a user's Prometheus makes of a scrape: the names, labels
and values its HTTP query API returns, after its own relabelling (a scraped ``job``
label, for one, becomes ``exported_job``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.e2e.harness import free_port
from tests.waiting import wait_for

__all__ = ["JOB", "PrometheusServer", "Sample", "prometheus_binary"]

JOB = "spancost"
"""The scrape job of every target: Prometheus' own ``job`` label on what it scrapes."""
SCRAPE_INTERVAL = "500ms"
_START_TIMEOUT_S = 60.0


def prometheus_binary() -> Path:
    """``$PROMETHEUS``, else ``prometheus`` on PATH (Debian's is /usr/bin/prometheus)."""
    named = os.environ.get("PROMETHEUS")
    found = named or shutil.which("prometheus")
    if not found or not Path(found).is_file():
        raise AssertionError(
            f"no Prometheus binary ({named or 'prometheus on PATH'}): scripts/deps.sh installs "
            "Debian's package `prometheus` (make test runs it), or set PROMETHEUS"
        )
    return Path(found)


@dataclass(frozen=True)
class Sample:
    """One series of an instant query's result."""

    labels: dict[str, str]
    value: float


class PrometheusServer:
    """One run of Prometheus scraping `targets` (``host:port``, path ``/metrics``)."""

    def __init__(self, targets: list[str], workdir: Path) -> None:
        self.binary = prometheus_binary()
        self.workdir = workdir
        self.port = free_port()
        self.config_path = workdir / "prometheus.yml"
        self.log_path = workdir / "prometheus.log"
        self.config_path.write_text(
            yaml.safe_dump(
                {
                    "global": {
                        "scrape_interval": SCRAPE_INTERVAL,
                        "scrape_timeout": SCRAPE_INTERVAL,
                        "evaluation_interval": SCRAPE_INTERVAL,
                    },
                    "scrape_configs": [{"job_name": JOB, "static_configs": [{"targets": targets}]}],
                }
            )
        )
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> PrometheusServer:
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(  # noqa: S603 - a binary the harness chose
            [
                str(self.binary),
                f"--config.file={self.config_path}",
                f"--storage.tsdb.path={self.workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
        )
        wait_for(self._ready, _START_TIMEOUT_S, "Prometheus to be ready", interval=0.1)
        return self

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"prometheus exited with {self.proc.returncode}:\n{self.log()}")
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as response:  # noqa: S310
                return bool(response.status == 200)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def _get(self, path: str, **params: str) -> Any:
        url = f"{self.url}{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - our server
                document = json.load(response)
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"{url}: {exc.code} {exc.read()[:500]!r}") from exc
        if document.get("status") != "success":
            raise AssertionError(f"{url}: {document}")
        return document["data"]

    def query(self, expr: str) -> list[Sample]:
        """An instant query's vector (now): every series' labels and value."""
        data = self._get("/api/v1/query", query=expr)
        if data["resultType"] != "vector":
            raise AssertionError(f"{expr!r} is a {data['resultType']}, not an instant vector")
        return [Sample(dict(r["metric"]), float(r["value"][1])) for r in data["result"]]

    def by(self, expr: str, label: str) -> dict[str, float]:
        """`expr`'s value per value of `label` (a series without it under "")."""
        return {s.labels.get(label, ""): s.value for s in self.query(expr)}

    def targets_up(self) -> bool:
        """Every target has been scraped, successfully, at least once."""
        active = self._get("/api/v1/targets", state="active")["activeTargets"]
        return bool(active) and all(t["health"] == "up" for t in active)
