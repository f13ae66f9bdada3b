"""``SimulatedCluster``: one simulated Kubernetes apiserver, in-process or standalone.

Tests build one with :meth:`SimulatedCluster.create`, ``await sim.start()``, drive
it with real clients, and assert on ``sim.requests``, ``sim.store``,
``sim.token_reviews`` and ``sim.access_reviews``; ``sim.faults`` makes it
misbehave.  ``python -m clustergateway.testing`` runs the same object.
"""

from __future__ import annotations

import base64
import importlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs
import yaml
from OpenSSL import crypto
from twisted.internet import ssl
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger

from clustergateway.auth.user import UserInfo
from clustergateway.certs import KeyPair
from clustergateway.testing.apiserver import ApiResource, RecordedRequest
from clustergateway.testing.faults import Faults
from clustergateway.testing.http import SimSite
from clustergateway.testing.hubapis import SarPolicy
from clustergateway.testing.kinds import DEFAULT_TYPES
from clustergateway.testing.pki import ADMIN_GROUPS, ADMIN_USER, FRONT_PROXY_CLIENT, SimulatedPki
from clustergateway.testing.simauth import TokenAuthenticator
from clustergateway.testing.store import ObjectStore
from clustergateway.testing.watch import WatchStream

__all__ = ["DEMO_POD", "SimulatedCluster", "default_objects"]

#: The always-running pod every simulated cluster starts with.
DEMO_POD = ("default", "demo", "main")

_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease", "vela-system")


def default_objects(pki: SimulatedPki) -> list[dict[str, Any]]:
    """Namespaces, the demo pod and ``kube-system/extension-apiserver-authentication``."""
    objects: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}} for ns in _NAMESPACES
    ]
    namespace, pod, container = DEMO_POD
    objects.append(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": pod, "namespace": namespace, "labels": {"app": "demo"}},
            "spec": {"containers": [{"name": container, "image": "registry.k8s.io/busybox"}]},
        }
    )
    objects.append(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "extension-apiserver-authentication", "namespace": "kube-system"},
            "data": {
                "client-ca-file": pki.client_ca.cert_pem.decode(),
                "requestheader-client-ca-file": pki.front_proxy_ca.cert_pem.decode(),
                "requestheader-allowed-names": json.dumps([FRONT_PROXY_CLIENT]),
                "requestheader-username-headers": json.dumps(["X-Remote-User"]),
                "requestheader-uid-headers": json.dumps(["X-Remote-Uid"]),
                "requestheader-group-headers": json.dumps(["X-Remote-Group"]),
                "requestheader-extra-headers-prefix": json.dumps(["X-Remote-Extra-"]),
            },
        }
    )
    return objects


def _pod_log_lines(namespace: str, pod: str, container: str) -> list[str]:
    return [f"{namespace}/{pod}/{container}: line {i}" for i in range(1, 11)]


class _DarkConnection(Protocol):
    def __init__(self, held: set[_DarkConnection] | None) -> None:
        self.held = held

    def connectionMade(self) -> None:  # noqa: N802 - Twisted's name
        assert self.transport is not None
        if self.held is None:
            self.transport.loseConnection()
        else:
            self.held.add(self)  # a black hole: the TLS handshake is never answered

    def connectionLost(self, reason: Any = None) -> None:  # noqa: N802 - Twisted's name
        if self.held is not None:
            self.held.discard(self)


class _DarkFactory(Factory):
    """Counts the connections made to a cluster gone dark (``SimulatedCluster.go_dark``)."""

    protocol = _DarkConnection

    def __init__(self, cluster: SimulatedCluster, held: set[_DarkConnection] | None) -> None:
        self.cluster = cluster
        self.held = held

    def buildProtocol(self, addr: Any) -> Protocol:  # noqa: N802 - Twisted's name
        self.cluster.dark_accepts += 1
        return _DarkConnection(self.held)


