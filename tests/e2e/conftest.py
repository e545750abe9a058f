from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import Collector, OtlpSink


@pytest.fixture
def sink() -> Iterator[OtlpSink]:
    s = OtlpSink().start()
    yield s
    s.stop()


@pytest.fixture
def collector(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Callable[..., Collector]]:
    """Starts collectors for a test and stops them (printing their log on failure)."""
    started: list[Collector] = []

    def start(
        config: dict[str, Any], *, wait: bool = True, env: dict[str, str] | None = None
    ) -> Collector:
        workdir = tmp_path / f"collector-{len(started)}"
        workdir.mkdir()
        c = Collector(config, workdir, env)
        started.append(c)
        return c.start(wait=wait)

    yield start
    for c in started:
        c.stop()
        rep = getattr(request.node, "rep_call", None)
        if rep is not None and rep.failed:
            print(f"--- log of {c.config_path} ---\n{c.log()[-20000:]}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    rep = yield
    setattr(item, "rep_" + rep.when, rep)
    return rep
