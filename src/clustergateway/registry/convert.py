"""Secret → :class:`ClusterGateway`: pure functions, no I/O (spec §2.2–§2.4).

The conversion checks everything it can without dialling: a Secret that would
only fail at proxy time in Go (a missing ``endpoint``, an unknown endpoint
type, a ``tls.crt`` that is not PEM, an ``exec`` that is not JSON) fails here,
with a message that names the Secret and the cause, so a ``GET`` can answer a
precise 503 instead of Go's ``no such cluster X``.  No message ever contains a
credential: values are named by key, and only non-secret values (types,
schemes, annotation values) are quoted, truncated.

Decisions where the Go code has quirks (spec §14):

- quirk 4 kept: without a ``ca.crt``/``ca`` key TLS is not verified (the proxy
  logs it).  New keys: ``insecure-skip-tls-verify: "true"`` asks for that
  explicitly, ``"false"`` turns it off (no CA key then means system roots), and
  ``tls-server-name`` sets the name verified and sent as SNI.
- quirk 5 fixed: a missing endpoint is ``missing data key "endpoint"``.
- quirk 6 fixed: an endpoint-type label other than ``Const``/``ClusterProxy``
  is an error.
- ``endpoint`` must be an ``https://`` (verified TLS) or ``http://`` URL (as a
  kubeconfig allows; plain text, for tests) with a host and no user info,
  query or fragment; ``host:port`` without a scheme gets ``https://`` as
  client-go's ``DefaultServerURL`` does.
- ``token``: one trailing newline is trimmed (as for ``endpoint``; Go would
  send it and fail), other control characters are an error.
- ``Dynamic``: the ``exec`` JSON is validated and kept as canonical JSON; the
  plugin is never run here.
- health: the status annotations are read whatever the ``HealthinessCheck``
  gate says (:func:`recorded_health`); no annotation means healthy, and a bad
  value is an unhealthy verdict naming it rather than a conversion error.
- with ``--ocm-integration`` an ``endpoint_from`` source (the ManagedCluster,
  ``registry.ocm``) replaces the Secret's ``endpoint`` and CA.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import attrs
import yaml
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from clustergateway.registry.features import FeatureGates, parse_go_bool
from clustergateway.registry.keys import (
    CREDENTIAL_TYPES,
    HEALTHY_ANNOTATION,
    HEALTHY_REASON_ANNOTATION,
    PROXY_CONFIG_ANNOTATION,
    credential_type_label,
    endpoint_type_label,
)
from clustergateway.registry.model import ClusterGateway, CredentialSpec, EndpointSpec

__all__ = [
    "Conversion",
    "ConversionError",
    "EndpointSource",
    "PROXY_URL_SCHEMES",
    "convert_secret",
    "convert_secret_with_warnings",
    "endpoint_address",
    "recorded_health",
    "secret_data",
    "secret_ref",
]

#: Schemes a ``proxy-url`` may use (what Go's ``http.ProxyURL`` dials).
PROXY_URL_SCHEMES = ("http", "https", "socks5", "socks5h")
_ENDPOINT_SCHEMES = ("https", "http")
_EXEC_API_VERSIONS = ("client.authentication.k8s.io/v1", "client.authentication.k8s.io/v1beta1")
_QUOTE_LIMIT = 64


class ConversionError(Exception):
    """A Secret that cannot become a ClusterGateway.

    ``message`` is ``secret <ns>/<name>: <cause>``, safe to show a caller.
    """

    def __init__(self, ref: str, cause: str) -> None:
        self.ref = ref
        self.cause = cause
        self.message = f"secret {ref}: {cause}"
        super().__init__(self.message)


class _Invalid(Exception):
    """A cause found by a helper; :func:`convert_secret` adds the Secret's name."""


@attrs.frozen
class Conversion:
    """A converted cluster and the non-fatal problems met on the way.

    ``warnings`` are for a log line (once per Secret change), e.g. an
    unparsable proxy-configuration annotation that was ignored.
    """

    gateway: ClusterGateway
    warnings: tuple[str, ...] = ()


def _quote(value: str) -> str:
    """``value`` quoted for a message, cut to a readable length."""
    if len(value) > _QUOTE_LIMIT:
        value = value[:_QUOTE_LIMIT] + "..."
    return json.dumps(value)


