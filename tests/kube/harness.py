"""A real Kubernetes API server for the tests: etcd and kube-apiserver as processes.

`KubeCluster` starts etcd (client and peer on free 127.0.0.1 ports, data in a temporary
directory) and kube-apiserver on a free 127.0.0.1 port, with TLS (a throw-away CA and
serving certificate made with openssl), RBAC authorization, a static admin token in
``system:masters`` and a service-account signing key, so `TokenRequest` issues real
ServiceAccount tokens that RBAC then judges. Nothing else runs: no controller-manager
(Deployments get no ReplicaSets or pods, ServiceAccounts are not created per namespace,
namespaces are never finalized), no scheduler, no kubelet. `spec.replicas` and the
``deployments/scale`` subresource behave as in any cluster.

The binaries come from ``scripts/kube.sh`` (``make test`` runs it): ``$KUBE_APISERVER``
and ``$ETCD`` if set, else ``_build/kube/kube-apiserver`` and ``_build/kube/etcd``. When
they are missing, or a server does not come up, `KubeClusterError` says why, with the
server logs.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.pki import PkiError, openssl, server_certificate
from tests.waiting import wait_for

__all__ = [
    "KubeCluster",
    "KubeClusterError",
    "create_unless_exists",
    "delete_unless_missing",
    "find_binaries",
    "running_kube_cluster",
    "started_or_fail",
]

ROOT = Path(__file__).resolve().parents[2]
BIN_DIR = ROOT / "_build" / "kube"
SERVICE_CLUSTER_IP_RANGE = "10.96.0.0/16"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
ADMIN_USER = "spancost-admin"
_START_TIMEOUT_S = 120.0
_STOP_TIMEOUT_S = 30.0


class KubeClusterError(RuntimeError):
    """The binaries are missing, or etcd or kube-apiserver did not start."""


def find_binaries() -> tuple[Path, Path]:
    """(kube-apiserver, etcd): ``$KUBE_APISERVER``/``$ETCD``, else ``_build/kube/``."""
    found: list[Path] = []
    missing: list[str] = []
    for variable, name in (("KUBE_APISERVER", "kube-apiserver"), ("ETCD", "etcd")):
        path = Path(os.environ.get(variable) or BIN_DIR / name)
        if path.is_file() and os.access(path, os.X_OK):
            found.append(path)
        else:
            missing.append(f"{name} ({path})")
    if missing:
        raise KubeClusterError(
            f"missing: {', '.join(missing)}; run scripts/kube.sh (make test does), "
            "or set KUBE_APISERVER and ETCD to the binaries"
        )
    return found[0], found[1]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class _Process:
    """A server process writing to its own log file."""

    def __init__(self, name: str, command: list[str], log: Path) -> None:
        self.name, self.log = name, log
        with log.open("ab") as out:  # a restarted server appends
            self.proc = subprocess.Popen(  # noqa: S603 - our own binaries
                command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )

    def check_running(self) -> None:
        if self.proc.poll() is not None:
            raise KubeClusterError(f"{self.name} exited with {self.proc.returncode}")

    def stop(self) -> None:
        if self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(_STOP_TIMEOUT_S)

    def tail(self, chars: int = 20000) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return f"--- {self.name} log ({self.log}) ---\n{text[-chars:]}"


class KubeCluster:
    """etcd + kube-apiserver in ``workdir`` (a new temporary directory by default).

    ``url`` is ``https://127.0.0.1:<port>``; ``ca_file`` verifies its certificate;
    ``admin_token`` authenticates as a member of ``system:masters``.
    """

    def __init__(self, workdir: Path | None = None) -> None:
        self._apiserver_bin, self._etcd_bin = find_binaries()
        self._own_workdir = workdir is None
        self.workdir = (
            Path(tempfile.mkdtemp(prefix="spancost-kube-")) if workdir is None else workdir
        )
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = _free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.ca_file = self.workdir / "pki" / "ca.crt"
        self.admin_token = os.urandom(24).hex()
        self._processes: list[_Process] = []
        self._etcd_url = ""

    # -- life cycle ---------------------------------------------------------------

    def start(self) -> KubeCluster:
        """Start etcd, then kube-apiserver; return once ``/readyz`` answers ok."""
        try:
            self._write_pki()
            self._etcd_url = self._start_etcd()
            self._start_apiserver(self._etcd_url)
        except BaseException as exc:
            logs = self.logs()
            self.stop()
            if isinstance(exc, KubeClusterError):
                raise KubeClusterError(f"{exc}\n{logs}") from exc
            raise
        return self

    def stop(self) -> None:
        """Stop kube-apiserver, then etcd; remove the working directory if it made it."""
        for process in reversed(self._processes):
            process.stop()
        self._processes.clear()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def stop_apiserver(self) -> None:
        """Stop kube-apiserver only (etcd keeps the objects): the API is unreachable."""
        for process in [p for p in self._processes if p.name == "kube-apiserver"]:
            process.stop()
            self._processes.remove(process)

    def start_apiserver(self) -> None:
        """Start kube-apiserver again, on the same port, after `stop_apiserver`."""
        self._start_apiserver(self._etcd_url)

    def logs(self) -> str:
        """The end of every server log, for a failure message."""
        return "\n".join(process.tail() for process in self._processes)

    def __enter__(self) -> KubeCluster:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _write_pki(self) -> None:
        pki = self.ca_file.parent
        try:
            server_certificate(
                pki,
                "apiserver",
                ["IP:127.0.0.1", "DNS:localhost", "DNS:kubernetes", "DNS:kubernetes.default",
                 "DNS:kubernetes.default.svc", "IP:10.96.0.1"],
            )  # fmt: skip
            openssl("genrsa", "-out", str(pki / "sa.key"), "2048")
        except PkiError as exc:
            raise KubeClusterError(str(exc)) from exc
        (pki / "tokens.csv").write_text(
            f'{self.admin_token},{ADMIN_USER},{ADMIN_USER},"system:masters"\n'
        )

    def _start_etcd(self) -> str:
        client_url = f"http://127.0.0.1:{_free_port()}"
        peer_url = f"http://127.0.0.1:{_free_port()}"
        etcd = _Process(
            "etcd",
            [str(self._etcd_bin),
             "--name=spancost-test", f"--data-dir={self.workdir / 'etcd'}",
             f"--listen-client-urls={client_url}", f"--advertise-client-urls={client_url}",
             f"--listen-peer-urls={peer_url}", f"--initial-advertise-peer-urls={peer_url}",
             f"--initial-cluster=spancost-test={peer_url}", "--initial-cluster-state=new",
             "--unsafe-no-fsync", "--log-level=warn"],
            self.workdir / "etcd.log",
        )  # fmt: skip
        self._processes.append(etcd)

        def healthy() -> bool:
            etcd.check_running()
            try:
                with urllib.request.urlopen(f"{client_url}/health", timeout=2) as response:  # noqa: S310 - our own etcd
                    return b'"health":"true"' in response.read()
            except (urllib.error.URLError, OSError):
                return False

        wait_for(healthy, _START_TIMEOUT_S, "etcd to be healthy", 0.1, KubeClusterError)
        return client_url

    def _start_apiserver(self, etcd_url: str) -> None:
        pki = self.ca_file.parent
        apiserver = _Process(
            "kube-apiserver",
            [str(self._apiserver_bin),
             f"--etcd-servers={etcd_url}",
             "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
             f"--secure-port={self.port}",
             f"--tls-cert-file={pki / 'apiserver.crt'}",
             f"--tls-private-key-file={pki / 'apiserver.key'}",
             "--authorization-mode=RBAC", f"--token-auth-file={pki / 'tokens.csv'}",
             f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
             f"--service-account-key-file={pki / 'sa.key'}",
             f"--service-account-signing-key-file={pki / 'sa.key'}",
             f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
             # No controller-manager, kubelets or other API servers to talk to: the
             # "kubernetes" Service's endpoints would name a loopback address, which
             # Endpoints validation refuses.
             "--endpoint-reconciler-type=none",
             # As kubeadm and managed clusters run it: Pod Security, not this flag,
             # decides who may run privileged containers.
             "--allow-privileged=true",
             "--profiling=false", "--v=1"],
            self.workdir / "kube-apiserver.log",
        )  # fmt: skip
        self._processes.append(apiserver)
        context = ssl.create_default_context(cafile=str(self.ca_file))
        request = urllib.request.Request(  # noqa: S310 - https to our own server
            f"{self.url}/readyz", headers={"Authorization": f"Bearer {self.admin_token}"}
        )

        def ready() -> bool:
            apiserver.check_running()
            try:
                with urllib.request.urlopen(request, timeout=5, context=context) as response:  # noqa: S310 - our own server
                    return bool(response.status == 200)
            except (urllib.error.URLError, OSError):
                return False

        wait_for(ready, _START_TIMEOUT_S, "kube-apiserver /readyz", 0.25, KubeClusterError)

    # -- clients ------------------------------------------------------------------

    def configuration(self, token: str | None = None) -> client.Configuration:
        """A client configuration for ``token`` (the admin token when None)."""
        configuration = client.Configuration()
        configuration.host = self.url
        configuration.ssl_ca_cert = str(self.ca_file)
        configuration.verify_ssl = True
        configuration.api_key = {"BearerToken": self.admin_token if token is None else token}
        configuration.api_key_prefix = {"BearerToken": "Bearer"}
        return configuration

    def api_client(self, token: str | None = None) -> client.ApiClient:
        """A `kubernetes.client.ApiClient` for ``token`` (the admin token when None)."""
        return client.ApiClient(self.configuration(token))

    def ensure_namespace(self, name: str) -> None:
        """Create namespace ``name`` unless it exists."""
        with self.api_client() as api:
            create_unless_exists(
                lambda: client.CoreV1Api(api).create_namespace(
                    client.V1Namespace(metadata=client.V1ObjectMeta(name=name))
                )
            )

    def service_account_token(
        self, namespace: str, name: str, expiration_seconds: int = 3600
    ) -> str:
        """A token of ServiceAccount ``namespace/name`` from the TokenRequest API.

        Creates the namespace and the ServiceAccount when missing (no controller-manager
        runs, so not even ``default`` exists). The API server refuses expirations under
        600 seconds.
        """
        self.ensure_namespace(namespace)
        with self.api_client() as api:
            core = client.CoreV1Api(api)
            create_unless_exists(
                lambda: core.create_namespaced_service_account(
                    namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=name))
                )
            )
            request = client.AuthenticationV1TokenRequest(
                spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=expiration_seconds)
            )
            answer = core.create_namespaced_service_account_token(name, namespace, request)
        if answer.status is None or not answer.status.token:
            raise KubeClusterError(f"TokenRequest for {namespace}/{name} returned no token")
        return answer.status.token

    def kubeconfig(self, token: str, path: Path | str) -> Path:
        """Write a kubeconfig for ``token`` against this cluster to ``path``; return it."""
        path = Path(path)
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {"name": "spancost-test",
                 "cluster": {"server": self.url, "certificate-authority": str(self.ca_file)}}
            ],
            "users": [{"name": "spancost-test", "user": {"token": token}}],
            "contexts": [
                {"name": "spancost-test",
                 "context": {"cluster": "spancost-test", "user": "spancost-test"}}
            ],
            "current-context": "spancost-test",
        }  # fmt: skip
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        path.chmod(0o600)
        return path


def create_unless_exists(create: Callable[[], object]) -> None:
    """Run an API create call; an object that already exists (409) is fine."""
    try:
        create()
    except ApiException as exc:
        if exc.status != 409:
            raise


def delete_unless_missing(delete: Callable[[], object]) -> None:
    """Run an API delete call; an object already gone (404) is fine."""
    try:
        delete()
    except ApiException as exc:
        if exc.status != 404:
            raise


def started_or_fail() -> KubeCluster:
    """A started `KubeCluster`; when it cannot start, the test fails (never skips: CI
    counts a skipped test as a failure), with the servers' logs."""
    try:
        return KubeCluster().start()
    except KubeClusterError as exc:
        failure = str(exc)
    pytest.fail(f"cannot start the Kubernetes API server: {failure}", pytrace=False)


@contextmanager
def running_kube_cluster(workdir: Path | None = None) -> Iterator[KubeCluster]:
    """A started `KubeCluster`, stopped (and its temporary directory removed) afterwards."""
    cluster = KubeCluster(workdir).start()
    try:
        yield cluster
    finally:
        cluster.stop()
