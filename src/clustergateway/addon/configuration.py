"""The ``ClusterGatewayConfiguration`` as a validated value, parsed from its JSON.

The Go addon-manager trusts the CRD's OpenAPI schema and finds out about a bad
value when the Deployment it built cannot start.  Here every value the
installer uses is checked before anything is written, and a bad one becomes a
:class:`ConfigurationError` whose message names the field and the value; the
installer turns it into a condition on the configuration.

Defaults are the CRD's (``charts/addon-manager/crds``): ``secretManagement.type``
``ManagedServiceAccount`` and ``managedServiceAccount.name`` ``cluster-gateway``.
A configuration without ``secretManagement`` at all (the Go repository's own
``hack/samples/clustergatewayconfiguration.yaml``, which a real apiserver would
refuse since the field is required) is read as if it were ``{}``, so the
apiserver's defaulting applies: the sample installs with ManagedServiceAccounts.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import attrs

from clustergateway.addon.names import ADDON_NAME, CGC_CRD_NAME

__all__ = [
    "AddonReference",
    "ClusterProxyEgress",
    "ConfigurationError",
    "GatewayConfiguration",
    "addon_reference",
]

EGRESS_TYPES = ("Direct", "ClusterProxy")
SECRET_MANAGEMENT_TYPES = ("Manual", "ManagedServiceAccount")

# A container image reference as the distribution library parses it: optional
# registry host[:port], lowercase path components, optional tag and digest.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_IMAGE = re.compile(
    rf"^(?:[a-zA-Z0-9](?:[a-zA-Z0-9.-]*[a-zA-Z0-9])?(?::[0-9]+)?/)?"
    rf"{_COMPONENT}(?:/{_COMPONENT})*"
    r"(?::[\w][\w.-]{0,127})?(?:@sha256:[0-9a-f]{64})?$"
)
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


class ConfigurationError(ValueError):
    """The configuration cannot be installed; ``reason`` is a condition reason."""

    def __init__(self, message: str, reason: str = "InvalidConfiguration") -> None:
        super().__init__(message)
        self.reason = reason


@attrs.frozen
class AddonReference:
    """What a ClusterManagementAddOn says: which configuration, and the owner to stamp."""

    name: str
    uid: str
    configuration_name: str


def addon_reference(cma: Mapping[str, Any]) -> AddonReference | None:
    """The reference from a ClusterManagementAddOn, or None if it is not ours.

    Go reconciles only the addon named ``cluster-gateway`` whose
    ``spec.addOnConfiguration.crdName`` names the ClusterGatewayConfiguration CRD.
    """
    meta = cma.get("metadata") or {}
    spec = (cma.get("spec") or {}).get("addOnConfiguration") or {}
    if meta.get("name") != ADDON_NAME or spec.get("crdName") != CGC_CRD_NAME:
        return None
    return AddonReference(
        name=str(meta["name"]),
        uid=str(meta.get("uid") or ""),
        configuration_name=str(spec.get("crName") or ""),
    )


@attrs.frozen
class ClusterProxyEgress:
    """``spec.egress.clusterProxy``: the konnectivity proxy-server and its credentials."""

    host: str
    port: int
    credentials_namespace: str
    client_secret_name: str
    ca_secret_name: str


def _text(value: Any, field: str, *, required: bool = True) -> str:
    if value is None or value == "":
        if required:
            raise ConfigurationError(f"{field} is required")
        return ""
    if not isinstance(value, str):
        raise ConfigurationError(f"{field} must be a string, not {value!r}")
    return value


def _namespace(value: Any, field: str) -> str:
    text = _text(value, field)
    if len(text) > 63 or not _DNS_LABEL.match(text):
        raise ConfigurationError(f"{field} {text!r} is not a valid namespace name")
    return text


def _secret_name(value: Any, field: str) -> str:
    text = _text(value, field)
    if len(text) > 253 or not _DNS_SUBDOMAIN.match(text):
        raise ConfigurationError(f"{field} {text!r} is not a valid Secret name")
    return text


@attrs.frozen
class GatewayConfiguration:
    """A ``ClusterGatewayConfiguration``'s spec, checked, with the CRD's defaults."""

    name: str
    generation: int
    image: str
    install_namespace: str
    secret_namespace: str
    secret_management: str
    managed_service_account_name: str
    egress_type: str
    cluster_proxy: ClusterProxyEgress | None = None

    @property
    def endpoint_type(self) -> str:
        """The endpoint type of copied cluster Secrets: ``ClusterProxy`` or ``Const``."""
        return "ClusterProxy" if self.egress_type == "ClusterProxy" else "Const"

    @classmethod
    def from_object(cls, obj: Mapping[str, Any]) -> GatewayConfiguration:
        """Parse and check; :class:`ConfigurationError` names the first bad field."""
        meta = obj.get("metadata") or {}
        spec = obj.get("spec")
        if not isinstance(spec, Mapping):
            raise ConfigurationError("spec is required")
        image = _text(spec.get("image"), "spec.image")
        if not _IMAGE.match(image):
            raise ConfigurationError(f"spec.image {image!r} is not a valid image reference")
        management = spec.get("secretManagement")
        if management is None:
            management = {}
        if not isinstance(management, Mapping):
            raise ConfigurationError("spec.secretManagement must be an object")
        management_type = _text(management.get("type"), "", required=False)
        management_type = management_type or "ManagedServiceAccount"
        if management_type not in SECRET_MANAGEMENT_TYPES:
            raise ConfigurationError(
                f"spec.secretManagement.type {management_type!r} is not one of"
                f" {', '.join(SECRET_MANAGEMENT_TYPES)}"
            )
        msa = management.get("managedServiceAccount") or {}
        msa_name = _text(msa.get("name"), "", required=False) or ADDON_NAME
        egress = spec.get("egress")
        if not isinstance(egress, Mapping):
            raise ConfigurationError("spec.egress is required")
        egress_type = _text(egress.get("type"), "spec.egress.type")
        if egress_type not in EGRESS_TYPES:
            raise ConfigurationError(
                f"spec.egress.type {egress_type!r} is not one of {', '.join(EGRESS_TYPES)}"
            )
        cluster_proxy = None
        if egress_type == "ClusterProxy":
            cluster_proxy = _cluster_proxy(egress.get("clusterProxy"))
        return cls(
            name=str(meta.get("name") or ""),
            generation=int(meta.get("generation") or 0),
            image=image,
            install_namespace=_namespace(spec.get("installNamespace"), "spec.installNamespace"),
            secret_namespace=_namespace(spec.get("secretNamespace"), "spec.secretNamespace"),
            secret_management=management_type,
            managed_service_account_name=_secret_name(
                msa_name, "spec.secretManagement.managedServiceAccount.name"
            ),
            egress_type=egress_type,
            cluster_proxy=cluster_proxy,
        )


def _cluster_proxy(value: Any) -> ClusterProxyEgress:
    field = "spec.egress.clusterProxy"
    if not isinstance(value, Mapping):
        raise ConfigurationError(f"{field} is required when spec.egress.type is ClusterProxy")
    host = _text(value.get("proxyServerHost"), f"{field}.proxyServerHost")
    port = value.get("proxyServerPort")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise ConfigurationError(f"{field}.proxyServerPort {port!r} is not a port number")
    credentials = value.get("credentials")
    if not isinstance(credentials, Mapping):
        raise ConfigurationError(f"{field}.credentials is required")
    return ClusterProxyEgress(
        host=host,
        port=port,
        credentials_namespace=_namespace(
            credentials.get("namespace"), f"{field}.credentials.namespace"
        ),
        client_secret_name=_secret_name(
            credentials.get("proxyClientSecretName"), f"{field}.credentials.proxyClientSecretName"
        ),
        ca_secret_name=_secret_name(
            credentials.get("proxyClientCASecretName"),
            f"{field}.credentials.proxyClientCASecretName",
        ),
    )
