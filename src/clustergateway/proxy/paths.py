"""Where a proxied request goes: upstream address, path and query (pure functions).

The proxy URL is ``…/clustergateways/{name}/proxy/{subpath}?{query}``.  The
request sent to the cluster keeps ``subpath`` byte for byte (still
percent-encoded, so ``%2F`` stays ``%2F``), joined under the endpoint's own
path, and the query unchanged except for the ``__dryRun`` → ``dryRun`` rename
(spec §3.1).  Unlike the Go gateway this does not clean the path (no
``path.Join``) and does not answer an empty subpath with a 301 (quirk 9).

The subpath must stay under the endpoint's path however it is encoded:
:func:`confine_subpath` refuses any segment that a server could resolve as
``.`` or ``..`` (percent-encoded once or several times, split at ``%2F`` or
``\\``, or written with Unicode look-alikes), a NUL, and bytes that are not
UTF-8.  No Kubernetes API path contains such a segment, so what passes is
forwarded as received and is already its own dot-segment-normalized form
(RFC 3986 §5.2.4): nothing in it can climb out of the endpoint's path.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from urllib.parse import unquote_to_bytes, urlsplit

import attrs

from clustergateway.registry.model import EndpointSpec

__all__ = [
    "PathOutsideEndpoint",
    "UpstreamTarget",
    "UnsupportedEndpoint",
    "confine_subpath",
    "ip_version",
    "is_long_running",
    "join_path",
    "query_flag",
    "rewrite_query",
    "split_uri",
]

_DEFAULT_PORTS = {"https": 443, "http": 80}
# Go's strconv.ParseBool-like reading of a boolean query parameter as the
# apiserver does it (``Convert_Slice_string_To_bool``): present and not one of
# these means true.
_FALSE_VALUES = frozenset({b"0", b"f", b"false", b"n", b"no"})


class PathOutsideEndpoint(ValueError):
    """A proxied subpath that could resolve outside the cluster's endpoint path."""


class UnsupportedEndpoint(ValueError):
    """The cluster's endpoint cannot be dialled (yet); the message says why."""


@attrs.frozen
class UpstreamTarget:
    """A cluster's apiserver as the proxy dials it.

    ``host_header`` is the address's authority as written (``host[:port]``):
    what Go's client sends, and unlike the Go gateway it keeps the port.
    ``base_path`` is the endpoint URL's path without a trailing ``/``.
    ``server_name`` is the name the server certificate must carry (and the SNI
    sent when it is a DNS name): ``tls_server_name`` when set, else the host.
    """

    scheme: str
    host: str
    port: int
    host_header: bytes
    base_path: bytes
    server_name: str

    @property
    def tls(self) -> bool:
        return self.scheme == "https"

    @property
    def address(self) -> str:
        """``host:port`` (IPv6 in brackets), for messages."""
        if ":" in self.host:
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"

    @property
    def url_prefix(self) -> bytes:
        """``scheme://authority`` for a request URL (the path is appended)."""
        return self.scheme.encode() + b"://" + self.host_header

    @classmethod
    def from_endpoint(cls, endpoint: EndpointSpec) -> UpstreamTarget:
        """Parse the endpoint of a ``Const`` cluster.

        Raises :class:`UnsupportedEndpoint` for other endpoint types
        (``ClusterProxy`` has :meth:`for_cluster_proxy`) and for an address
        that is not an ``http(s)`` URL.  ``proxy_url`` is the egress router's
        business (:mod:`clustergateway.proxy.egress`).
        """
        if endpoint.type != "Const":
            raise UnsupportedEndpoint(
                f"unsupported cluster gateway endpoint type {endpoint.type!r}"
            )
        address = endpoint.address.strip()
        if not address:
            raise UnsupportedEndpoint("the endpoint address is empty")
        if "://" not in address:
            # client-go reads a bare host[:port] as https.
            address = "https://" + address
        try:
            parts = urlsplit(address)
            port = parts.port
        except ValueError as e:
            raise UnsupportedEndpoint(f"invalid endpoint address: {e}") from None
        scheme = parts.scheme.lower()
        if scheme not in _DEFAULT_PORTS:
            raise UnsupportedEndpoint(f"unsupported endpoint scheme {parts.scheme!r}")
        host = parts.hostname
        if not host:
            raise UnsupportedEndpoint("the endpoint address has no host")
        if parts.username is not None or parts.password is not None:
            raise UnsupportedEndpoint("the endpoint address must not carry user info")
        authority = parts.netloc
        try:
            host_header = authority.encode("ascii")
        except UnicodeEncodeError:
            host_header = authority.encode("idna")
        path = parts.path.encode("utf-8").rstrip(b"/")
        return cls(
            scheme=scheme,
            host=host,
            port=port if port is not None else _DEFAULT_PORTS[scheme],
            host_header=host_header,
            base_path=path,
            server_name=endpoint.tls_server_name or host,
        )

    @classmethod
    def for_cluster_proxy(cls, name: str, endpoint: EndpointSpec) -> UpstreamTarget:
        """The target of a ``ClusterProxy`` cluster: ``https://<name>:443`` through the tunnel.

        As Go: the dial goes to ``<name>:443`` (the agent routes by that
        name) and ``Host`` is the name.  Unlike Go the server certificate is
        checked when the Secret has a CA, against ``tls-server-name`` if set.
        """
        return cls(
            scheme="https",
            host=name,
            port=443,
            host_header=name.encode("idna"),
            base_path=b"",
            server_name=endpoint.tls_server_name or name,
        )


