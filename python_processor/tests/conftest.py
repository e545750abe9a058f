"""Shared fixtures: test-only plugins installed for real, and a running sidecar."""

from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import grpc
import pytest
from hypothesis import settings
from hypothesis.configuration import set_hypothesis_home_dir

from spancost.sidecar.address import parse_listen_address
from spancost.sidecar.instances import PluginInstances
from spancost.sidecar.server import ServerOptions, SidecarServer
from spancost.wire.v1 import sidecar_pb2_grpc
from tests.pg import PostgresUnavailableError, postgres_server

# No example database, and Hypothesis' caches in the temp directory: the suite is
# run from several directories and must not leave .hypothesis/ behind in them.
set_hypothesis_home_dir(os.path.join(tempfile.gettempdir(), "spancost-hypothesis"))
settings.register_profile("spancost", database=None)
settings.load_profile("spancost")

FIXTURES = Path(__file__).parent / "fixtures"
EXAMPLE_PLUGIN_SRC = Path(__file__).parents[2] / "examples" / "spancost-example-plugin" / "src"


def _load_test_plugins() -> ModuleType:
    """fixtures/spancost_test_plugins.py, loaded by path: it is not importable from
    here until `test_plugin_site` has installed it."""
    spec = importlib.util.spec_from_file_location(
        "spancost_test_plugins_installer", FIXTURES / "spancost_test_plugins.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def test_plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A directory holding the ``spancost-test-plugins`` distribution, on ``sys.path``.

    Subprocesses get it through ``PYTHONPATH`` (see `sidecar_env`).
    """
    site = tmp_path_factory.mktemp("site")
    _load_test_plugins().install(site)
    sys.path.insert(0, str(site))
    yield site
    sys.path.remove(str(site))


@pytest.fixture
def sidecar_env(test_plugin_site: Path) -> dict[str, str]:
    """Environment for a `spancost sidecar` subprocess that sees the test plugins."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPANCOST_")}
    env.pop("PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION", None)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(test_plugin_site), *filter(None, [env.get("PYTHONPATH")])]
    )
    return env


@pytest.fixture
def sidecar_server(tmp_path: Path, test_plugin_site: Path) -> Iterator[SidecarServer]:
    """A real sidecar gRPC server, in-process, on a unix socket in `tmp_path`."""
    options = ServerOptions(
        listen=parse_listen_address(f"unix://{tmp_path / 'sidecar.sock'}"),
        workers=2,
    )
    server = SidecarServer(options, PluginInstances())
    server.start()
    yield server
    server.stop(grace=1.0)


@pytest.fixture
def channel(sidecar_server: SidecarServer) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(sidecar_server.address.grpc_target) as ch:
        yield ch


@pytest.fixture
def stub(channel: grpc.Channel) -> sidecar_pb2_grpc.SidecarStub:
    return sidecar_pb2_grpc.SidecarStub(channel)  # type: ignore[no-untyped-call]


@pytest.fixture
def example_plugin_path() -> Iterator[Path]:
    """The example plugin's sources on ``sys.path`` (it is not installed in this venv)."""
    sys.path.insert(0, str(EXAMPLE_PLUGIN_SRC))
    yield EXAMPLE_PLUGIN_SRC
    sys.path.remove(str(EXAMPLE_PLUGIN_SRC))


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """One private PostgreSQL server for the whole session (tests/pg.py); the DSN of its
    ``postgres`` database. Tests make their own databases with `create_database`."""
    try:
        with postgres_server() as dsn:
            yield dsn
    except PostgresUnavailableError as exc:
        pytest.fail(f"cannot start the test PostgreSQL server: {exc}", pytrace=False)
