"""TLS listening: the serving certificate and the HTTPS endpoint (HTTP/1.1 and h2).

The serving certificate comes from ``--tls-cert-file``/``--tls-private-key-file``
or, like the generic apiserver, from ``--cert-dir``: an ``apiserver.crt``/
``apiserver.key`` pair found there is served as it is; only when absent is one
generated self-signed (``apiserver.crt`` = leaf + CA, ``apiserver.key``, plus
``ca.crt`` so a local kubeconfig can verify the gateway).  Either way the files
are watched (``server.certreload``).  ALPN offers ``h2`` and ``http/1.1``:
``Site.acceptableProtocols`` is merged in by Twisted when ``h2``/``priority``
are installed (twisted-notes §5).
The TLS context itself is :class:`clustergateway.auth.tlstrust.ServerTLS`, whose
client-certificate trust the auth layer swaps when the hub's CAs rotate.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from twisted.application.service import Service
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.endpoints import TCP4ServerEndpoint, TCP6ServerEndpoint
from twisted.internet.interfaces import IListeningPort, IOpenSSLServerConnectionCreator
from twisted.logger import Logger

from clustergateway.certs import issue_cert, make_ca, write_pem
from clustergateway.fence.tlssocket import ServerTLSFactory

__all__ = [
    "CertificateError",
    "ServingCert",
    "TLSListener",
    "cert_dir_paths",
    "load_serving_cert",
    "cert_dir_pair",
    "serving_names",
]


class CertificateError(ValueError):
    """A certificate or key that cannot be used; the message says which file and why."""


@attrs.frozen
class ServingCert:
    """The PEM chain (leaf first) and key the gateway serves with."""

    chain_pem: bytes
    key_pem: bytes = attrs.field(repr=False)
    ca_pem: bytes | None = None


def _split_pem(data: bytes) -> list[bytes]:
    marker = b"-----END CERTIFICATE-----"
    parts = []
    for chunk in data.split(marker)[:-1]:
        start = chunk.find(b"-----BEGIN CERTIFICATE-----")
        if start >= 0:
            parts.append(chunk[start:] + marker + b"\n")
    return parts


def load_serving_cert(cert_file: Path, key_file: Path) -> ServingCert:
    """Read and check a certificate chain and its key; :class:`CertificateError` if unusable."""
    try:
        chain = cert_file.read_bytes()
    except OSError as e:
        raise CertificateError(f"cannot read {cert_file}: {e.strerror}") from None
    try:
        key = key_file.read_bytes()
    except OSError as e:
        raise CertificateError(f"cannot read {key_file}: {e.strerror}") from None
    check_pair(chain, key, str(cert_file), str(key_file))
    return ServingCert(chain, key)


def check_pair(chain: bytes, key: bytes, cert_name: str, key_name: str) -> x509.Certificate:
    """The leaf of ``chain`` after checking it parses and matches ``key``."""
    certs = _split_pem(chain)
    if not certs:
        raise CertificateError(f"{cert_name}: no PEM certificate in it")
    try:
        leaf = x509.load_pem_x509_certificate(certs[0])
    except ValueError as e:
        raise CertificateError(f"{cert_name}: not a valid certificate: {e}") from None
    try:
        private = serialization.load_pem_private_key(key, password=None)
    except (ValueError, TypeError) as e:
        raise CertificateError(
            f"{key_name}: not a valid unencrypted PEM private key: {e}"
        ) from None
    public = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    leaf_public = leaf.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if public != leaf_public:
        raise CertificateError(f"{key_name} does not match the certificate in {cert_name}")
    return leaf


def serving_names(bind_address: str, hostname: str | None = None) -> tuple[str, ...]:
    """The names a self-signed certificate covers: loopback, the bind address, the host."""
    names = ["localhost", "127.0.0.1", "::1"]
    try:
        address = ipaddress.ip_address(bind_address)
        if not address.is_unspecified:
            names.append(str(address))
    except ValueError:
        pass
    if hostname:
        names.append(hostname)
    return tuple(dict.fromkeys(names))


_log = Logger(namespace="clustergateway.server.listen")


def cert_dir_paths(cert_dir: Path) -> tuple[Path, Path]:
    """``apiserver.crt`` and ``apiserver.key`` in ``cert_dir`` (the generic apiserver's names)."""
    return cert_dir / "apiserver.crt", cert_dir / "apiserver.key"


def cert_dir_pair(cert_dir: Path, names: Sequence[str]) -> ServingCert:
    """The pair in ``cert_dir``, as it is, or a self-signed one generated there when absent.

    As the generic Kubernetes apiserver does: an ``apiserver.crt`` and
    ``apiserver.key`` already there (a mounted Secret, an earlier run) are
    served unchanged, whatever names they cover; only when neither exists is
    a CA and a leaf for ``names`` generated (``ca.crt`` beside them, so a
    local kubeconfig can verify the gateway).  One without the other, an
    unreadable file or a mismatched pair raises :class:`CertificateError`
    naming the file and the reason.
    """
    cert_path, key_path = cert_dir_paths(cert_dir)
    ca_path = cert_dir / "ca.crt"
    cert_exists, key_exists = cert_path.exists(), key_path.exists()
    if cert_exists or key_exists:
        if not (cert_exists and key_exists):
            missing = key_path if cert_exists else cert_path
            raise CertificateError(
                f"{missing} does not exist: the certificate and key must be supplied as a pair"
            )
        existing = load_serving_cert(cert_path, key_path)
        try:
            ca_pem = ca_path.read_bytes() if ca_path.exists() else None
        except OSError:
            ca_pem = None
        _warn_if_expired(existing.chain_pem, cert_path)
        return ServingCert(existing.chain_pem, existing.key_pem, ca_pem)
    stamp = int(datetime.datetime.now(datetime.UTC).timestamp())
    ca = make_ca(f"cluster-gateway-ca@{stamp}")
    leaf_pair = issue_cert(ca, f"localhost@{stamp}", hosts=tuple(names), server=True)
    chain = leaf_pair.cert_pem + ca.cert_pem
    try:
        cert_dir.mkdir(parents=True, exist_ok=True)
        write_pem(cert_dir, "apiserver.key", leaf_pair.key_pem, private=True)
        write_pem(cert_dir, "apiserver.crt", chain)
        write_pem(cert_dir, "ca.crt", ca.cert_pem)
    except OSError as e:
        raise CertificateError(f"cannot write to {cert_dir}: {e.strerror}") from None
    _log.info("Generated a self-signed serving certificate in {dir}", dir=str(cert_dir))
    return ServingCert(chain, leaf_pair.key_pem, ca.cert_pem)


def _warn_if_expired(chain_pem: bytes, cert_path: Path) -> None:
    leaf = x509.load_pem_x509_certificate(_split_pem(chain_pem)[0])
    if leaf.not_valid_after_utc <= datetime.datetime.now(datetime.UTC):
        _log.warn(
            "The serving certificate {path} expired at {expired}; serving it as it is",
            path=str(cert_path),
            expired=leaf.not_valid_after_utc.isoformat(),
        )


@attrs.define(eq=False)
class TLSListener(Service):
    """Listens with ``factory`` on ``bind_address:port`` over TLS while the service runs.

    A port that cannot be bound stops the start with one line naming the flag.
    """

    reactor: Any
    port: int
    bind_address: str
    #: An ``IOpenSSLServerConnectionCreator`` (``auth.tlstrust.ServerTLS``: swappable trust).
    tls: IOpenSSLServerConnectionCreator
    factory: Any
    backlog: int = 1024
    #: ``SO_REUSEPORT`` (``--workers``: every worker process binds the port).
    reuse_port: bool = False
    #: Seconds a new connection has to finish its TLS handshake (a peer that
    #: connects and never says hello would otherwise hold a descriptor forever).
    handshake_timeout: float = 10.0
    listening: IListeningPort | None = attrs.field(default=None, init=False)

    _log: ClassVar[Logger] = Logger()

    def startService(self) -> None:  # noqa: N802 - Twisted's name
        super().startService()  # type: ignore[no-untyped-call]
        tcp_endpoint = TCP6ServerEndpoint if ":" in self.bind_address else TCP4ServerEndpoint
        if self.reuse_port:
            from clustergateway.server.workers import ReusePortEndpoint

            stream: Any = ReusePortEndpoint(
                self.reactor, self.port, self.bind_address, self.backlog
            )
        else:
            stream = tcp_endpoint(self.reactor, self.port, self.backlog, self.bind_address)
        # TLS by OpenSSL on each accepted socket (``fence.tlssocket``), not a
        # memory-BIO wrapper protocol: the hot path's largest saving.
        failures: list[Any] = []
        d = stream.listen(
            ServerTLSFactory(
                self.tls, self.factory, clock=self.reactor, handshake_timeout=self.handshake_timeout
            )
        )
        d.addCallbacks(self._listening, failures.append)
        if failures:
            reason = failures[0].value
            cause = getattr(reason, "socketError", None) or reason
            where = _host_port(self.bind_address, self.port)
            raise SystemExit(f"cluster-gateway: --secure-port: cannot listen on {where}: {cause}")

    def _listening(self, port: IListeningPort) -> None:
        self.listening = port
        address = _tcp_address(port)
        self._log.info(
            "Serving HTTPS on {url}", url=f"https://{_host_port(address.host, address.port)}"
        )

    def stopService(self) -> Any:  # noqa: N802 - Twisted's name
        super().stopService()  # type: ignore[no-untyped-call]
        if self.listening is not None:
            port, self.listening = self.listening, None
            return port.stopListening()
        return None

    @property
    def url(self) -> str:
        """``https://host:port`` of the listening socket (its real port when 0 was asked)."""
        if self.listening is None:
            raise RuntimeError("not listening")
        address = _tcp_address(self.listening)
        host = address.host
        if host in ("0.0.0.0", "::"):
            host = "127.0.0.1" if host == "0.0.0.0" else "::1"
        return f"https://{_host_port(host, address.port)}"


def _tcp_address(port: IListeningPort) -> IPv4Address | IPv6Address:
    """The address of a TCP listening port (``getHost`` is typed as any ``IAddress``)."""
    address = port.getHost()
    assert isinstance(address, IPv4Address | IPv6Address), address
    return address


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
