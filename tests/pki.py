"""Throw-away certificates for the tests' servers, made with the openssl command
(``scripts/deps.sh`` installs Debian's ``openssl``): a CA, and a server certificate
it signed for the names a client will check. Used by the test API server
(tests/kube/harness.py) and the gateways of the two-tier tests (TLS is what lets the
collector's bearertokenauth send a token at all)."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PkiError", "ServerCertificate", "openssl", "server_certificate"]


class PkiError(RuntimeError):
    """openssl is missing or failed; the message says which step and why."""


def openssl(*args: str) -> None:
    """Run ``openssl ARGS``; a `PkiError` with its stderr when it fails."""
    binary = shutil.which("openssl")
    if binary is None:
        raise PkiError("openssl not found: install it (Debian: apt-get install openssl)")
    result = subprocess.run(  # noqa: S603 - fixed arguments
        [binary, *args], capture_output=True, text=True, timeout=60, check=False
    )
    if result.returncode != 0:
        raise PkiError(f"openssl {args[0]} failed: {result.stderr.strip()}")


@dataclass(frozen=True)
class ServerCertificate:
    """Files of a CA and of a server certificate it signed (PEM)."""

    ca_file: Path
    ca_key: Path
    cert_file: Path
    key_file: Path


def server_certificate(
    directory: Path, name: str, alt_names: list[str], *, ca_name: str = "spancost-test-ca"
) -> ServerCertificate:
    """A new CA in `directory` and a certificate for `name` with the subjectAltNames
    `alt_names` (``IP:127.0.0.1``, ``DNS:localhost``), valid for two days, for
    server authentication."""
    directory.mkdir(parents=True, exist_ok=True)
    ca, ca_key = directory / "ca.crt", directory / "ca.key"
    key, csr, crt = (directory / f"{name}.{ext}" for ext in ("key", "csr", "crt"))
    extensions = directory / f"{name}.ext"
    extensions.write_text(
        f"subjectAltName={','.join(alt_names)}\n"
        "extendedKeyUsage=serverAuth\nkeyUsage=digitalSignature,keyEncipherment\n"
    )
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", f"/CN={ca_name}", "-keyout", str(ca_key), "-out", str(ca))  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
            "-keyout", str(key), "-out", str(csr))  # fmt: skip
    openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
            "-CAcreateserial", "-days", "2", "-extfile", str(extensions),
            "-out", str(crt))  # fmt: skip
    return ServerCertificate(ca, ca_key, crt, key)
