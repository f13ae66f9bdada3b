"""Each install's Go command line starts this gateway against the simulated hub.

The argument lists of ``tests/fixtures/go_command_lines.py`` (vela-core chart,
the Go repository's chart, the OCM addon-manager's Deployment, the Go docs) are
parsed by the gateway's own ``Options`` exactly as written, with their mounted
files put under a scratch directory.  Only what a test machine must change is
appended (pflag and ``usage`` both let the last occurrence win): a free
loopback port and the hub's kubeconfig in place of the in-cluster config.
Then the real ``kubectl`` reads ``/readyz`` and lists the cluster from the
install's secret namespace through delegated authentication at the hub.
"""

from __future__ import annotations

import ssl
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.threads import deferToThread
from twisted.logger import capturedLogs, formatEvent

from clustergateway.registry.samples import cluster_secret, managed_cluster
from clustergateway.tap import GatewayService, build_service
from clustergateway.testing import SimulatedCluster
from tests.fixtures.gateway import PROXY_PATH, token_cluster, write_kubeconfig
from tests.fixtures.go_command_lines import GO_COMMAND_LINES, GoCommandLine
from tests.fixtures.installs import (
    BY_NAME,
    LOCAL,
    der,
    install,
    parse,
    ready,
    served_certificate,
    start_line,
)
from tests.fixtures.simulator import run_kubectl
from tests.fixtures.tools import kubectl_binary


