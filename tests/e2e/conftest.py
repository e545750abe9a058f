from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import ROOT, Collector, OtlpSink

TEST_PLUGINS = ROOT / "python_processor" / "tests" / "fixtures" / "spancost_test_plugins.py"


@pytest.fixture
def sink() -> Iterator[OtlpSink]:
    s = OtlpSink().start()
    yield s
    s.stop()


@pytest.fixture(scope="session")
def test_plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding the test-only plugins (the ``spancost-test-plugins``
    distribution of python_processor/tests/fixtures), for a sidecar's ``PYTHONPATH``."""
    spec = importlib.util.spec_from_file_location("spancost_test_plugins_installer", TEST_PLUGINS)
    assert spec is not None and spec.loader is not None
    installer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(installer)
    site = tmp_path_factory.mktemp("site")
    installer.install(site)
    return site


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
