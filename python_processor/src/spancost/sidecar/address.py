"""Listen addresses: parsing, the loopback-only rule and unix socket hygiene.

The sidecar must never be reachable from beyond this host: it accepts a unix
socket (``unix:///abs/path.sock``) or a loopback TCP address
(``127.0.0.1:PORT``, ``[::1]:PORT``, ``localhost:PORT``) and nothing else.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from spancost.errors import ListenAddressError, ServerStartError

__all__ = ["ListenAddress", "parse_listen_address"]

logger = logging.getLogger(__name__)

LOOPBACK_HOSTS = ("127.0.0.1", "[::1]", "localhost")
# sockaddr_un.sun_path is 108 bytes on Linux, including the terminating NUL.
MAX_UNIX_PATH_BYTES = 107
SOCKET_MODE = 0o600
SOCKET_DIR_MODE = 0o700


@dataclass(frozen=True, slots=True)
class ListenAddress:
    """Where the sidecar listens: a unix socket path, or a loopback host and port."""

    text: str
    """The address as the user wrote it."""
    unix_path: Path | None = None
    host: str = ""
    port: int = 0

    @property
    def grpc_target(self) -> str:
        """The address in the form `grpc.Server.add_insecure_port` takes."""
        if self.unix_path is not None:
            return f"unix://{self.unix_path}"
        return f"{self.host}:{self.port}"

    def with_port(self, port: int) -> ListenAddress:
        """This TCP address with the port the server actually bound (for port 0)."""
        return ListenAddress(text=f"{self.host}:{port}", host=self.host, port=port)

    def __str__(self) -> str:
        return self.grpc_target


def _refuse(text: str, why: str) -> ListenAddressError:
    return ListenAddressError(
        f"refusing to listen on {text!r}: {why}; use unix:///absolute/path.sock or "
        "127.0.0.1:PORT, [::1]:PORT or localhost:PORT (the sidecar never listens beyond this host)"
    )


def parse_listen_address(text: str) -> ListenAddress:
    """Parse and check `text`; raise `ListenAddressError` saying what is wrong."""
    text = text.strip()
    if text.startswith("unix:"):
        return _parse_unix(text)
    if "://" in text or text.startswith(("unix-abstract:", "vsock:")):
        raise _refuse(text, "unsupported scheme")
    host, sep, port_text = text.rpartition(":")
    if not sep or not host:
        raise _refuse(text, "expected HOST:PORT")
    if host not in LOOPBACK_HOSTS:
        raise _refuse(text, f"host {host!r} is not loopback")
    if not port_text.isdigit() or int(port_text) > 65535:
        raise _refuse(text, f"port {port_text!r} is not a number from 0 to 65535")
    return ListenAddress(text=text, host=host, port=int(port_text))


def _parse_unix(text: str) -> ListenAddress:
    # gRPC spells absolute socket paths unix:///abs or unix:/abs; unix:rel is relative
    # and unix://name/... would read as a URI authority.
    raw = text.removeprefix("unix:")
    path = raw[2:] if raw.startswith("///") else raw
    if not path.startswith("/") or path.startswith("//"):
        raise _refuse(text, "the socket path must be absolute (unix:///abs/path.sock)")
    if path.endswith("/"):
        raise _refuse(text, "the socket path names a directory")
    if len(os.fsencode(path)) > MAX_UNIX_PATH_BYTES:
        raise _refuse(text, f"the socket path is longer than {MAX_UNIX_PATH_BYTES} bytes")
    return ListenAddress(text=text, unix_path=Path(os.path.normpath(path)))


def prepare_unix_socket(path: Path) -> None:
    """Make `path` bindable: create its directory (0700) and remove a stale socket.

    A socket file nobody answers on is stale (a previous sidecar died) and is
    removed. A live socket or a file that is not a socket is left alone and
    reported, so two sidecars never fight over one path.
    """
    directory = path.parent
    if not directory.exists():
        logger.info("creating socket directory %s (mode 0700)", directory)
        try:
            directory.mkdir(mode=SOCKET_DIR_MODE, parents=True, exist_ok=True)
        except OSError as exc:
            raise ServerStartError(f"cannot create socket directory {directory}: {exc}") from exc
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise ServerStartError(f"{path} exists and is not a socket; not removing it")
    if _is_listening(path):
        raise ServerStartError(f"another process is already listening on {path}")
    logger.info("removing stale socket file %s", path)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _is_listening(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(os.fspath(path))
        except OSError as exc:
            if exc.errno in (errno.ECONNREFUSED, errno.ENOENT):
                return False
            raise ServerStartError(f"cannot tell whether {path} is in use: {exc}") from exc
        return True


@contextlib.contextmanager
def private_umask(address: ListenAddress) -> Iterator[None]:
    """While binding a unix socket, create it inaccessible to group and others.

    The umask is process-wide; the sidecar only binds at start, before it runs
    any plugin code, so nothing else creates files meanwhile.
    """
    if address.unix_path is None:
        yield
        return
    previous = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(previous)


SocketId = tuple[int, int, int]
"""A socket file's device, inode and change time (ns): which file it is, even after
a successor bound the same path and got the same, freed, inode number."""


def _socket_id(st: os.stat_result) -> SocketId:
    return st.st_dev, st.st_ino, st.st_ctime_ns


def restrict_socket(address: ListenAddress) -> SocketId | None:
    """Set the bound socket file to mode 0600 (the umask already should have).

    Returns which file it is, for `remove_socket`; None for TCP.
    """
    if address.unix_path is None:
        return None
    try:
        os.chmod(address.unix_path, SOCKET_MODE)
        return _socket_id(address.unix_path.stat())
    except OSError as exc:
        raise ServerStartError(f"cannot set mode 0600 on {address.unix_path}: {exc}") from exc


def remove_socket(address: ListenAddress, ours: SocketId | None) -> None:
    """Remove the socket file we bound (`ours`, from `restrict_socket`), if gRPC has not.

    Anything else found at the path stays: a file that kept us from binding, or the
    socket of a successor that bound the path while we were stopping. The inode alone
    does not tell that one from ours: a freed inode number is often given to the next
    file (a sidecar restarted beside a stopping one lost its socket that way).
    """
    if address.unix_path is None or ours is None:
        return
    try:
        current = address.unix_path.lstat()
    except FileNotFoundError:
        return
    if stat.S_ISSOCK(current.st_mode) and _socket_id(current) == ours:
        with contextlib.suppress(FileNotFoundError):
            address.unix_path.unlink()