def _metadata(secret: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = secret.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def _string_map(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        return {}
    return {str(k): "" if v is None else str(v) for k, v in value.items()}


def secret_ref(secret: Mapping[str, Any]) -> str:
    """``<namespace>/<name>`` (just ``<name>`` when the Secret has no namespace)."""
    meta = _metadata(secret)
    name = str(meta.get("name") or "<unnamed>")
    namespace = meta.get("namespace")
    return f"{namespace}/{name}" if namespace else name


def secret_data(secret: Mapping[str, Any]) -> dict[str, bytes]:
    """The Secret's data as bytes: ``data`` base64-decoded, ``stringData`` on top.

    ``stringData`` wins over ``data`` for the same key, as the apiserver merges
    them on write (it appears in hand-written files of the local directory).
    Decoding is as strict as kube-apiserver's (Go's ``StdEncoding``): padded
    quanta of four, ``=`` only at the end, nothing after it; and the whole is
    capped at :data:`MAX_SECRET_BYTES` like the apiserver caps a Secret (keys
    and values together), checked before a long value is decoded.
    Raises ``ValueError`` naming the key whose value is not base64, or the size.
    """
    result: dict[str, bytes] = {}
    total = 0
    data = secret.get("data")
    if isinstance(data, Mapping):
        for key, value in data.items():
            if value is None:
                result[str(key)] = b""
                continue
            if not isinstance(value, str):
                raise ValueError(f"data key {_quote(str(key))} is not a base64 string")
            # Go's base64 decoder skips CR/LF (multi-line YAML values); nothing else.
            cleaned = value.replace("\r", "").replace("\n", "")
            total += len(str(key)) + len(cleaned) // 4 * 3
            if total > MAX_SECRET_BYTES:
                raise ValueError(_TOO_LARGE)
            result[str(key)] = _strict_b64decode(cleaned, str(key))
    string_data = secret.get("stringData")
    if isinstance(string_data, Mapping):
        for key, value in string_data.items():
            result[str(key)] = b"" if value is None else str(value).encode()
    if sum(len(k) + len(v) for k, v in result.items()) > MAX_SECRET_BYTES:
        raise ValueError(_TOO_LARGE)
    return result


#: kube-apiserver's limit on a Secret's data (``MaxSecretSize``).
MAX_SECRET_BYTES = 1024 * 1024
_TOO_LARGE = "the secret's data is larger than 1 MiB, the most a Kubernetes Secret holds"


def _strict_b64decode(text: str, key: str) -> bytes:
    # Python's strict mode rejects excess data after padding, but not padding
    # on a complete quantum ("YWJj=") or a quantum of padding ("YWJj====").
    if len(text) % 4 or "=" in text[:-2]:
        raise ValueError(f"data key {_quote(key)} is not valid base64")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"data key {_quote(key)} is not valid base64") from None


def _text(data: Mapping[str, bytes], key: str) -> str:
    try:
        return data[key].decode()
    except UnicodeDecodeError:
        raise _Invalid(f"data key {_quote(key)} is not UTF-8 text") from None


def _trim_newline(value: str) -> str:
    return value[:-1] if value.endswith("\n") else value


def _has_control(value: str) -> bool:
    return any(ord(c) < 0x20 or ord(c) == 0x7F for c in value)


def endpoint_address(raw: str) -> str:
    """Validate and normalise an ``endpoint`` value; raise ``ValueError`` with the cause."""
    address = _trim_newline(raw)
    if not address:
        raise ValueError('data key "endpoint" is empty')
    if _has_control(address) or " " in address:
        raise ValueError('data key "endpoint" contains whitespace or control characters')
    if "://" not in address:
        address = "https://" + address
    try:
        parts = urlsplit(address)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ValueError('data key "endpoint" is not a valid URL') from None
    if parts.scheme not in _ENDPOINT_SCHEMES:
        raise ValueError(
            f'data key "endpoint" has scheme {_quote(parts.scheme)}, want https (or http)'
        )
    if parts.username is not None or parts.password is not None:
        raise ValueError('data key "endpoint" must not carry user info')
    if not parts.hostname:
        raise ValueError('data key "endpoint" has no host')
    if parts.query or parts.fragment:
        raise ValueError('data key "endpoint" must not have a query or fragment')
    return address


def _proxy_url(raw: str) -> str:
    value = raw.strip()
    if _has_control(value) or " " in value:
        raise _Invalid('data key "proxy-url" contains whitespace or control characters')
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise _Invalid('data key "proxy-url" is not a valid URL') from None
    if parts.scheme not in PROXY_URL_SCHEMES:
        raise _Invalid(
            f'data key "proxy-url" has scheme {_quote(parts.scheme)}, '
            f"want one of {', '.join(PROXY_URL_SCHEMES)}"
        )
    if not parts.hostname:
        raise _Invalid('data key "proxy-url" has no host')
    return value


def _check_ca_bundle(pem: bytes, key: str) -> None:
    if not pem.strip():
        return  # Go: an empty CA key means "verify against the system roots".
    try:
        x509.load_pem_x509_certificates(pem)
    except ValueError:
        raise _Invalid(f"data key {_quote(key)} is not a PEM certificate bundle") from None


def _check_key_pair(cert_pem: bytes, key_pem: bytes) -> None:
    try:
        certs = x509.load_pem_x509_certificates(cert_pem)
    except ValueError:
        raise _Invalid('data key "tls.crt" is not a PEM certificate') from None
    try:
        key = serialization.load_pem_private_key(
            key_pem, password=None, unsafe_skip_rsa_key_validation=True
        )
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise _Invalid('data key "tls.key" is not an unencrypted PEM private key') from None
    der = serialization.Encoding.DER
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    if certs[0].public_key().public_bytes(der, spki) != key.public_key().public_bytes(der, spki):
        raise _Invalid('data keys "tls.crt" and "tls.key" do not belong together')


def _exec_config(data: Mapping[str, bytes]) -> str:
    if "exec" not in data:
        raise _Invalid('missing data key "exec" (required by credential type Dynamic)')
    try:
        config = json.loads(data["exec"].decode())
    except UnicodeDecodeError:
        raise _Invalid('data key "exec" is not UTF-8 text') from None
    except ValueError as e:
        raise _Invalid(f'data key "exec" is not valid JSON: {e}') from None
    if not isinstance(config, dict):
        raise _Invalid('data key "exec" must be a JSON object (a client-go ExecConfig)')
    api_version = config.get("apiVersion")
    if api_version not in _EXEC_API_VERSIONS:
        shown = _quote(api_version) if isinstance(api_version, str) else "missing"
        raise _Invalid(
            f'data key "exec": invalid apiVersion {shown}, want {" or ".join(_EXEC_API_VERSIONS)}'
        )
    command = config.get("command")
    if not isinstance(command, str) or not command:
        raise _Invalid('data key "exec": missing "command" property on exec config object')
    args = config.get("args")
    if args is not None and not (isinstance(args, list) and all(isinstance(a, str) for a in args)):
        raise _Invalid('data key "exec": "args" must be a list of strings')
    env = config.get("env")
    if env is not None and not (
        isinstance(env, list)
        and all(
            isinstance(item, dict)
            and isinstance(item.get("name"), str)
            and isinstance(item.get("value"), str)
            for item in env
        )
    ):
        raise _Invalid('data key "exec": "env" must be a list of {"name", "value"} strings')
    return json.dumps(config, sort_keys=True, separators=(",", ":"))


#: Gives the (address, CA bundle) that replace the Secret's ``endpoint`` and
#: ``ca.crt`` (an OCM ManagedCluster's, ``registry.ocm``); raises ``ValueError``
#: naming the cause.  Called only for ``Const`` endpoints.
EndpointSource = Callable[[], tuple[str, bytes | None]]


def _endpoint(
    data: Mapping[str, bytes],
    endpoint_type: str,
    group: str,
    endpoint_from: EndpointSource | None = None,
) -> EndpointSpec:
    if endpoint_type == "ClusterProxy":
        # Reached through the konnectivity tunnel by name: "endpoint", "proxy-url" and a
        # ManagedCluster's URL are ignored (as Go).  Unlike Go, which never verifies the
        # cluster there, the Secret's CA and TLS keys apply as for Const.
        return EndpointSpec(type="ClusterProxy", **_trust_keys(data))
    if endpoint_type != "Const":
        raise _Invalid(
            f"unknown endpoint type {_quote(endpoint_type)} in label "
            f'"{endpoint_type_label(group)}", want Const or ClusterProxy'
        )
    if endpoint_from is not None:
        try:
            address, ca = endpoint_from()
        except ValueError as e:
            raise _Invalid(str(e)) from None
        # Go never sets insecure from a ManagedCluster: no CA means the system roots.
        return EndpointSpec(
            type="Const",
            address=address,
            ca_bundle=ca,
            proxy_url=_proxy_url(_text(data, "proxy-url")) if "proxy-url" in data else None,
            tls_server_name=_tls_server_name(data),
        )
    if "endpoint" not in data:
        raise _Invalid('missing data key "endpoint" (the cluster\'s apiserver URL)')
    try:
        address = endpoint_address(_text(data, "endpoint"))
    except ValueError as e:
        raise _Invalid(str(e)) from None

    proxy_url = _proxy_url(_text(data, "proxy-url")) if "proxy-url" in data else None
    return EndpointSpec(type="Const", address=address, proxy_url=proxy_url, **_trust_keys(data))


def _trust_keys(data: Mapping[str, bytes]) -> dict[str, Any]:
    """``ca_bundle``, ``insecure`` and ``tls_server_name`` from the Secret's TLS keys."""
    ca_key = "ca.crt" if "ca.crt" in data else "ca" if "ca" in data else None
    ca_bundle = data[ca_key] if ca_key else None
    if ca_key is not None:
        _check_ca_bundle(data[ca_key], ca_key)
    # Quirk 4 (kept): no CA key at all means "do not verify".
    insecure = ca_key is None
    if "insecure-skip-tls-verify" in data:
        flag = _text(data, "insecure-skip-tls-verify").strip()
        try:
            insecure = parse_go_bool(flag)
        except ValueError:
            raise _Invalid(
                f'data key "insecure-skip-tls-verify" has value {_quote(flag)}, want true or false'
            ) from None
    return {"ca_bundle": ca_bundle, "insecure": insecure, "tls_server_name": _tls_server_name(data)}


def _tls_server_name(data: Mapping[str, bytes]) -> str | None:
    if "tls-server-name" not in data:
        return None
    name = _text(data, "tls-server-name").strip()
    if not name or _has_control(name) or " " in name:
        raise _Invalid('data key "tls-server-name" must be a host name')
    return name


def _credential(data: Mapping[str, bytes], credential_type: str, group: str) -> CredentialSpec:
    if credential_type == "ServiceAccountToken":
        if "token" not in data:
            raise _Invalid(
                'missing data key "token" (required by credential type ServiceAccountToken)'
            )
        token = _trim_newline(_text(data, "token"))
        if not token:
            raise _Invalid('data key "token" is empty')
        if _has_control(token) or not token.isascii():
            raise _Invalid('data key "token" contains characters not allowed in a header')
        return CredentialSpec(type="ServiceAccountToken", token=token)
    if credential_type == "X509Certificate":
        has_cert, has_key = "tls.crt" in data, "tls.key" in data
        if not has_cert:
            raise _Invalid(
                'missing data key "tls.crt" (required by credential type X509Certificate)'
            )
        if not has_key:
            raise _Invalid('data key "tls.crt" without "tls.key"')
        _check_key_pair(data["tls.crt"], data["tls.key"])
        return CredentialSpec(
            type="X509Certificate", certificate=data["tls.crt"], private_key=data["tls.key"]
        )
    if credential_type == "Dynamic":
        return CredentialSpec(type="Dynamic", exec_config=_exec_config(data))
    raise _Invalid(
        f"unknown credential type {_quote(credential_type)} in label "
        f'"{credential_type_label(group)}", want {", ".join(CREDENTIAL_TYPES)}'
    )


def recorded_health(annotations: Mapping[str, str]) -> tuple[bool, str]:
    """The health a Secret's status annotations record: ``(healthy, reason)``.

    Read whatever the ``HealthinessCheck`` gate says (the gate decides whether
    unhealthy clusters are refused), so what a ``health`` PUT writes is what a
    GET shows.  No annotation (or an empty one) means nobody reported a
    problem: healthy, so a Secret nobody probes is not shown as broken (Go
    showed ``false`` for every such cluster).  A value Go's ``ParseBool``
    rejects is unhealthy with a reason naming the annotation: the cluster
    stays usable through the API, and the problem shows where health shows.
    """
    raw = annotations.get(HEALTHY_ANNOTATION, "").strip()
    reason = annotations.get(HEALTHY_REASON_ANNOTATION, "")
    if not raw:
        return True, reason
    try:
        return parse_go_bool(raw), reason
    except ValueError:
        return False, (
            f'annotation "{HEALTHY_ANNOTATION}" has value {_quote(raw)}, want true or false'
        )


def _proxy_config(text: str, cluster: str) -> dict[str, Any]:
    """The per-cluster ClusterGatewayProxyConfiguration, every rule bound to ``cluster``."""
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ValueError(f"not YAML/JSON ({reason})") from None
    if not isinstance(config, dict):
        raise ValueError("not an object")
    spec = config.get("spec") or {}
    if not isinstance(spec, dict):
        raise ValueError('"spec" is not an object')
    exchanger = spec.get("clientIdentityExchanger") or {}
    if not isinstance(exchanger, dict):
        raise ValueError('"spec.clientIdentityExchanger" is not an object')
    rules = exchanger.get("rules") or []
    if not isinstance(rules, list) or not all(isinstance(r, dict) for r in rules):
        raise ValueError('"spec.clientIdentityExchanger.rules" is not a list of objects')
    for rule in rules:
        # Go overwrites source.cluster with the cluster's name; a rule without
        # a source stays without one (it never matches).
        if isinstance(rule.get("source"), dict):
            rule["source"]["cluster"] = cluster
    return config


def convert_secret_with_warnings(
    secret: Mapping[str, Any],
    *,
    group: str,
    gates: FeatureGates,
    endpoint_from: EndpointSource | None = None,
) -> Conversion:
    """Convert ``secret`` (a Secret object as a dict); raise :class:`ConversionError`.

    ``endpoint_from`` (``--ocm-integration`` with a ManagedCluster of the same
    name) supplies a ``Const`` endpoint's address and CA instead of the
    Secret's data.
    """
    ref = secret_ref(secret)
    try:
        meta = _metadata(secret)
        name = meta.get("name")
        if not isinstance(name, str) or not name:
            raise _Invalid("no metadata.name")
        labels = _string_map(meta.get("labels"))
        annotations = _string_map(meta.get("annotations"))
        credential_label = credential_type_label(group)
        if credential_label not in labels:
            raise _Invalid(f'missing label "{credential_label}"')
        try:
            data = secret_data(secret)
        except ValueError as e:
            raise _Invalid(str(e)) from None
        endpoint_type = labels.get(endpoint_type_label(group)) or "Const"
        endpoint = _endpoint(data, endpoint_type, group, endpoint_from)
        credential = _credential(data, labels[credential_label], group)
        healthy, reason = recorded_health(annotations)
    except _Invalid as e:
        raise ConversionError(ref, str(e)) from None

    warnings: list[str] = []
    proxy_config = None
    if gates.client_identity_penetration and PROXY_CONFIG_ANNOTATION in annotations:
        try:
            proxy_config = _proxy_config(annotations[PROXY_CONFIG_ANNOTATION], name)
        except ValueError as e:
            warnings.append(f'secret {ref}: annotation "{PROXY_CONFIG_ANNOTATION}" ignored: {e}')
    timestamp = meta.get("creationTimestamp")
    gateway = ClusterGateway(
        name=name,
        endpoint=endpoint,
        credential=credential,
        creation_timestamp=str(timestamp) if timestamp else None,
        healthy=healthy,
        healthy_reason=reason,
        labels=labels,
        annotations=annotations,
        proxy_config=proxy_config,
    )
    return Conversion(gateway, tuple(warnings))


def convert_secret(
    secret: Mapping[str, Any],
    *,
    group: str,
    gates: FeatureGates,
    endpoint_from: EndpointSource | None = None,
) -> ClusterGateway:
    """Convert ``secret``; raise :class:`ConversionError` naming the Secret and the cause."""
    return convert_secret_with_warnings(
        secret, group=group, gates=gates, endpoint_from=endpoint_from
    ).gateway
