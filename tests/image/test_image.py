"""The container image (``make image``) run as a cluster admin runs it: podman, read-only root.

The image must already be built: ``make test`` builds it (``scripts/image.sh``) before
running these tests with ``-m image``; they fail, never skip, when it is missing.

The gateway runs in the container against a simulated hub started on this machine's
loopback (``python -m clustergateway.testing``), with the host's network
(``--network host``) and a read-only root: only the ``--cert-dir`` volume and a tmpfs
at ``/tmp`` are writable, as in ``deploy/``. Podman options that this machine
needs (runc, lowered ulimits) are explained in the README's "Container image" section.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import ssl
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import yaml

from tests.fixtures.tools import kubectl_binary

pytestmark = pytest.mark.image

ROOT = Path(__file__).resolve().parents[2]
IMAGE = os.environ.get("IMAGE") or "cluster-gateway:" + next(
    line.split('"')[1]
    for line in (ROOT / "pyproject.toml").read_text().splitlines()
    if line.startswith("version = ")
)
PODMAN = ["podman", "run", "--runtime", "runc", "--ulimit", "nofile=4096:4096"]
PODMAN += ["--ulimit", "nproc=4096:4096"]
GATEWAY_UID = 65532
TOKEN = "image-test-token"


def podman(*args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["podman", *args], capture_output=True, text=True, check=check, timeout=timeout
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(condition: Callable[[], bool], timeout: float, what: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what()}")


@pytest.fixture(scope="module")
def image() -> str:
    """The image's name; fails (no skip) when ``make image`` has not built it."""
    found = podman("image", "exists", IMAGE, check=False)
    assert found.returncode == 0, f"{IMAGE} is not built: run `make image` first"
    return IMAGE


@attrs.define
class Hub:
    process: subprocess.Popen[str]
    dir: Path
    kubeconfig: Path

    def kubectl(self, *args: str, stdin: str | None = None) -> str:
        done = subprocess.run(
            [kubectl_binary("1.33"), "--kubeconfig", str(self.kubeconfig), *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Hub]:
    """The simulated hub on loopback, its files readable by the container's user."""
    hub_dir = tmp_path / "hub"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "clustergateway.testing",
            "--listen",
            f"127.0.0.1:{free_port()}",
            "--token",
            TOKEN,
            "--cert-dir",
            str(hub_dir),
            "--kubeconfig",
            str(hub_dir / "kubeconfig"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert "ready" in process.stdout.readline()
        for path in [hub_dir, *hub_dir.iterdir()]:
            os.chown(path, GATEWAY_UID, GATEWAY_UID)
        yield Hub(process, hub_dir, hub_dir / "kubeconfig")
    finally:
        process.terminate()
        process.wait(timeout=30)


@attrs.define
class Container:
    name: str
    port: int
    certs: Path

    def get(self, path: str, token: str | None = None) -> tuple[int, bytes]:
        """GET over TLS, verifying the gateway with the CA it wrote into ``--cert-dir``."""
        context = ssl.create_default_context(cafile=str(self.certs / "ca.crt"))
        context.check_hostname = False
        request = urllib.request.Request(f"https://127.0.0.1:{self.port}{path}")
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, context=context, timeout=10) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def pid(self) -> int:
        return int(podman("inspect", self.name, "--format", "{{.State.Pid}}").stdout)

    def logs(self) -> str:
        done = podman("logs", self.name, check=False)
        return done.stdout + done.stderr


def uid_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])  # real uid
    raise AssertionError(f"no Uid line for {pid}")