def ip_version(host: str) -> int | None:
    """4 or 6 when ``host`` is an IP literal, None for a DNS name."""
    try:
        return ipaddress.ip_address(host).version
    except ValueError:
        return None


def split_uri(uri: bytes) -> tuple[bytes, bytes]:
    """``(path, query)`` of a raw request URI; ``query`` excludes the ``?``."""
    path, _, query = uri.partition(b"?")
    return path, query


# Decoding rounds a chain of servers in front of an apiserver might apply
# (``%252e`` → ``%2e`` → ``.``); past this, a segment still holding ``%`` is refused.
_DECODE_ROUNDS = 3
_DOT_SEGMENTS = frozenset({".", ".."})
_SEPARATORS = re.compile(r"[/\\]")
# No dot, escape, backslash, NUL or non-ASCII byte: nothing to decode or fold.
_PLAIN_PATH = re.compile(rb"[^.%\\\x00\x80-\xff]*")


def confine_subpath(subpath: bytes) -> bytes:
    """``subpath`` when nothing in it can leave the endpoint's path; else raise.

    Each segment is percent-decoded up to :data:`_DECODE_ROUNDS` times; every
    form on the way is split at ``/`` and ``\\`` and NFKC-folded (``．．`` is
    ``..`` to some servers), and no piece may be ``.`` or ``..``.  A NUL or
    bytes that are not UTF-8 (overlong encodings of ``.`` among them) are
    refused too.  Raises :class:`PathOutsideEndpoint` with the reason.
    """
    if _PLAIN_PATH.fullmatch(subpath):
        return subpath  # the common case: plain Kubernetes API paths
    for segment in subpath.split(b"/"):
        _check_segment(segment)
    return subpath


def _check_segment(segment: bytes) -> None:
    form = segment
    for _ in range(_DECODE_ROUNDS + 1):
        if b"\x00" in form:
            raise PathOutsideEndpoint("the proxied path contains a NUL byte")
        try:
            text = form.decode("utf-8")
        except UnicodeDecodeError:
            raise PathOutsideEndpoint("the proxied path is not valid UTF-8") from None
        for piece in _SEPARATORS.split(unicodedata.normalize("NFKC", text)):
            if piece in _DOT_SEGMENTS:
                raise PathOutsideEndpoint(
                    "the proxied path contains a '.' or '..' segment (encoded or not), "
                    "which could leave the cluster's endpoint path"
                )
        if b"%" not in form:
            return
        decoded = unquote_to_bytes(form)
        if decoded == form:
            return
        form = decoded
    raise PathOutsideEndpoint(
        f"the proxied path is percent-encoded more than {_DECODE_ROUNDS} times"
    )


def join_path(base_path: bytes, subpath: bytes) -> bytes:
    """The upstream path: ``subpath`` appended to the endpoint's ``base_path``.

    Exact: no cleaning, no decoding, a trailing ``/`` kept; an empty subpath
    addresses the endpoint path itself (``/`` at the root), never a redirect.
    """
    if not subpath:
        return base_path or b"/"
    if subpath[:1] == b"/":
        return base_path + subpath
    return base_path + b"/" + subpath


def rewrite_query(query: bytes) -> bytes:
    """The query sent upstream: ``__dryRun`` renamed ``dryRun``, all else as received.

    ``__dryRun`` is how clients escape ``dryRun`` past an apiserver that
    rejects it on connect requests (spec §3.1); plain ``dryRun`` passes too.
    """
    if b"__dryRun" not in query:
        return query
    parts = query.split(b"&")
    for i, part in enumerate(parts):
        key, sep, value = part.partition(b"=")
        if key == b"__dryRun":
            parts[i] = b"dryRun" + sep + value
    return b"&".join(parts)


def query_flag(query: bytes, name: bytes) -> bool:
    """Whether boolean parameter ``name`` is set in the raw ``query``.

    Reads the first occurrence like the apiserver: present with a value other
    than ``0``/``f``/``false``/``n``/``no`` (any case) is true, so is a bare
    ``?name``.
    """
    if name not in query:
        return False
    for part in query.split(b"&"):
        key, _, value = part.partition(b"=")
        if key == name:
            return value.lower() not in _FALSE_VALUES
    return False


def is_long_running(subpath: bytes, query: bytes) -> bool:
    """Requests that may legitimately stream for a long time: no response timeout.

    Watches (``watch=true`` or a legacy ``/watch/`` path), followed logs and the
    ``proxy`` subresources of services, pods and nodes, matching what the
    apiserver itself treats as long-running.  ``subpath`` is the Kubernetes
    path as the client sent it (without the endpoint's own path).
    """
    if query and (query_flag(query, b"watch") or query_flag(query, b"follow")):
        return True
    if b"/watch/" in subpath:
        return True
    return b"/proxy" in subpath and _subresource(subpath) == b"proxy"


def _subresource(subpath: bytes) -> bytes | None:
    """The subresource of a resource path (``/api/v1/namespaces/n/pods/p/proxy`` →
    ``proxy``), or None for anything else."""
    segments = subpath.split(b"/")
    if len(segments) < 3 or segments[0] != b"":
        return None
    if segments[1] == b"api":
        rest = segments[3:]
    elif segments[1] == b"apis":
        rest = segments[4:]
    else:
        return None
    if len(rest) >= 3 and rest[0] == b"namespaces" and len(rest) != 3:
        rest = rest[2:]
    # rest is [resource, name, subresource, ...]
    if len(rest) >= 3:
        return rest[2]
    return None
