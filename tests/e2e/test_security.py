"""The sidecar is reachable by nobody but the collector."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable

import psutil

from tests.e2e.harness import Collector, OtlpSink, base_config, socket_path_of


def test_socket_is_private_and_the_sidecar_listens_on_nothing_else(
    sink: OtlpSink, collector: Callable[..., Collector]
) -> None:
    c = collector(base_config(sink.port))
    sidecar = c.sidecar()
    sock = socket_path_of(sidecar)
    assert stat.S_ISSOCK(sock.stat().st_mode)
    assert stat.S_IMODE(sock.stat().st_mode) == 0o600
    assert stat.S_IMODE(sock.parent.stat().st_mode) == 0o700
    listening = [
        conn for conn in sidecar.net_connections(kind="inet") if conn.status == psutil.CONN_LISTEN
    ]
    assert listening == []
    unix = [
        conn
        for conn in sidecar.net_connections(kind="unix")
        if os.path.normpath(conn.laddr) == str(sock)
    ]
    assert unix, "the sidecar does not hold its socket"
    c.stop()
    assert not sock.parent.exists(), "the private socket directory outlived the collector"
