from __future__ import annotations

import os
import socket
import stat
import time
from pathlib import Path

import pytest

from spancost.errors import ListenAddressError, ServerStartError
from spancost.sidecar.address import (
    ListenAddress,
    parse_listen_address,
    prepare_unix_socket,
    private_umask,
    remove_socket,
    restrict_socket,
)


@pytest.mark.parametrize(
    ("text", "target"),
    [
        ("unix:///run/spancost/sidecar.sock", "unix:///run/spancost/sidecar.sock"),
        ("unix:/run/spancost/sidecar.sock", "unix:///run/spancost/sidecar.sock"),
        ("unix:///run/spancost/../x.sock", "unix:///run/x.sock"),
        ("127.0.0.1:4317", "127.0.0.1:4317"),
        ("[::1]:0", "[::1]:0"),
        (" localhost:65535 ", "localhost:65535"),
    ],
)
def test_accepted_addresses(text: str, target: str) -> None:
    assert parse_listen_address(text).grpc_target == target


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("0.0.0.0:1234", "host '0.0.0.0' is not loopback"),
        ("[::]:1234", "host '[::]' is not loopback"),
        ("10.0.0.1:1234", "is not loopback"),
        ("127.0.0.2:1234", "is not loopback"),
        (":1234", "expected HOST:PORT"),
        ("localhost", "expected HOST:PORT"),
        ("localhost:http", "is not a number"),
        ("localhost:70000", "is not a number"),
        ("dns:///localhost:1234", "unsupported scheme"),
        ("unix-abstract:spancost", "unsupported scheme"),
        ("unix:relative.sock", "must be absolute"),
        ("unix://host/x.sock", "must be absolute"),
        ("unix:///tmp/dir/", "names a directory"),
        ("unix:///" + "x" * 120, "longer than 107 bytes"),
    ],
)
def test_refused_addresses(text: str, why: str) -> None:
    with pytest.raises(ListenAddressError) as caught:
        parse_listen_address(text)
    assert why in str(caught.value)
    assert "never listens beyond this host" in str(caught.value)


def test_with_port_keeps_the_host() -> None:
    assert ListenAddress(text="x", host="[::1]", port=0).with_port(42).grpc_target == "[::1]:42"


def test_prepare_creates_a_private_directory(tmp_path: Path) -> None:
    path = tmp_path / "private" / "s.sock"
    prepare_unix_socket(path)
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_prepare_removes_a_stale_socket(tmp_path: Path) -> None:
    path = tmp_path / "s.sock"
    with socket.socket(socket.AF_UNIX) as dead:
        dead.bind(str(path))  # bound, never listening: what a killed sidecar leaves
    prepare_unix_socket(path)
    assert not path.exists()


def test_prepare_refuses_a_live_socket(tmp_path: Path) -> None:
    path = tmp_path / "s.sock"
    with socket.socket(socket.AF_UNIX) as live:
        live.bind(str(path))
        live.listen()
        with pytest.raises(ServerStartError, match="already listening"):
            prepare_unix_socket(path)


def test_prepare_refuses_a_regular_file(tmp_path: Path) -> None:
    path = tmp_path / "s.sock"
    path.write_text("not a socket")
    with pytest.raises(ServerStartError, match="is not a socket"):
        prepare_unix_socket(path)
    assert path.read_text() == "not a socket"


def test_umask_restrict_and_remove(tmp_path: Path) -> None:
    address = parse_listen_address(f"unix://{tmp_path / 's.sock'}")
    assert address.unix_path is not None
    before = os.umask(0o022)
    try:
        with private_umask(address):
            assert os.umask(0o077) == 0o077
        assert os.umask(0o022) == 0o022
    finally:
        os.umask(before)
    with socket.socket(socket.AF_UNIX) as bound:
        bound.bind(str(address.unix_path))
    os.chmod(address.unix_path, 0o666)  # noqa: S103 - what restrict_socket must undo
    ours = restrict_socket(address)
    assert stat.S_IMODE(address.unix_path.stat().st_mode) == 0o600
    remove_socket(address, ours)
    remove_socket(address, ours)  # already gone: fine
    assert not address.unix_path.exists()
    tcp = parse_listen_address("127.0.0.1:0")
    with private_umask(tcp):
        assert restrict_socket(tcp) is None
        remove_socket(tcp, None)


def test_remove_socket_leaves_what_it_did_not_bind(tmp_path: Path) -> None:
    address = parse_listen_address(f"unix://{tmp_path / 's.sock'}")
    assert address.unix_path is not None
    address.unix_path.write_text("not ours")
    remove_socket(address, None)
    st = address.unix_path.stat()
    remove_socket(address, (st.st_dev, st.st_ino, st.st_ctime_ns))  # not a socket
    assert address.unix_path.read_text() == "not ours"


def test_remove_socket_leaves_a_successors_socket_with_our_inode_number(tmp_path: Path) -> None:
    # A sidecar restarted beside one still stopping binds the same path; its socket
    # may get the inode number ours had. The stopping one must not remove it.
    address = parse_listen_address(f"unix://{tmp_path / 's.sock'}")
    assert address.unix_path is not None
    with socket.socket(socket.AF_UNIX) as first:
        first.bind(str(address.unix_path))
    ours = restrict_socket(address)
    assert ours is not None
    time.sleep(0.05)  # file times are coarse (a jiffy): the successor binds later
    address.unix_path.unlink()  # the successor removes the stale file, then binds
    with socket.socket(socket.AF_UNIX) as successor:
        successor.bind(str(address.unix_path))
    theirs = address.unix_path.stat()
    # The same inode number and device as ours, as the file system may well give it:
    # only the change time tells the two files apart.
    same_number = (theirs.st_dev, theirs.st_ino, ours[2])
    remove_socket(address, same_number)
    assert address.unix_path.exists(), "a successor's socket was removed"
    remove_socket(address, (theirs.st_dev, theirs.st_ino, theirs.st_ctime_ns))
    assert not address.unix_path.exists()