def children_of(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(") ", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


@pytest.fixture
def gateway(image: str, hub: Hub, tmp_path: Path) -> Iterator[Container]:
    """The image's default entrypoint (``/apiserver``) serving hub Secrets, read-only root."""
    certs = tmp_path / "certs"
    certs.mkdir()
    os.chown(certs, GATEWAY_UID, GATEWAY_UID)
    port = free_port()
    name = f"cg-image-test-{os.getpid()}-{port}"
    podman(
        *PODMAN[1:],
        "--detach",
        "--name",
        name,
        "--network",
        "host",
        "--read-only",
        "--read-only-tmpfs=false",
        # The kubernetes package writes a kubeconfig's embedded certificates to temporary
        # files: deploy/ mounts an emptyDir at /tmp for that, this is the same.
        "--tmpfs",
        "/tmp:rw,size=16m,mode=1777",
        "--volume",
        f"{hub.dir}:/hub:ro",
        "--volume",
        f"{certs}:/certs",
        image,
        "--kubeconfig=/hub/kubeconfig",
        "--secret-namespace=vela-system",
        f"--secure-port={port}",
        "--bind-address=127.0.0.1",
        "--cert-dir=/certs",
    )
    container = Container(name, port, certs)
    try:
        wait_until(
            lambda: _answers(container, "/readyz"), 60, lambda: "/readyz: " + container.logs()
        )
        yield container
    finally:
        podman("rm", "--force", "--time", "5", name, check=False)


def _answers(container: Container, path: str) -> bool:
    try:
        return container.get(path)[0] == 200
    except OSError:
        return False


def test_gateway_answers_health_and_serves_hub_clusters(gateway: Container, hub: Hub) -> None:
    """From outside the container: /healthz and /readyz answer ``ok``, and a caller with a
    hub token lists the cluster whose Secret is at the hub (TokenReview + SAR at the hub)."""
    assert gateway.get("/healthz") == (200, b"ok")
    assert gateway.get("/readyz") == (200, b"ok")
    secret = (ROOT / "examples/secrets/service-account-token.yaml").read_text()
    hub.kubectl("apply", "-f", "-", stdin=secret)

    def listed() -> bool:
        status, body = gateway.get("/apis/cluster.core.oam.dev/v1alpha1/clustergateways", TOKEN)
        return status == 200 and [
            item["metadata"]["name"] for item in json.loads(body)["items"]
        ] == ["example-token"]

    wait_until(listed, 10, lambda: "the hub's Secret listed as a ClusterGateway")


def test_the_image_serves_http2_on_libnghttp2(gateway: Container) -> None:
    """The image carries the ngh2 wheel built with the per-field header limit raised
    (scripts/ngh2-wheel.sh), so ``--h2-engine=auto`` takes the native engine."""
    logs = gateway.logs()
    assert "HTTP/2 listener on libnghttp2 (ngh2 0.3.0+nv16m)" in logs, logs
    assert "pure-Python engine" not in logs, logs


def test_gateway_runs_as_non_root_with_a_read_only_root(gateway: Container) -> None:
    """The gateway process is uid 65532 with tini as PID 1; nothing in the root is writable,
    (but the volumes: /certs, /tmp), and the gateway never tried to write its plugin cache."""
    pid1 = gateway.pid()
    assert Path(f"/proc/{pid1}/comm").read_text().strip() == "tini"
    (served,) = children_of(pid1)
    assert "cluster-gateway" in Path(f"/proc/{served}/cmdline").read_text()
    assert uid_of(served) == GATEWAY_UID
    assert podman("exec", gateway.name, "id", "-u").stdout.strip() == str(GATEWAY_UID)
    inspected = json.loads(podman("inspect", gateway.name).stdout)[0]
    assert inspected["HostConfig"]["ReadonlyRootfs"] is True
    for path in ("/opt/cluster-gateway/x", "/etc/x", "/var/lib/cluster-gateway/x", "/x"):
        done = podman("exec", gateway.name, "touch", path, check=False)
        assert done.returncode != 0 and "Read-only file system" in done.stderr, (path, done)
    logs = gateway.logs()
    assert "plugin cache" not in logs and "Traceback" not in logs, logs


def test_sigterm_stops_the_gateway_promptly(gateway: Container) -> None:
    """``podman stop`` (SIGTERM to PID 1, tini) reaches the gateway, which shuts down cleanly
    well before the 30 s after which podman would SIGKILL it."""
    started = time.monotonic()
    podman("stop", "--time", "30", gateway.name)
    took = time.monotonic() - started
    state = json.loads(podman("inspect", gateway.name).stdout)[0]["State"]
    assert took < 10, took
    assert state["ExitCode"] in (0, 143), state  # tini exits 143 (128 + SIGTERM) or passes 0
    assert "Received SIGTERM" in gateway.logs()


def test_entry_paths_dispatch_as_the_go_image(image: str, tmp_path: Path) -> None:
    """``/apiserver ARGS`` runs ``cluster-gateway ARGS`` and ``/patch ARGS`` runs
    ``cluster-gateway patch ARGS``, each behind tini when it is PID 1 (Kubernetes
    ``command:``). A stub mounted over the console script records what it was given."""
    stub = tmp_path / "cluster-gateway"
    stub.write_text('#!/bin/sh\necho "parent=$(cat /proc/$PPID/comm) args=$*"\n')
    stub.chmod(0o755)
    mount = f"{stub}:/opt/cluster-gateway/bin/cluster-gateway:ro"
    for entry, args, expected in [
        ("/apiserver", ["apiserver", "--secure-port=9443"], "apiserver --secure-port=9443"),
        ("/patch", ["--target-APIService", "v1alpha1.cluster.core.oam.dev"], None),
    ]:
        done = subprocess.run(
            [*PODMAN, "--rm", "--volume", mount, "--entrypoint", entry, image, *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        wanted = expected or "patch " + " ".join(args)
        assert done.stdout.strip() == f"parent=tini args={wanted}"


def test_addon_manager_entry_path_runs_the_addon_manager(image: str) -> None:
    """``/addon-manager`` (the Go addon-manager image's entry path) runs
    ``cluster-gateway-addon-manager`` from the read-only image: its usage lists Go's flags,
    and without a namespace it stops with Go's one-line reason."""
    run = [*PODMAN, "--rm", "--read-only", "--read-only-tmpfs=false"]
    run += ["--entrypoint", "/addon-manager", image]
    usage = subprocess.run([*run, "--help"], capture_output=True, text=True, timeout=60)
    assert usage.returncode == 0, usage.stderr
    for flag in ("--leader-elect", "--metrics-bind-address", "--signer-secret-name"):
        assert flag in usage.stdout
    refused = subprocess.run(
        [*run, "--leader-elect=true"], capture_output=True, text=True, timeout=60
    )
    assert refused.returncode == 1
    assert "specify NAMESPACE environment" in refused.stderr


def test_apiserver_runs_the_real_console_script(image: str) -> None:
    """``/apiserver --help`` prints the gateway's own usage (the venv's console script runs
    from the read-only image), and ``sleep`` exists for a preStop hook."""
    done = subprocess.run(
        [*PODMAN, "--rm", "--read-only", "--read-only-tmpfs=false", image, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "--secret-namespace" in done.stdout
    sleep = subprocess.run(
        [*PODMAN, "--rm", "--entrypoint", "sleep", image, "0"], capture_output=True, timeout=60
    )
    assert sleep.returncode == 0, sleep.stderr


def render_overlay(overlay: str) -> list[dict[str, Any]]:
    done = subprocess.run(
        [kubectl_binary("1.33"), "kustomize", str(ROOT / "deploy/overlays" / overlay)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return [o for o in yaml.safe_load_all(done.stdout) if o]


def serving_secret() -> dict[str, bytes]:
    done = subprocess.run(
        [str(ROOT / "deploy/serving-secret.sh")], capture_output=True, text=True, check=True
    )
    data = yaml.safe_load(done.stdout)["data"]
    return {key: base64.b64decode(value) for key, value in data.items()}


def pod_options(
    pod: dict[str, Any],
    container: dict[str, Any],
    hub: Hub,
    secret: dict[str, bytes],
    tmp_path: Path,
) -> list[str]:
    """podman options for a rendered pod's container, as a kubelet would run it: its user
    and groups, no capabilities, no privilege escalation, its root read-only or not, its
    volumes (Secret volumes from ``secret``, emptyDirs as tmpfs) and in-cluster config for
    the simulated hub (host network)."""
    security = pod["securityContext"]
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    options = [
        "--network=host",
        f"--user={security['runAsUser']}:{security['runAsGroup']}",
        "--cap-drop=ALL",
        "--security-opt=no-new-privileges",
        f"--read-only={str(container['securityContext']['readOnlyRootFilesystem']).lower()}",
        "--read-only-tmpfs=false",
        f"--entrypoint={container['command'][0]}",
    ]
    if "fsGroup" in security:
        options.append(f"--group-add={security['fsGroup']}")
    account = tmp_path / "serviceaccount"
    account.mkdir(exist_ok=True)
    (account / "token").write_text(TOKEN)
    (account / "namespace").write_text("vela-system")
    (account / "ca.crt").write_bytes((hub.dir / "ca.crt").read_bytes())
    server = yaml.safe_load(hub.kubeconfig.read_text())["clusters"][0]["cluster"]["server"]
    options += [
        f"--volume={account}:/var/run/secrets/kubernetes.io/serviceaccount:ro",
        "--env=KUBERNETES_SERVICE_HOST=127.0.0.1",
        f"--env=KUBERNETES_SERVICE_PORT={urllib.parse.urlsplit(server).port}",
    ]
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        volume = volumes[mount["name"]]
        if "secret" in volume:
            folder = tmp_path / mount["name"]
            folder.mkdir()
            for key, value in secret.items():
                (folder / key).write_bytes(value)
                os.chown(folder / key, 0, security["fsGroup"])
                (folder / key).chmod(volume["secret"]["defaultMode"])
            options.append(f"--volume={folder}:{mount['mountPath']}:ro")
        else:
            assert "emptyDir" in volume, volume
            options.append(f"--tmpfs={mount['mountPath']}:rw,mode=1777")
    return options


@pytest.mark.parametrize("overlay", ["standalone-hub", "ocm", "dev-insecure"])
def test_the_rendered_deployment_runs_in_the_image(
    image: str, hub: Hub, tmp_path: Path, overlay: str
) -> None:
    """The pod that ``kubectl kustomize deploy/overlays/<overlay>`` describes, run by podman
    as a kubelet would: its command and args (the port moved to a free one: host network
    here), its user, no capabilities, no privilege escalation, a read-only root, its volumes
    (the Secret from deploy/serving-secret.sh, emptyDirs) and in-cluster config for the
    hub. Both probes answer 200, through TLS verified with the Secret's ca.crt for the
    Service's name (the APIService's caBundle) unless the overlay skips verification, and
    the preStop command exists in the image."""
    objects = render_overlay(overlay)
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    (apiservice,) = [o for o in objects if o["kind"] == "APIService"]
    verify = not apiservice["spec"].get("insecureSkipTLSVerify", False)
    port = free_port()
    args = [
        f"--secure-port={port}" if a.startswith("--secure-port=") else a for a in container["args"]
    ]
    secret = serving_secret()
    options = ["--detach", *pod_options(pod, container, hub, secret, tmp_path)]
    name = f"cg-image-pod-{os.getpid()}-{port}"
    podman(*PODMAN[1:], *options, "--name", name, image, *args)
    try:
        context = ssl.create_default_context()
        if verify:
            context.load_verify_locations(cadata=secret["ca.crt"].decode())
        else:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        service = f"{apiservice['spec']['service']['name']}.vela-system.svc"

        def probe(path: str) -> int:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
                    with context.wrap_socket(raw, server_hostname=service) as tls:
                        tls.sendall(
                            f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
                        )
                        return int(tls.recv(64).split()[1])
            except OSError:
                return 0

        logs = Container(name, port, tmp_path).logs
        for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
            path = container[kind]["httpGet"]["path"]
            wait_until(lambda p=path: probe(p) == 200, 60, lambda p=path: f"{p}: {logs()}")
        pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
        assert podman("exec", name, pre_stop[0], "0").returncode == 0
    finally:
        podman("rm", "--force", "--time", "5", name, check=False)


PLUGIN_SCAN = """
import sys
from twisted.python import log
log.startLogging(sys.stdout)
import twisted.plugins
from twisted.plugin import IPlugin, getPlugins
print("found:", [p.tapname for p in getPlugins(IPlugin, twisted.plugins) if hasattr(p, "tapname")])
"""
CACHE = "/opt/cluster-gateway/lib/python3.11/site-packages/twisted/plugins/dropin.cache"


def test_the_twistd_plugin_cache_is_built_into_the_image(image: str) -> None:
    """twistd's plugin scan on the read-only image finds the gateway's plugin and writes
    nothing; with the cache hidden (a control that the check can fail), the same scan
    reports that it cannot write the cache."""
    scan = [*PODMAN, "--rm", "--read-only", "--read-only-tmpfs=false"]
    scan += ["--entrypoint", "/opt/cluster-gateway/bin/python"]
    fresh = subprocess.run(
        [*scan, image, "-c", PLUGIN_SCAN], capture_output=True, text=True, timeout=60
    )
    assert "'clustergateway'" in fresh.stdout, fresh.stdout + fresh.stderr
    assert "Unable to write" not in fresh.stdout
    hidden = subprocess.run(
        [*scan, "--volume", f"/dev/null:{CACHE}", image, "-c", PLUGIN_SCAN],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "'clustergateway'" in hidden.stdout, hidden.stdout + hidden.stderr
    assert f"Unable to write to plugin cache {CACHE}" in hidden.stdout


def test_the_image_has_no_build_tools(image: str) -> None:
    """No pip, no compiler, no apt in the final stage: what runs is what was built."""
    done = subprocess.run(
        [
            *PODMAN,
            "--rm",
            "--entrypoint",
            "sh",
            image,
            "-c",
            "for t in pip pip3 gcc cc make apt-get; do command -v $t; done;"
            " /opt/cluster-gateway/bin/python -c 'import pip' 2>/dev/null && echo pip-module;"
            " test -d /wheels && echo wheels; true",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""


def test_the_rendered_patch_job_gives_the_apiservice_the_secrets_ca(
    image: str, hub: Hub, tmp_path: Path
) -> None:
    """The README's steps 3-4 at the simulated hub: the serving Secret from
    deploy/serving-secret.sh and the rendered APIService applied, then the rendered patch
    Job's pod run in the image as a kubelet would (its ServiceAccount's in-cluster config,
    read-only root). The APIService's caBundle is then the Secret's ca.crt."""
    objects = render_overlay("standalone-hub")
    (apiservice,) = [o for o in objects if o["kind"] == "APIService"]
    (job,) = [o for o in objects if o["kind"] == "Job"]
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    hub.kubectl("apply", "-f", "-", stdin=json.dumps(apiservice))
    manifest = subprocess.run(
        [str(ROOT / "deploy/serving-secret.sh")], capture_output=True, text=True, check=True
    ).stdout
    hub.kubectl("apply", "-f", "-", stdin=manifest)
    secret = {k: base64.b64decode(v) for k, v in yaml.safe_load(manifest)["data"].items()}
    done = subprocess.run(
        [
            *PODMAN,
            "--rm",
            *pod_options(pod, container, hub, secret, tmp_path),
            image,
            *container["args"],
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    name = apiservice["metadata"]["name"]
    bundle = hub.kubectl("get", "apiservice", name, "-o", "jsonpath={.spec.caBundle}")
    assert base64.b64decode(bundle) == secret["ca.crt"]