@attrs.define(eq=False)
class SimulatedCluster:
    """A simulated kube-apiserver with its PKI, objects, recorder and fault knobs.

    Build with :meth:`create`.  Attributes tests use: ``port``, ``url``,
    ``token``, ``ca_pem``/``ca_path``, ``client_cert_path``/``client_key_path``,
    ``requests``, ``store``, ``faults``, ``token_reviews``, ``access_reviews``,
    ``sar_policy`` (settable), ``pod_logs`` (``(ns, pod, container) -> lines``).
    """

    pki: SimulatedPki
    token: str
    reactor: Any
    name: str = "sim"
    store: ObjectStore = attrs.field(factory=ObjectStore)
    faults: Faults = attrs.field(factory=Faults)
    tokens: TokenAuthenticator = attrs.field(factory=TokenAuthenticator)
    requests: list[RecordedRequest] = attrs.field(factory=list)
    token_reviews: list[dict[str, Any]] = attrs.field(factory=list)
    access_reviews: list[dict[str, Any]] = attrs.field(factory=list)
    sar_policy: SarPolicy = attrs.field(default=None)
    #: Lines ``pods/log`` serves per ``(namespace, pod, container)``; unset pods get 10 lines.
    pod_logs: dict[tuple[str, str, str], list[str]] = attrs.field(factory=dict)
    #: Append every request (and review) to ``requests`` / ``token_reviews`` /
    #: ``access_reviews``; switch off for long benchmark runs.
    record_requests: bool = True
    #: Seconds between BOOKMARK events on watches that allow them.
    bookmark_interval: float = 5.0
    #: ``/version``'s minor version (kubectl 1.29 to 1.33 stay within skew of 1.31).
    minor_version: str = "31"
    port: int = 0
    interface: str = "127.0.0.1"
    #: Offer ``h2`` in ALPN, as kube-apiserver does (False: HTTP/1.1 only, like
    #: a cluster behind an HTTP/1.1-only proxy).
    http2: bool = True
    watches: set[WatchStream] = attrs.field(factory=set)
    #: TCP connections accepted (and closed at once) while :meth:`go_dark` holds the port.
    dark_accepts: int = attrs.field(default=0, init=False)
    _listening: IListeningPort | None = attrs.field(default=None, init=False)
    _dark: IListeningPort | None = attrs.field(default=None, init=False)
    _held: set[_DarkConnection] = attrs.field(factory=set, init=False)
    _site: SimSite | None = attrs.field(default=None, init=False)
    _streams: Any = attrs.field(default=None, init=False)
    _stall_waiters: list[Deferred[None]] = attrs.field(factory=list, init=False)
    _log: Logger = attrs.field(factory=Logger, init=False)

    def __attrs_post_init__(self) -> None:
        if self.sar_policy is None:
            self.sar_policy = self.default_sar_policy
        self.faults.stall_listeners.append(self._stall_changed)

    @classmethod
    def create(
        cls,
        cert_dir: Path,
        token: str = "sim-token",
        reactor: Any = None,
        *,
        name: str = "sim",
    ) -> SimulatedCluster:
        """A cluster with PKI in ``cert_dir`` (reused when complete), default objects,
        and ``token`` accepted as ``sim-admin`` (``system:masters``).

        ``reactor=None`` uses the global reactor (convenience for tests and the CLI).
        """
        if reactor is None:
            from twisted.internet import reactor as global_reactor

            reactor = global_reactor
        pki = SimulatedPki.load_or_generate(Path(cert_dir), name)
        cluster = cls(
            pki=pki, token=token, reactor=reactor, name=name, store=ObjectStore(DEFAULT_TYPES)
        )
        cluster.add_token(token, UserInfo(ADMIN_USER, ADMIN_GROUPS))
        cluster.store.load(default_objects(pki))
        return cluster

    # -- identity and files --------------------------------------------------------

    @property
    def url(self) -> str:
        return f"https://{self.server_address}"

    @property
    def server_address(self) -> str:
        host = f"[{self.interface}]" if ":" in self.interface else self.interface
        return f"{host}:{self.port}"

    @property
    def ca_pem(self) -> bytes:
        return self.pki.ca.cert_pem

    @property
    def ca_path(self) -> Path:
        return self.pki.path("ca.crt")

    @property
    def client_cert_path(self) -> Path:
        return self.pki.path("client.crt")

    @property
    def client_key_path(self) -> Path:
        return self.pki.path("client.key")

    @property
    def cert_dir(self) -> Path:
        return self.pki.directory

    def add_token(self, token: str, user: UserInfo) -> None:
        """Accept ``token`` as ``user`` for requests and TokenReviews."""
        self.tokens.add(token, user)

    def issue_client_cert(self, user: str, groups: Sequence[str] = ()) -> KeyPair:
        """A client certificate the cluster accepts as ``user`` in ``groups``."""
        return self.pki.issue_client_cert(user, tuple(groups))

    def default_sar_policy(self, spec: dict[str, Any]) -> tuple[bool, str]:
        """Allow ``system:masters`` and anything ``faults.deny`` does not list."""
        if "system:masters" in (spec.get("groups") or []):
            return True, "member of system:masters"
        attributes = spec.get("resourceAttributes") or {}
        verb = attributes.get("verb") or (spec.get("nonResourceAttributes") or {}).get("verb", "")
        resource = attributes.get("resource") or (spec.get("nonResourceAttributes") or {}).get(
            "path", ""
        )
        if attributes.get("subresource"):
            if self.faults.denies(
                spec.get("user", ""), verb, f"{resource}/{attributes['subresource']}"
            ):
                return False, "denied by the simulated cluster's deny list"
        if self.faults.denies(spec.get("user", ""), verb, resource):
            return False, "denied by the simulated cluster's deny list"
        return True, "allowed by the simulated cluster"

    def write_kubeconfig(self, path: Path, user: str = "token") -> Path:
        """A kubeconfig for this cluster using the admin token or client certificate."""
        if user == "token":
            credentials: dict[str, Any] = {"token": self.token}
        elif user == "cert":
            credentials = {
                "client-certificate-data": base64.b64encode(self.pki.admin.cert_pem).decode(),
                "client-key-data": base64.b64encode(self.pki.admin.key_pem).decode(),
            }
        else:
            raise ValueError(f"user must be 'token' or 'cert', not {user!r}")
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": self.name,
                    "cluster": {
                        "server": self.url,
                        "certificate-authority-data": base64.b64encode(self.ca_pem).decode(),
                    },
                }
            ],
            "users": [{"name": f"{self.name}-{user}", "user": credentials}],
            "contexts": [
                {
                    "name": self.name,
                    "context": {
                        "cluster": self.name,
                        "user": f"{self.name}-{user}",
                        "namespace": "default",
                    },
                }
            ],
            "current-context": self.name,
            "preferences": {},
        }
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        path.chmod(0o600)
        return path

    # -- pod streams ---------------------------------------------------------------

    def log_lines_for(self, namespace: str, pod: str, container: str) -> list[str]:
        return self.pod_logs.get((namespace, pod, container)) or _pod_log_lines(
            namespace, pod, container
        )

    @property
    def streams(self) -> Any:
        """The ``PodStreams`` object (commands, pod filesystems), or None if not installed."""
        return self.pod_streams()

    def pod_streams(self) -> Any:
        """The ``PodStreams`` server for exec/attach/portforward/log, or None if absent."""
        if self._streams is None:
            try:
                module = importlib.import_module("clustergateway.testing.streams")
            except ImportError:
                return None
            factory: Callable[..., Any] | None = getattr(module, "PodStreams", None)
            if factory is None:
                return None
            self._streams = factory(self.reactor, self.faults, self.log_lines_for)
        return self._streams

    # -- faults ----------------------------------------------------------------------

    def _stall_changed(self, stalled: bool) -> None:
        if stalled:
            return
        waiters, self._stall_waiters = self._stall_waiters, []
        for d in waiters:
            d.callback(None)

    def wait_unstalled(self) -> Deferred[None]:
        """Fires at once, or when ``faults.stall`` is cleared."""
        if not self.faults.stall:
            return succeed(None)
        d: Deferred[None] = Deferred(lambda d: self._discard_waiter(d))
        self._stall_waiters.append(d)
        return d

    def _discard_waiter(self, d: Deferred[None]) -> None:
        if d in self._stall_waiters:
            self._stall_waiters.remove(d)

    # -- serving -----------------------------------------------------------------------

    def _tls_options(self) -> ssl.CertificateOptions:
        key = crypto.load_privatekey(crypto.FILETYPE_PEM, self.pki.serving.key_pem)
        cert = crypto.load_certificate(crypto.FILETYPE_PEM, self.pki.serving.cert_pem)
        client_ca = crypto.load_certificate(crypto.FILETYPE_PEM, self.pki.client_ca.cert_pem)
        serving_ca = crypto.load_certificate(crypto.FILETYPE_PEM, self.pki.ca.cert_pem)
        return ssl.CertificateOptions(
            privateKey=key,
            certificate=cert,
            extraCertChain=[serving_ca],
            verify=True,
            caCerts=[client_ca],
            requireCertificate=False,
            raiseMinimumTo=ssl.TLSVersion.TLSv1_2,
        )

    async def start(
        self, port: int | None = None, interface: str | None = None
    ) -> SimulatedCluster:
        """Listen (``port=0``: any free port) and return self."""
        if self._listening is not None:
            return self
        if port is not None:
            self.port = port
        if interface is not None:
            self.interface = interface
        self._site = SimSite(ApiResource(self), self.faults, self.reactor, http2=self.http2)
        self._listening = self.reactor.listenSSL(
            self.port, self._site, self._tls_options(), interface=self.interface
        )
        address = self._listening.getHost()
        assert isinstance(address, IPv4Address | IPv6Address), address
        self.port = address.port
        self._log.info("simulated cluster {name} listening on {url}", name=self.name, url=self.url)
        return self

    async def stop(self) -> None:
        """Stop listening and drop every connection (watches end without a terminal chunk)."""
        listening, self._listening = self._listening, None
        site, self._site = self._site, None
        for stream in list(self.watches):
            stream.abandon()
        self.watches.clear()
        close_streams = getattr(self._streams, "close_all", None)
        if close_streams is not None:
            close_streams()
        if site is not None:
            site.drop_connections()
            site.detach()
        if listening is not None:
            stopped = listening.stopListening()
            if stopped is not None:
                await stopped
        await self._stop_dark()

    async def go_dark(self, black_hole: bool = False) -> None:
        """Stop serving but keep the port: every TCP connection is accepted, counted in
        ``dark_accepts`` and closed at once, as on a host whose apiserver died.  Tests
        see each dial a client makes (a stopped port would only refuse them).

        ``black_hole``: the connections are held open and never answered (the TLS
        handshake never completes), as behind a firewall that drops packets; a
        client waits for its own timeout.  :meth:`come_back` closes them."""
        port = self.port
        await self.stop()
        factory = _DarkFactory(self, self._held if black_hole else None)
        self._dark = self.reactor.listenTCP(port, factory, interface=self.interface)

    async def come_back(self) -> None:
        """Serve again on the same port after :meth:`go_dark`."""
        await self._stop_dark()
        await self.start(port=self.port)

    async def _stop_dark(self) -> None:
        for held in list(self._held):
            if held.transport is not None:
                held.transport.abortConnection()  # type: ignore[attr-defined]
        self._held.clear()
        dark, self._dark = self._dark, None
        if dark is not None:
            stopped = dark.stopListening()
            if stopped is not None:
                await stopped

    async def restart(self) -> None:
        """Go down and come back on the same port, objects and PKI intact."""
        port = self.port
        await self.stop()
        await self.start(port=port)

    @property
    def running(self) -> bool:
        return self._listening is not None

    def connection_protocols(self) -> list[str]:
        """The protocol of each open client connection (``"h2"`` or ``"http/1.1"``),
        for tests that check how clients (the gateway) reach the cluster."""
        site = self._site
        if site is None:
            return []
        return sorted(site.protocol_of(c) for c in site.connections)
