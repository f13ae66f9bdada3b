"""What a bench run starts: upstreams, the three proxies under test, and the targets.

CPU layout (2 cores): the server under test — the gateway, ``kubectl proxy``,
the Go peer (``bench/goproxy``), or nginx itself for the *direct* small-GET
rows — runs alone on core 0 (``PROXY_CORE``); the load generators (wrk, the
Python clients) and the upstreams they reach through the proxy (nginx, the
simulated cluster, the splice sink) share core 1 (``LOAD_CORE``).  Go sees
one CPU through its affinity mask; both Go proxies are also started with
``GOMAXPROCS=1``.

Upstreams:

- ``nginx`` over TLS (HTTP/1.1 and h2 offered by ALPN, as a kube-apiserver
  does): a fixed ~600-byte ConfigMap JSON at
  ``/api/v1/namespaces/default/configmaps/bench`` and bodies of 1 MiB,
  64 MiB and 300 MiB under ``/big/``.  Every answer carries
  ``X-Upstream-Protocol`` (``HTTP/1.1`` or ``HTTP/2.0``), so the results say
  which protocol each proxy used upstream.
- the simulated cluster (``python -m clustergateway.testing``): CRUD and
  watches; it is pure Python, so it would be the bottleneck of a throughput
  run — small GETs and large bodies use nginx instead.
- the splice sink (``python -m bench.sink``): answers 101 and moves raw bytes.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import shutil
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import attrs
import yaml

from bench.procs import BenchProcess, ProcessError, free_port, start_process, wait_for_port
from clustergateway.certs import issue_cert, make_ca, write_pem

__all__ = [
    "API_GROUP_PATH",
    "CONFIGMAP_PATH",
    "GATEWAY_COMMAND",
    "LOAD_CORE",
    "PROXY_CORE",
    "Target",
    "Topology",
    "build_goproxy",
    "configmap_json",
]

PROXY_CORE = "0"
LOAD_CORE = "1"
API_GROUP_PATH = "/apis/cluster.core.oam.dev/v1alpha1/clustergateways"
CONFIGMAP_PATH = "/api/v1/namespaces/default/configmaps/bench"
SIM_TOKEN = "bench-token"
BIG_BODIES = {"1m": 1 << 20, "64m": 64 << 20, "300m": 300 << 20}
#: The gateway as deploy/ runs it: the image's ``/apiserver`` runs the ``cluster-gateway``
#: console script (``tests/unit/bench`` checks the chain), which runs
#: ``twistd <TWISTD_FLAGS> clustergateway`` on the gateway's reactor.
GATEWAY_COMMAND = ("cluster-gateway",)
GOPROXY_SOURCE = Path(__file__).resolve().parent / "goproxy"
#: Where ``build_goproxy`` puts the Go peer (git-ignored).
GOPROXY_BINARY = GOPROXY_SOURCE / "bin" / "goproxy"


def build_goproxy() -> Path:
    """Build the Go peer (``bench/goproxy``, standard library only) and return its path.

    ``go build`` is incremental, so this costs about a second once built.  The
    toolchain is Debian's ``golang-go`` (``scripts/bench-deps.sh`` installs it);
    no module is fetched (``GOPROXY=off``).
    """
    go = shutil.which("go")
    if go is None:
        raise ProcessError("go is not installed (run scripts/bench-deps.sh: Debian golang-go)")
    env = {**os.environ, "GOPROXY": "off", "GOFLAGS": "-mod=mod", "CGO_ENABLED": "0"}
    done = subprocess.run(
        [go, "build", "-o", str(GOPROXY_BINARY), "."],
        cwd=GOPROXY_SOURCE,
        env=env,
        capture_output=True,
        timeout=600,
    )
    if done.returncode != 0:
        raise ProcessError(f"go build of bench/goproxy failed:\n{done.stderr.decode()[-2000:]}")
    return GOPROXY_BINARY


def configmap_json() -> bytes:
    """A ~600-byte ConfigMap as kube-apiserver would answer a GET (fixed, for nginx)."""
    obj = {
        "kind": "ConfigMap",
        "apiVersion": "v1",
        "metadata": {
            "name": "bench",
            "namespace": "default",
            "uid": "5b1d6f9e-1c7a-4a8e-9d8e-2f6c1f3b9a10",
            "resourceVersion": "482913",
            "creationTimestamp": "2026-11-01T10:00:00Z",
            "labels": {"app.kubernetes.io/name": "bench", "app.kubernetes.io/part-of": "gateway"},
            "annotations": {"cluster.core.oam.dev/owner": "bench-suite"},
            "managedFields": [
                {
                    "manager": "kubectl-create",
                    "operation": "Update",
                    "apiVersion": "v1",
                    "time": "2026-11-01T10:00:00Z",
                    "fieldsType": "FieldsV1",
                    "fieldsV1": {"f:data": {".": {}, "f:config.yaml": {}}},
                }
            ],
        },
        "data": {"config.yaml": "replicas: 3\nimage: registry.k8s.io/pause:3.9\nport: 8080\n"},
    }
    return json.dumps(obj, separators=(",", ":")).encode()


@attrs.frozen
class Target:
    """One way to reach an upstream: ``direct``, ``kubectl-proxy``, ``go-proxy`` or ``gateway``.

    ``base`` is the URL prefix the upstream path is appended to (the gateway's
    ``…/clustergateways/<name>/proxy``); ``process`` is the server whose CPU
    and RSS count for this target.
    """

    name: str
    base: str
    process: BenchProcess
    ca: Path | None = None
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def tls(self) -> bool:
        return self.base.startswith("https:")

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def port(self) -> int:
        return int(self.base.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])

    @property
    def prefix(self) -> str:
        rest = self.base.split("://", 1)[1]
        return "/" + rest.split("/", 1)[1] if "/" in rest else ""

    def url(self, path: str) -> str:
        return self.base + path

    def ssl_context(self) -> ssl.SSLContext | None:
        """A client context that verifies this target's certificate (None: plain HTTP)."""
        if not self.tls:
            return None
        context = ssl.create_default_context(cafile=str(self.ca) if self.ca else None)
        context.set_alpn_protocols(["http/1.1"])
        return context

    def connection(self, timeout: float = 30.0) -> http.client.HTTPConnection:
        context = self.ssl_context()
        if context is None:
            return http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        return http.client.HTTPSConnection(self.host, self.port, timeout=timeout, context=context)


