"""Test helpers for the observability tests: a registry, fake credentials, labels."""

from __future__ import annotations

from collections.abc import Callable

import attrs

from clustergateway import errors
from clustergateway.auth.subpath import target_request_info
from clustergateway.observe.labels import request_labels
from clustergateway.registry.model import (
    ClusterGateway,
    CredentialSpec,
    EndpointSpec,
    RegistryEntry,
    RegistryListener,
)

#: Credentials the "no credential in output" tests look for.
FAKE_TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW0ifQ.c2lnbmF0dXJlLWZha2UtdG9rZW4"
FAKE_RAW_TOKEN = "s3cr3t-0paque-t0ken-VALUE"
FAKE_PASSWORD = "hunter2-Pa55w0rd"
FAKE_KEY_PEM = (
    "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC-fake-key-material\n"
    "-----END PRIVATE KEY-----\n"
)
FAKE_CERT_PEM = (
    "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU-fake-cert-material\n"
    "-----END CERTIFICATE-----\n"
)
CREDENTIAL_MARKERS = (
    FAKE_TOKEN,
    FAKE_RAW_TOKEN,
    FAKE_PASSWORD,
    "fake-key-material",
    "fake-cert-material",
    "c2lnbmF0dXJlLWZha2UtdG9rZW4",
)


def gateway(name: str) -> ClusterGateway:
    """A convertible cluster carrying the fake credentials."""
    return ClusterGateway(
        name=name,
        endpoint=EndpointSpec(address=f"https://{name}.example:6443"),
        credential=CredentialSpec(
            type="X509Certificate",
            token=FAKE_TOKEN,
            certificate=FAKE_CERT_PEM.encode(),
            private_key=FAKE_KEY_PEM.encode(),
        ),
    )


@attrs.define
class FakeRegistry:
    """Implements ``ClusterRegistry``; entries are set directly by the test."""

    by_name: dict[str, RegistryEntry] = attrs.field(factory=dict)
    synced: bool = True
    resource_version: int = 1

    def add(self, name: str, *, valid: bool = True) -> None:
        secret = {"metadata": {"name": name}, "data": {"token": FAKE_TOKEN}}
        if valid:
            self.by_name[name] = RegistryEntry(name, secret, gateway=gateway(name))
        else:
            self.by_name[name] = RegistryEntry(
                name, secret, error=f'secret vela-system/{name}: missing data key "endpoint"'
            )

    def put(self, cluster: ClusterGateway) -> None:
        self.by_name[cluster.name] = RegistryEntry(cluster.name, {}, gateway=cluster)

    def get(self, name: str) -> ClusterGateway:
        entry = self.by_name.get(name)
        if entry is None:
            raise errors.NotFound(f"clustergateway {name!r} not found")
        if entry.gateway is None:
            raise errors.ServiceUnavailable(entry.error or "")
        return entry.gateway

    def entry(self, name: str) -> RegistryEntry | None:
        return self.by_name.get(name)

    def entries(self) -> list[RegistryEntry]:
        return [self.by_name[k] for k in sorted(self.by_name)]

    def subscribe(self, listener: RegistryListener) -> Callable[[], None]:
        return lambda: None


def labels_for(method: str, path: str, query: str = "") -> tuple[str, str]:
    """``(resource, verb)`` labels of a proxied request, parsed as the proxy does."""
    return request_labels(target_request_info(method, path, query))
