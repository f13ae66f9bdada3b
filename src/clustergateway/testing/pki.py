"""The simulated cluster's certificates: serving CA, client CA, front-proxy CA.

Files written into the cert directory (kube-apiserver's names where it has them):

- ``ca.crt``; ``tls.crt`` / ``tls.key`` — serving chain for 127.0.0.1, ::1, localhost;
- ``client-ca.crt`` / ``client-ca.key``; ``client.crt`` / ``client.key`` — the admin
  client pair (CN ``sim-admin``, O ``system:masters``);
- ``front-proxy-ca.crt``; ``front-proxy-client.crt`` / ``.key`` (CN ``front-proxy-client``),
  what an aggregator presents to an aggregated apiserver.

An existing, complete set in the directory is reused, so a restarted process
keeps the identity its clients already trust.
"""

from __future__ import annotations

from pathlib import Path

import attrs

from clustergateway.certs import KeyPair, issue_cert, make_ca, serving_hosts, write_pem

__all__ = ["ADMIN_GROUPS", "ADMIN_USER", "FRONT_PROXY_CLIENT", "SimulatedPki"]

ADMIN_USER = "sim-admin"
ADMIN_GROUPS = ("system:masters",)
FRONT_PROXY_CLIENT = "front-proxy-client"

_FILES = {
    "ca": ("ca.crt", "ca.key"),
    "serving": ("tls.crt", "tls.key"),
    "client_ca": ("client-ca.crt", "client-ca.key"),
    "admin": ("client.crt", "client.key"),
    "front_proxy_ca": ("front-proxy-ca.crt", "front-proxy-ca.key"),
    "front_proxy_client": ("front-proxy-client.crt", "front-proxy-client.key"),
}


@attrs.frozen
class SimulatedPki:
    """All key pairs of one simulated cluster, and where they were written."""

    directory: Path
    ca: KeyPair
    serving: KeyPair
    client_ca: KeyPair
    admin: KeyPair
    front_proxy_ca: KeyPair
    front_proxy_client: KeyPair

    @classmethod
    def generate(cls, directory: Path, name: str = "sim") -> SimulatedPki:
        """Fresh CAs and leaves for a cluster called ``name``."""
        ca = make_ca(f"{name}-ca")
        client_ca = make_ca(f"{name}-client-ca")
        front_proxy_ca = make_ca(f"{name}-front-proxy-ca")
        return cls(
            directory=directory,
            ca=ca,
            serving=issue_cert(ca, f"{name}-apiserver", hosts=serving_hosts(), server=True),
            client_ca=client_ca,
            admin=issue_cert(client_ca, ADMIN_USER, organizations=ADMIN_GROUPS, client=True),
            front_proxy_ca=front_proxy_ca,
            front_proxy_client=issue_cert(front_proxy_ca, FRONT_PROXY_CLIENT, client=True),
        )

    @classmethod
    def load_or_generate(cls, directory: Path, name: str = "sim") -> SimulatedPki:
        """Reuse a complete set found in ``directory``, else generate and write one."""
        paths = {k: (directory / c, directory / key) for k, (c, key) in _FILES.items()}
        if all(c.exists() and k.exists() for c, k in paths.values()):
            pairs = {k: KeyPair(c.read_bytes(), key.read_bytes()) for k, (c, key) in paths.items()}
            return cls(directory=directory, **pairs)
        pki = cls.generate(directory, name)
        pki.write()
        return pki

    def write(self) -> None:
        for attr, (cert_name, key_name) in _FILES.items():
            pair: KeyPair = getattr(self, attr)
            write_pem(self.directory, cert_name, pair.cert_pem)
            write_pem(self.directory, key_name, pair.key_pem, private=True)

    def path(self, name: str) -> Path:
        return self.directory / name

    def issue_client_cert(self, user: str, groups: tuple[str, ...] | list[str] = ()) -> KeyPair:
        """A client certificate from the client CA (CN = ``user``, O = ``groups``)."""
        return issue_cert(self.client_ca, user, organizations=tuple(groups), client=True)
