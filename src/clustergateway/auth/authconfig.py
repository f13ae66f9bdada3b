"""Which client certificates and front-proxy headers the gateway trusts, and reloading it.

The trust comes from two places, as for any aggregated apiserver:

- the hub's ConfigMap ``kube-system/extension-apiserver-authentication``
  (``client-ca-file``, ``requestheader-client-ca-file``,
  ``requestheader-allowed-names`` and the header-name lists, JSON-encoded);
- the command line (``--client-ca-file``, ``--requestheader-client-ca-file``,
  ``--requestheader-allowed-names``, ``--requestheader-username-headers``,
  ``--requestheader-uid-headers``, ``--requestheader-group-headers``,
  ``--requestheader-extra-headers-prefix``); a flag that was given wins over the
  ConfigMap, field by field.

:class:`AuthConfigSource` re-reads both periodically (the ConfigMap with a
GET, the files by content) and tells listeners when the result changed, so a
rotated front-proxy CA is trusted without a restart (twisted-notes §4.3).

``X-Remote-Uid`` is only read when a uid header list is configured: older hubs
pass a client's own ``X-Remote-Uid`` through the aggregator untouched.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

import attrs
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.serialization import Encoding
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from clustergateway.errors import NotFound

__all__ = [
    "AUTH_CONFIGMAP_PATH",
    "AuthConfig",
    "AuthConfigError",
    "AuthConfigSource",
    "AuthFlags",
    "CABundle",
    "RequestHeaderConfig",
    "build_auth_config",
    "names_list",
]

AUTH_CONFIGMAP_PATH = "/api/v1/namespaces/kube-system/configmaps/extension-apiserver-authentication"

DEFAULT_USERNAME_HEADERS = ("X-Remote-User",)
DEFAULT_GROUP_HEADERS = ("X-Remote-Group",)
DEFAULT_EXTRA_PREFIXES = ("X-Remote-Extra-",)


class AuthConfigError(ValueError):
    """A trust setting that cannot be used; the message names where it came from."""


@attrs.frozen
class CABundle:
    """Trusted CA certificates, compared by their DER bytes."""

    pem: bytes = attrs.field(repr=False)
    certificates: tuple[x509.Certificate, ...] = attrs.field(eq=False, repr=False)
    ders: frozenset[bytes] = attrs.field(repr=False)
    source: str = ""

    @classmethod
    def from_pem(cls, pem: bytes, source: str) -> CABundle:
        """Parse a PEM bundle; ``AuthConfigError`` naming ``source`` if it holds no certificate."""
        try:
            certificates = tuple(x509.load_pem_x509_certificates(pem))
        except ValueError as exc:
            raise AuthConfigError(f"{source}: not a PEM certificate bundle ({exc})") from None
        if not certificates:
            raise AuthConfigError(f"{source}: no certificate found")
        ders = frozenset(c.public_bytes(Encoding.DER) for c in certificates)
        return cls(pem, certificates, ders, source)

    def issuer_of(self, leaf: x509.Certificate) -> x509.Certificate | None:
        """The CA of this bundle that directly signed ``leaf``, if any."""
        for ca in self.certificates:
            if ca.subject != leaf.issuer:
                continue
            try:
                leaf.verify_directly_issued_by(ca)
            except (InvalidSignature, ValueError, TypeError):
                continue
            return ca
        return None


@attrs.frozen
class RequestHeaderConfig:
    """Front-proxy trust: the CA, the allowed client names, and the header names."""

    ca: CABundle
    allowed_names: tuple[str, ...] = ()
    username_headers: tuple[str, ...] = DEFAULT_USERNAME_HEADERS
    uid_headers: tuple[str, ...] = ()
    group_headers: tuple[str, ...] = DEFAULT_GROUP_HEADERS
    extra_prefixes: tuple[str, ...] = DEFAULT_EXTRA_PREFIXES


@attrs.frozen
class AuthConfig:
    """The complete trust configuration at one moment."""

    client_ca: CABundle | None = None
    requestheader: RequestHeaderConfig | None = None

    def trusted_cas(self) -> tuple[x509.Certificate, ...]:
        """Every CA a client certificate may chain to (for the TLS handshake)."""
        seen: dict[bytes, x509.Certificate] = {}
        for bundle in (self.client_ca, self.requestheader.ca if self.requestheader else None):
            if bundle is not None:
                for cert in bundle.certificates:
                    seen.setdefault(cert.public_bytes(Encoding.DER), cert)
        return tuple(seen.values())


@attrs.frozen
class AuthFlags:
    """The command-line side; ``None`` means "not given" (the ConfigMap decides)."""

    client_ca_file: str | None = None
    requestheader_client_ca_file: str | None = None
    requestheader_allowed_names: tuple[str, ...] | None = None
    requestheader_username_headers: tuple[str, ...] | None = None
    requestheader_uid_headers: tuple[str, ...] | None = None
    requestheader_group_headers: tuple[str, ...] | None = None
    requestheader_extra_headers_prefix: tuple[str, ...] | None = None


def _json_list(data: Mapping[str, str], key: str) -> tuple[str, ...] | None:
    raw = data.get(key)
    if raw is None:
        return None
    try:
        value = json.loads(raw) if raw.strip() else []
    except ValueError:
        raise AuthConfigError(f"ConfigMap key {key}: not a JSON list of strings") from None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise AuthConfigError(f"ConfigMap key {key}: not a JSON list of strings")
    return tuple(value)


def _read(path: str, flag: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise AuthConfigError(f"{flag} {path}: {exc.strerror or exc}") from None


def _pick(
    flag: tuple[str, ...] | None, cm: tuple[str, ...] | None, default: tuple[str, ...]
) -> tuple[str, ...]:
    if flag is not None:
        return flag
    if cm is not None:
        return cm
    return default


def build_auth_config(
    flags: AuthFlags, configmap: Mapping[str, str] | None, read: Callable[[str, str], bytes] = _read
) -> AuthConfig:
    """Merge flags over the ConfigMap's ``data`` (None: no ConfigMap); read the CA files.

    Raises :class:`AuthConfigError` naming the flag or ConfigMap key at fault.
    """
    cm = configmap or {}
    client_ca = None
    if flags.client_ca_file:
        pem = read(flags.client_ca_file, "--client-ca-file")
        client_ca = CABundle.from_pem(pem, f"--client-ca-file {flags.client_ca_file}")
    elif cm.get("client-ca-file", "").strip():
        client_ca = CABundle.from_pem(cm["client-ca-file"].encode(), "ConfigMap key client-ca-file")

    requestheader = None
    ca = None
    if flags.requestheader_client_ca_file:
        path = flags.requestheader_client_ca_file
        ca = CABundle.from_pem(
            read(path, "--requestheader-client-ca-file"), f"--requestheader-client-ca-file {path}"
        )
    elif cm.get("requestheader-client-ca-file", "").strip():
        ca = CABundle.from_pem(
            cm["requestheader-client-ca-file"].encode(),
            "ConfigMap key requestheader-client-ca-file",
        )
    if ca is not None:
        requestheader = RequestHeaderConfig(
            ca=ca,
            allowed_names=_pick(
                flags.requestheader_allowed_names, _json_list(cm, "requestheader-allowed-names"), ()
            ),
            username_headers=_pick(
                flags.requestheader_username_headers,
                _json_list(cm, "requestheader-username-headers"),
                DEFAULT_USERNAME_HEADERS,
            ),
            uid_headers=_pick(
                flags.requestheader_uid_headers, _json_list(cm, "requestheader-uid-headers"), ()
            ),
            group_headers=_pick(
                flags.requestheader_group_headers,
                _json_list(cm, "requestheader-group-headers"),
                DEFAULT_GROUP_HEADERS,
            ),
            extra_prefixes=_pick(
                flags.requestheader_extra_headers_prefix,
                _json_list(cm, "requestheader-extra-headers-prefix"),
                DEFAULT_EXTRA_PREFIXES,
            ),
        )
    return AuthConfig(client_ca, requestheader)


class ConfigMapClient(Protocol):
    """The part of the hub client the source needs."""

    async def get_json(self, path: str) -> Any: ...


def _configmap_data(answer: Any) -> dict[str, str]:
    data = answer.get("data") if isinstance(answer, dict) else None
    if not isinstance(data, dict):
        return {}
    return {str(k): v for k, v in data.items() if isinstance(v, str)}


@attrs.define
class AuthConfigSource:
    """Keeps :attr:`current` up to date; calls listeners with each new :class:`AuthConfig`.

    ``hub`` is None with ``--authentication-skip-lookup`` (flags only).
    :meth:`load` is the first read (errors are fatal unless ``tolerate_lookup_failure``,
    as ``--authentication-tolerate-lookup-failure``); :meth:`start` re-reads every
    ``interval`` seconds; a later failure keeps the last good configuration.
    """

    flags: AuthFlags
    clock: IReactorTime
    hub: ConfigMapClient | None = None
    interval: float = 10.0
    tolerate_lookup_failure: bool = False
    current: AuthConfig = attrs.field(factory=AuthConfig)
    _listeners: list[Callable[[AuthConfig], None]] = attrs.field(factory=list, init=False)
    _loop: LoopingCall | None = attrs.field(default=None, init=False)
    _log = Logger()

    def subscribe(self, listener: Callable[[AuthConfig], None]) -> None:
        self._listeners.append(listener)

    async def _configmap(self) -> dict[str, str] | None:
        if self.hub is None:
            return None
        try:
            answer = await self.hub.get_json(AUTH_CONFIGMAP_PATH)
        except NotFound:
            return None
        return _configmap_data(answer)

    async def read(self) -> AuthConfig:
        """Read the ConfigMap and the files now; errors propagate."""
        try:
            configmap = await self._configmap()
        except AuthConfigError:
            raise
        except Exception as exc:
            if not self.tolerate_lookup_failure:
                raise AuthConfigError(
                    "cannot read ConfigMap kube-system/extension-apiserver-authentication from "
                    f"the hub: {exc} (grant the role extension-apiserver-authentication-reader, "
                    "or pass --authentication-tolerate-lookup-failure)"
                ) from None
            self._log.warn(
                "Cannot read ConfigMap kube-system/extension-apiserver-authentication: {error}",
                error=str(exc),
            )
            configmap = None
        return build_auth_config(self.flags, configmap)

    async def load(self) -> AuthConfig:
        """The first read, at start: ``AuthConfigError`` stops the start."""
        self._apply(await self.read())
        return self.current

    async def refresh(self) -> None:
        try:
            config = await self.read()
        except Exception as exc:
            self._log.warn("Keeping the current authentication trust: {error}", error=str(exc))
            return
        self._apply(config)

    def _apply(self, config: AuthConfig) -> None:
        if config == self.current:
            return
        self.current = config
        self._log.info(
            "Trusting client CA {client}, front-proxy CA {front}, allowed names {names}",
            client=config.client_ca.source if config.client_ca else "none",
            front=config.requestheader.ca.source if config.requestheader else "none",
            names=list(config.requestheader.allowed_names) if config.requestheader else [],
        )
        for listener in list(self._listeners):
            listener(config)

    def start(self) -> None:
        if self._loop is None:
            self._loop = LoopingCall(self._tick)
            self._loop.clock = self.clock
            self._loop.start(self.interval, now=False)

    def _tick(self) -> Deferred[None]:
        # Returning the Deferred makes the LoopingCall wait: refreshes never overlap.
        return ensureDeferred(self.refresh())

    def stop(self) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None


def names_list(text: str) -> tuple[str, ...]:
    """A comma-separated flag value as the apiserver reads it (empty items dropped)."""
    return tuple(item.strip() for item in text.split(",") if item.strip())