def _probe(target: Target, path: str, timeout: float) -> tuple[int, dict[str, str]]:
    """GET ``path`` through ``target`` until it answers 200 (or ``timeout``)."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if not target.process.alive():
            raise ProcessError(f"{target.process.name} exited:\n{target.process.log_tail()}")
        try:
            conn = target.connection(timeout=5)
            conn.request("GET", target.prefix + path, headers=dict(target.headers))
            response = conn.getresponse()
            response.read()
            conn.close()
            if response.status == 200:
                return response.status, {k.lower(): v for k, v in response.getheaders()}
            last = f"HTTP {response.status}"
        except OSError as e:
            last = str(e)
        time.sleep(0.1)
    raise ProcessError(f"{target.name}: GET {path} did not answer 200 in {timeout}s ({last})")


_NGINX_CONF = """\
daemon off;
master_process on;
worker_processes 1;
worker_rlimit_nofile 65536;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 16384; multi_accept on; }}
http {{
  access_log off;
  sendfile on;
  tcp_nopush on;
  tcp_nodelay on;
  keepalive_timeout 300s;
  keepalive_requests 100000000;
  http2_max_requests 100000000;
  http2_max_concurrent_streams 1024;
  client_body_temp_path {dir}/tmp/body;
  proxy_temp_path {dir}/tmp/proxy;
  fastcgi_temp_path {dir}/tmp/fastcgi;
  uwsgi_temp_path {dir}/tmp/uwsgi;
  scgi_temp_path {dir}/tmp/scgi;
  server {{
    listen 127.0.0.1:{port} ssl{h2};
    ssl_certificate {dir}/tls.crt;
    ssl_certificate_key {dir}/tls.key;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache shared:SSL:1m;
    add_header X-Upstream-Protocol $server_protocol always;
    location = {configmap_path} {{
      default_type application/json;
      return 200 '{configmap}';
    }}
    location /big/ {{
      alias {dir}/www/big/;
      default_type application/octet-stream;
    }}
  }}
}}
"""


@attrs.define
class Topology:
    """The processes of one run, in ``workdir``; a context manager stops them all."""

    workdir: Path
    upstream_h2: bool = True
    #: Extra command-line flags for every gateway started (e.g. ``--workers=2``).
    gateway_args: tuple[str, ...] = ()
    big_bodies: tuple[str, ...] = ("1m", "64m", "300m")
    processes: list[BenchProcess] = attrs.field(factory=list)
    nginx: BenchProcess | None = None
    nginx_direct: BenchProcess | None = None
    simulator: BenchProcess | None = None
    sink: BenchProcess | None = None
    konnectivity: BenchProcess | None = None
    ports: dict[str, int] = attrs.field(factory=dict)

    def __enter__(self) -> Topology:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._write_pki()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()

    def stop_all(self) -> None:
        for proc in reversed(self.processes):
            proc.stop()
        self.processes.clear()

    @property
    def logs(self) -> Path:
        return self.workdir / "logs"

    @property
    def ca_path(self) -> Path:
        return self.workdir / "pki" / "ca.crt"

    def _write_pki(self) -> None:
        pki = self.workdir / "pki"
        if (pki / "tls.key").exists():
            return
        ca = make_ca("bench-ca")
        leaf = issue_cert(ca, "bench-upstream", hosts=("127.0.0.1", "localhost"), server=True)
        write_pem(pki, "ca.crt", ca.cert_pem)
        write_pem(pki, "tls.crt", leaf.cert_pem + ca.cert_pem)
        write_pem(pki, "tls.key", leaf.key_pem, private=True)

    def _add(self, proc: BenchProcess) -> BenchProcess:
        self.processes.append(proc)
        return proc

    def remove(self, proc: BenchProcess) -> None:
        proc.stop()
        if proc in self.processes:
            self.processes.remove(proc)

    # -- upstreams ---------------------------------------------------------------

    def start_nginx(self, name: str, cores: str) -> BenchProcess:
        """nginx (one worker) on ``cores`` serving the ConfigMap and the big bodies."""
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        if not os.path.exists(nginx):
            raise ProcessError("nginx is not installed (run scripts/bench-deps.sh)")
        directory = self.workdir / name
        for sub in ("tmp", "www/big"):
            (directory / sub).mkdir(parents=True, exist_ok=True)
        for body in self.big_bodies:
            path = directory / "www" / "big" / body
            if not path.exists() or path.stat().st_size != BIG_BODIES[body]:
                with path.open("wb") as handle:
                    handle.truncate(BIG_BODIES[body])
        shutil.copy(self.workdir / "pki" / "tls.crt", directory / "tls.crt")
        shutil.copy(self.workdir / "pki" / "tls.key", directory / "tls.key")
        directory.chmod(0o755)
        port = free_port()
        conf = directory / "nginx.conf"
        conf.write_text(
            _NGINX_CONF.format(
                dir=directory,
                port=port,
                h2=" http2" if self.upstream_h2 else "",
                configmap_path=CONFIGMAP_PATH,
                configmap=configmap_json().decode(),
            )
        )
        proc = self._add(
            start_process(
                name,
                [nginx, "-p", str(directory), "-c", str(conf), "-e", str(directory / "error.log")],
                cores=cores,
                log_dir=self.logs,
                tree=True,
            )
        )
        try:
            wait_for_port(port, 10, proc.popen)
        except ProcessError as e:
            raise ProcessError(f"{name}: {e}\n{proc.log_tail()}") from None
        self.ports[name] = port
        return proc

    def start_simulator(self, name: str = "simulator", latency: float = 0.0) -> BenchProcess:
        """A simulated cluster (``name`` other than ``simulator``: an extra one, e.g. a
        slow one answering after ``latency`` seconds); ``upstream(name)`` reaches it."""
        port = free_port()
        cert_dir = self.workdir / ("sim" if name == "simulator" else name)
        proc = self._add(
            start_process(
                name,
                [
                    sys.executable,
                    "-m",
                    "clustergateway.testing",
                    "--listen",
                    f"127.0.0.1:{port}",
                    "--token",
                    SIM_TOKEN,
                    "--cert-dir",
                    str(cert_dir),
                    "--name",
                    "bench-sim",
                    f"--latency={latency}",
                ],
                cores=LOAD_CORE,
                log_dir=self.logs,
            )
        )
        wait_for_port(port, 30, proc.popen)
        self.ports[name] = port
        if name == "simulator":
            self.simulator = proc
        return proc

    def start_sink(self) -> BenchProcess:
        port = free_port()
        pki = self.workdir / "pki"
        proc = self._add(
            start_process(
                "sink",
                [
                    sys.executable,
                    "-m",
                    "bench.sink",
                    "--port",
                    str(port),
                    "--cert",
                    str(pki / "tls.crt"),
                    "--key",
                    str(pki / "tls.key"),
                ],
                cores=LOAD_CORE,
                log_dir=self.logs,
                cwd=Path(__file__).resolve().parent.parent,
            )
        )
        wait_for_port(port, 10, proc.popen)
        self.ports["sink"] = port
        self.sink = proc
        return proc

    def start_konnectivity(self, routes: dict[str, str]) -> BenchProcess:
        """The konnectivity proxy-server stand-in (``clustergateway.testing.konnectivity``)
        on the load core, routing ``routes[cluster] = upstream`` (its counters in
        :meth:`konnectivity_stats`)."""
        port = free_port()
        argv = [
            sys.executable,
            "-m",
            "clustergateway.testing.konnectivity",
            f"--listen=127.0.0.1:{port}",
            f"--cert-dir={self.workdir / 'konnectivity'}",
            f"--stats-file={self.workdir / 'konnectivity-stats.json'}",
        ]
        for cluster, upstream in routes.items():
            argv.append(f"--route={cluster}=127.0.0.1:{self.ports[upstream]}")
        proc = self._add(start_process("konnectivity", argv, cores=LOAD_CORE, log_dir=self.logs))
        wait_for_port(port, 30, proc.popen)
        self.ports["konnectivity"] = port
        self.konnectivity = proc
        return proc

    def konnectivity_stats(self) -> dict[str, int]:
        """The stand-in's counters (channels, streams, dials), as last written (0.2 s)."""
        time.sleep(0.5)
        data: dict[str, int] = json.loads((self.workdir / "konnectivity-stats.json").read_text())
        return data

    def konnectivity_args(self) -> tuple[str, ...]:
        """The gateway's ``--proxy-*`` flags for the stand-in."""
        pki = self.workdir / "konnectivity"
        return (
            "--proxy-host=127.0.0.1",
            f"--proxy-port={self.ports['konnectivity']}",
            f"--proxy-ca-cert={pki / 'ca.crt'}",
            f"--proxy-cert={pki / 'client.crt'}",
            f"--proxy-key={pki / 'client.key'}",
        )

    def upstream(self, name: str) -> tuple[str, Path, str | None]:
        """``(endpoint URL, CA file, bearer token)`` of upstream ``name``."""
        if name == "nginx":
            return f"https://127.0.0.1:{self.ports['nginx']}", self.ca_path, None
        if name == "sink":
            return f"https://127.0.0.1:{self.ports['sink']}", self.ca_path, None
        if name == "simulator":
            ca = self.workdir / "sim" / "ca.crt"
            return f"https://127.0.0.1:{self.ports['simulator']}", ca, SIM_TOKEN
        if name in self.ports:  # another simulated cluster (start_simulator(name))
            return (
                f"https://127.0.0.1:{self.ports[name]}",
                self.workdir / name / "ca.crt",
                SIM_TOKEN,
            )
        raise KeyError(name)

    def direct(self, name: str) -> Target:
        """The upstream itself as a target (nginx: the instance pinned to core 0)."""
        if name == "nginx":
            assert self.nginx_direct is not None
            port = self.ports["nginx-direct"]
            return Target("direct", f"https://127.0.0.1:{port}", self.nginx_direct, self.ca_path)
        url, ca, token = self.upstream(name)
        proc = {"simulator": self.simulator, "sink": self.sink}[name]
        assert proc is not None
        headers = (("Authorization", f"Bearer {token}"),) if token else ()
        return Target("direct", url, proc, ca, headers)

    # -- proxies under test ------------------------------------------------------

    @contextlib.contextmanager
    def kubectl_proxy(self, upstream: str) -> Iterator[Target]:
        """``kubectl proxy`` (kubectl from PATH) for ``upstream``, pinned to core 0."""
        kubectl = shutil.which("kubectl")
        if kubectl is None:
            raise ProcessError("kubectl is not on PATH")
        url, ca, token = self.upstream(upstream)
        kubeconfig = self.workdir / f"{upstream}.kubeconfig"
        user: dict[str, str] = {"token": token} if token else {"token": "bench"}
        kubeconfig.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [
                        {
                            "name": upstream,
                            "cluster": {"server": url, "certificate-authority": str(ca)},
                        }
                    ],
                    "users": [{"name": "bench", "user": user}],
                    "contexts": [
                        {"name": upstream, "context": {"cluster": upstream, "user": "bench"}}
                    ],
                    "current-context": upstream,
                }
            )
        )
        port = free_port()
        proc = self._add(
            start_process(
                f"kubectl-proxy-{upstream}",
                [
                    kubectl,
                    "proxy",
                    "--address=127.0.0.1",
                    f"--port={port}",
                    f"--kubeconfig={kubeconfig}",
                ],
                cores=PROXY_CORE,
                log_dir=self.logs,
                env={**os.environ, "GOMAXPROCS": "1"},
            )
        )
        try:
            wait_for_port(port, 20, proc.popen)
            yield Target("kubectl-proxy", f"http://127.0.0.1:{port}", proc)
        finally:
            self.remove(proc)

    @contextlib.contextmanager
    def go_proxy(self, upstream: str) -> Iterator[Target]:
        """The Go peer for ``upstream``, pinned to core 0 with ``GOMAXPROCS=1``.

        Go's standard-library reverse proxy (``bench/goproxy``): TLS toward
        its caller with HTTP/2 and HTTP/1.1 offered by ALPN, as the gateway
        serves; a pooled HTTP/1.1 transport toward the upstream.
        """
        binary = build_goproxy()
        url, ca, token = self.upstream(upstream)
        pki = self.workdir / "pki"
        port = free_port()
        argv = [
            str(binary),
            f"-listen=127.0.0.1:{port}",
            f"-cert={pki / 'tls.crt'}",
            f"-key={pki / 'tls.key'}",
            f"-upstream={url}",
            f"-upstream-ca={ca}",
        ]
        if token:
            argv.append(f"-token={token}")
        proc = self._add(
            start_process(
                f"go-proxy-{upstream}",
                argv,
                cores=PROXY_CORE,
                log_dir=self.logs,
                env={**os.environ, "GOMAXPROCS": "1"},
            )
        )
        try:
            try:
                wait_for_port(port, 20, proc.popen)
            except ProcessError as e:
                raise ProcessError(f"go-proxy: {e}\n{proc.log_tail()}") from None
            yield Target("go-proxy", f"https://127.0.0.1:{port}", proc, self.ca_path)
        finally:
            self.remove(proc)

    @contextlib.contextmanager
    def gateway(
        self,
        extra_args: tuple[str, ...] = (),
        clusters: Mapping[str, tuple[str, Path, str | None]] | None = None,
        cluster_proxy: dict[str, str] | None = None,
    ) -> Iterator[dict[str, Target]]:
        """A fresh gateway on core 0 (standalone, ``--secrets-dir``), one target per upstream.

        Clusters: ``bench`` (nginx), ``bench-sim`` (the simulated cluster),
        ``bench-sink`` (the splice sink) — whichever upstreams are running; or,
        given ``clusters`` (name → endpoint URL, CA file, token), exactly those,
        targets keyed by cluster name.  And ``cluster_proxy[cluster] = upstream``:
        ``ClusterProxy`` clusters reached through the konnectivity stand-in (target
        key = the cluster name).
        """
        names = {"nginx": "bench", "simulator": "bench-sim", "sink": "bench-sink"}
        running = [u for u in names if u in self.ports]
        endpoints = {u: self.upstream(u) for u in running}
        if clusters is not None:
            names = {name: name for name in clusters}
            running = list(clusters)
            endpoints = dict(clusters)
        tunnelled = dict(cluster_proxy or {})
        if tunnelled:
            extra_args = (*self.konnectivity_args(), *extra_args)
        secrets = self.workdir / "gateway-secrets"
        secrets.mkdir(parents=True, exist_ok=True)
        manifests = []
        entries = [(names[u], endpoints[u], "Const") for u in running]
        entries += [(name, self.upstream(u), "ClusterProxy") for name, u in tunnelled.items()]
        for cluster, (url, ca, token), endpoint_type in entries:
            data = {"endpoint": url, "ca.crt": ca.read_text(), "token": token or "bench"}
            labels = {"cluster.core.oam.dev/cluster-credential-type": "ServiceAccountToken"}
            if endpoint_type == "ClusterProxy":
                del data["endpoint"]
                data["tls-server-name"] = "localhost"
                labels["cluster.core.oam.dev/cluster-endpoint-type"] = "ClusterProxy"
            manifests.append(
                {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "type": "Opaque",
                    "metadata": {"name": cluster, "namespace": "vela-system", "labels": labels},
                    "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
                }
            )
        (secrets / "clusters.yaml").write_text(yaml.safe_dump_all(manifests))
        command, *flags = GATEWAY_COMMAND
        executable = Path(sys.executable).parent / command
        if not executable.exists():
            raise ProcessError(f"{executable} is missing: pip install -e . first")
        port = free_port()
        proc = self._add(
            start_process(
                "gateway",
                [
                    str(executable),
                    *flags,
                    "--standalone-debug-mode",
                    "--bind-address=127.0.0.1",
                    f"--secure-port={port}",
                    f"--secrets-dir={secrets}",
                    f"--cert-dir={self.workdir / 'gateway-certs'}",
                    *self.gateway_args,
                    *extra_args,
                ],
                cores=PROXY_CORE,
                log_dir=self.logs,
            )
        )
        try:
            try:
                wait_for_port(port, 30, proc.popen)
            except ProcessError as e:
                raise ProcessError(f"gateway: {e}\n{proc.log_tail()}") from None
            ca = self.workdir / "gateway-certs" / "ca.crt"
            targets = {
                upstream: Target(
                    "gateway",
                    f"https://127.0.0.1:{port}{API_GROUP_PATH}/{names[upstream]}/proxy",
                    proc,
                    ca if ca.exists() else None,
                )
                for upstream in running
            }
            for cluster in tunnelled:
                targets[cluster] = Target(
                    "gateway-konnectivity",
                    f"https://127.0.0.1:{port}{API_GROUP_PATH}/{cluster}/proxy",
                    proc,
                    ca if ca.exists() else None,
                )
            # The registry reads the directory right after the start; wait for the clusters.
            root = Target("gateway", f"https://127.0.0.1:{port}", proc, targets[running[0]].ca)
            for cluster, _endpoint, _type in entries:
                _probe(root, f"{API_GROUP_PATH}/{cluster}", 20)
            yield targets
        finally:
            self.remove(proc)

    def probe(self, target: Target, path: str, timeout: float = 20) -> dict[str, str]:
        """GET ``path`` through ``target`` until 200; returns the response headers."""
        return _probe(target, path, timeout)[1]