def anonymous_status(url: str, ca_path: Path, path: str) -> int:
    """The status of an unauthenticated GET (stdlib client, verifying the gateway)."""
    context = ssl.create_default_context(cafile=str(ca_path))
    try:
        with urllib.request.urlopen(url + path, context=context, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as e:
        return int(e.code)


@pytest.mark.parametrize("line", GO_COMMAND_LINES, ids=lambda line: line.name)
@pytest_twisted.ensureDeferred
async def test_install_command_line_reaches_readyz(
    line: GoCommandLine, tmp_path: Path, sim: SimulatedCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The install's arguments start the gateway; ``/readyz`` answers 200 to kubectl, the
    install's secret namespace is served, generic feature gates are named in one warning,
    and ``/metrics`` is open to anonymous callers exactly when the install allows it.  With
    ``--ocm-integration=true``, a cluster whose Secret has only a token and CA (as OCM
    copies it) takes its endpoint from its ManagedCluster, and kubectl reaches it."""
    from twisted.internet import reactor

    monkeypatch.chdir(tmp_path)  # the Go default --cert-dir is relative to the working dir
    sim.store.put(token_cluster("c1", namespace=line.secret_namespace))
    ocm = "--ocm-integration=true" in line.args
    if ocm:  # the hub is also the member cluster behind "c2"
        sim.store.put(managed_cluster("c2", url=sim.url, ca=sim.ca_pem))
        sim.store.put(
            cluster_secret(
                "c2",
                namespace=line.secret_namespace,
                endpoint=None,
                token=sim.token,
                ca=sim.ca_pem,
            )
        )
    installed = install(line, tmp_path / "root")
    hub = sim.write_kubeconfig(tmp_path / "hub.kubeconfig")
    config = parse([*installed.args, *LOCAL, f"--kubeconfig={hub}"])
    with capturedLogs() as events:
        service: GatewayService = build_service(reactor, config)
    warnings = [formatEvent(e) for e in events if "--feature-gates" in formatEvent(e)]
    gates = next(a for a in line.args if a.startswith("--feature-gates="))
    if "APIPriorityAndFairness" in gates:
        assert warnings == [
            "--feature-gates: ignoring generic Kubernetes apiserver gates this gateway does "
            "not have: APIPriorityAndFairness=false"
        ]
    else:
        assert warnings == []
    service.startService()
    try:
        ca_path = installed.ca_path or tmp_path / "apiserver.local.config/certificates/ca.crt"
        kubeconfig = write_kubeconfig(
            tmp_path / "gateway.kubeconfig", service.listener.url, ca_path, token=sim.token
        )
        assert b"readyz check passed" in await ready(kubeconfig)
        listed = await run_kubectl(
            kubectl_binary("1.33"), kubeconfig, "get", "clustergateways", "-o", "name"
        )
        assert listed.returncode == 0, listed.stderr
        expected = ["c1", "c2"] if ocm else ["c1"]
        assert listed.stdout.split() == [
            f"clustergateway.cluster.core.oam.dev/{name}".encode() for name in expected
        ]
        if ocm:
            through = write_kubeconfig(
                tmp_path / "c2.kubeconfig",
                service.listener.url + PROXY_PATH.format(cluster="c2"),
                ca_path,
                token=sim.token,
            )
            namespaces = await run_kubectl(
                kubectl_binary("1.33"), through, "get", "ns", "vela-system", "-o", "name"
            )
            assert namespaces.returncode == 0, namespaces.stderr
            assert namespaces.stdout.split() == [b"namespace/vela-system"]
        if installed.serving is not None:
            # The mounted pair (--tls-cert-file or --cert-dir) is what clients get, unchanged.
            seen = await deferToThread(served_certificate, service.listener.url)
            assert seen == der(installed.serving.cert_pem)
        metrics_open = any("/metrics" in a for a in line.args if "always-allow-paths" in a)
        status = await deferToThread(anonymous_status, service.listener.url, ca_path, "/metrics")
        assert status == (200 if metrics_open else 401)
    finally:
        await service.stopService()


def open_connection(url: str, ca_path: Path) -> Any:
    """A kept-alive HTTPS connection that has answered one ``GET /readyz`` (blocking)."""
    import http.client

    host, _, port = url.removeprefix("https://").rpartition(":")
    context = ssl.create_default_context(cafile=str(ca_path))
    connection = http.client.HTTPSConnection(host, int(port), context=context, timeout=10)
    get_readyz(connection)
    return connection


def get_readyz(connection: Any) -> tuple[int, bytes]:
    """``GET /readyz`` on an open connection: its status and the peer's DER certificate."""
    connection.request("GET", "/readyz")
    response = connection.getresponse()
    response.read()
    return response.status, connection.sock.getpeercert(binary_form=True)


async def wait_for_certificate(url: str, expected: bytes, timeout: float = 10.0) -> None:
    """Poll new connections until they are given ``expected`` (DER)."""
    from twisted.internet import reactor
    from twisted.internet.task import deferLater

    waited = 0.0
    while await deferToThread(served_certificate, url) != expected:
        if waited >= timeout:
            raise AssertionError(f"new connections still get the old certificate after {timeout}s")
        await deferLater(reactor, 0.1)
        waited += 0.1


def replace_file(path: Path, data: bytes) -> None:
    """Swap ``path`` by a rename, as the kubelet and cert-manager do."""
    new = path.with_name(path.name + ".new")
    new.write_bytes(data)
    new.rename(path)


@pytest.mark.parametrize("line_name", ["addon-manager-direct", "vela-core-v1.3.6"])
@pytest_twisted.ensureDeferred
async def test_rotated_pair_served_to_new_connections_open_ones_kept(
    line_name: str, tmp_path: Path, sim: SimulatedCluster
) -> None:
    """The files the install mounts (--tls-cert-file pair, or the --cert-dir pair) are
    rewritten: the next connection gets the new certificate with no restart, and a
    connection opened before keeps working with the certificate it was given."""
    line = BY_NAME[line_name]
    service, installed = await start_line(line, tmp_path, sim)
    assert installed.serving is not None and installed.ca_path is not None
    old = None
    try:
        old = await deferToThread(open_connection, service.listener.url, installed.ca_path)
        old_der = old.sock.getpeercert(binary_form=True)
        assert old_der == der(installed.serving.cert_pem)
        mounted = list(line.files)
        if line.files[mounted[0]] == "cert-dir":
            cert_path = line.local_path(tmp_path / "root", mounted[0]) / "apiserver.crt"
            key_path = cert_path.with_name("apiserver.key")
        else:
            cert_path = line.local_path(tmp_path / "root", mounted[0])
            key_path = line.local_path(tmp_path / "root", mounted[1])
        rotated = installed.reissue("gateway-rotated")
        replace_file(key_path, rotated.key_pem)
        replace_file(cert_path, rotated.cert_pem)
        await wait_for_certificate(service.listener.url, der(rotated.cert_pem))
        status, still = await deferToThread(get_readyz, old)
        assert (status, still) == (200, old_der)
        new = await deferToThread(open_connection, service.listener.url, installed.ca_path)
        assert new.sock.getpeercert(binary_form=True) == der(rotated.cert_pem)
        new.close()
    finally:
        if old is not None:
            old.close()
        await service.stopService()


def handshake(url: str, ca_path: Path, maximum: ssl.TLSVersion, ciphers: str | None) -> Any:
    """A TLS handshake with the gateway: the negotiated (cipher, version), or the SSLError."""
    import socket

    host, _, port = url.removeprefix("https://").rpartition(":")
    context = ssl.create_default_context(cafile=str(ca_path))
    context.maximum_version = maximum
    if ciphers is not None:
        context.set_ciphers(ciphers)
    try:
        with socket.create_connection((host, int(port)), timeout=10) as raw:
            with context.wrap_socket(raw, server_hostname=host) as tls:
                cipher = tls.cipher()
                return cipher[0], cipher[1]
    except ssl.SSLError as e:
        return e


@pytest_twisted.ensureDeferred
async def test_tls_min_version_and_cipher_suites_applied(
    tmp_path: Path, sim: SimulatedCluster
) -> None:
    """Go's --tls-min-version and --tls-cipher-suites names govern the listener: a client
    capped below the minimum, or offering only a suite not listed, fails the handshake."""
    line = BY_NAME["addon-manager-direct"]
    service, installed = await start_line(
        line, tmp_path / "v13", sim, "--tls-min-version=VersionTLS13"
    )
    assert installed.ca_path is not None
    try:
        url, ca = service.listener.url, installed.ca_path
        refused = await deferToThread(handshake, url, ca, ssl.TLSVersion.TLSv1_2, None)
        assert isinstance(refused, ssl.SSLError), refused
        assert (await deferToThread(handshake, url, ca, ssl.TLSVersion.TLSv1_3, None))[1] == (
            "TLSv1.3"
        )
    finally:
        await service.stopService()
    service, installed = await start_line(
        line,
        tmp_path / "suites",
        sim,
        "--tls-cipher-suites=TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,TLS_AES_128_GCM_SHA256",
    )
    assert installed.ca_path is not None
    try:
        url, ca = service.listener.url, installed.ca_path
        tls12 = ssl.TLSVersion.TLSv1_2
        refused = await deferToThread(handshake, url, ca, tls12, "ECDHE-ECDSA-AES128-GCM-SHA256")
        assert isinstance(refused, ssl.SSLError), refused
        chosen = await deferToThread(handshake, url, ca, tls12, "ECDHE-ECDSA-AES256-GCM-SHA384")
        assert chosen == ("ECDHE-ECDSA-AES256-GCM-SHA384", "TLSv1.2")
    finally:
        await service.stopService()


@pytest_twisted.ensureDeferred
async def test_console_script_runs_the_vela_core_command_line(
    tmp_path: Path, sim: SimulatedCluster
) -> None:
    """``cluster-gateway apiserver …`` as the image runs it (a process): it serves the
    mounted pair, answers /readyz to kubectl, and shuts down cleanly on SIGTERM (twistd
    then ends by that signal, so a supervisor sees why it stopped)."""
    import json
    import signal
    import subprocess
    import sys

    line = BY_NAME["vela-core"]
    installed = install(line, tmp_path / "root")
    assert installed.ca_path is not None and installed.serving is not None
    hub = sim.write_kubeconfig(tmp_path / "hub.kubeconfig")
    script = str(Path(sys.executable).parent / "cluster-gateway")
    process = subprocess.Popen(
        [script, *installed.args, *LOCAL, f"--kubeconfig={hub}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=tmp_path,
    )
    try:
        assert process.stdout is not None
        url = None
        for _ in range(200):
            raw = await deferToThread(process.stdout.readline)
            if not raw:
                break
            message = json.loads(raw).get("message", "")
            if message.startswith("Serving HTTPS on "):
                url = message.removeprefix("Serving HTTPS on ")
                break
        assert url is not None, process.stderr.read() if process.stderr else b""
        kubeconfig = write_kubeconfig(
            tmp_path / "gateway.kubeconfig", url, installed.ca_path, token=sim.token
        )
        assert b"readyz check passed" in await ready(kubeconfig)
        assert await deferToThread(served_certificate, url) == der(installed.serving.cert_pem)
        process.send_signal(signal.SIGTERM)
        assert await deferToThread(process.wait, 20) in (0, -signal.SIGTERM)
        assert b'"message": "Main loop terminated."' in process.stdout.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
