"""``cluster-gateway patch``: its flags and the pure parts (hosts, bundle checks)."""

from __future__ import annotations

import base64

import pytest

from clustergateway.certs import make_ca
from clustergateway.cli.command import CommandError
from clustergateway.cli.patch import ca_bundle_from, parse_args, serving_hosts_of


def test_go_flags_and_defaults() -> None:
    """The Go tool's four flags with its defaults, in both ``--f=v`` and ``--f v`` forms."""
    args = parse_args(["--secret-namespace=vela-system", "--secret-name", "tls"])
    assert (args.api_service, args.secret_name, args.secret_namespace) == (
        "v1alpha1.cluster.core.oam.dev",
        "tls",
        "vela-system",
    )
    assert args.secret_ca_bundle_key == "ca" and not args.create_secret
    other = parse_args(
        ["--target-APIService=v1.x.io", "--secret-ca-bundle-key=ca.crt", "--secret-name=a"]
        + ["--secret-namespace=b"]
    )
    assert (other.api_service, other.secret_ca_bundle_key) == ("v1.x.io", "ca.crt")


@pytest.mark.parametrize("missing", ["--secret-name", "--secret-namespace"])
def test_secret_flags_required(missing: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Without the Secret's name or namespace the command stops (status 2) naming the flag."""
    given = [f for f in ("--secret-name=a", "--secret-namespace=b") if not f.startswith(missing)]
    with pytest.raises(SystemExit) as info:
        parse_args(given)
    assert info.value.code == 2
    assert f"{missing} is required" in capsys.readouterr().err


def test_serving_hosts_of_the_apiservice() -> None:
    """The names the aggregator dials the Service by, then --hosts (deduplicated)."""
    api_service = {"spec": {"service": {"name": "gw", "namespace": "vela-system", "port": 9443}}}
    assert serving_hosts_of(api_service, ["127.0.0.1", " gw ", ""]) == (
        "gw",
        "gw.vela-system",
        "gw.vela-system.svc",
        "127.0.0.1",
    )
    assert serving_hosts_of({"spec": {}}) == ()


def test_ca_bundle_checks() -> None:
    """The key must exist and hold PEM certificates; errors name the Secret and the key."""
    ca = base64.b64encode(make_ca("ca").cert_pem).decode()
    assert ca_bundle_from({"ca": ca}, "ns/s", "ca") == ca
    with pytest.raises(CommandError, match="Secret ns/s has no key 'ca'; nothing changed"):
        ca_bundle_from({"tls.crt": ca}, "ns/s", "ca")
    for bad in ("Cg==", "!!!", base64.b64encode(b"-----BEGIN CERTIFICATE-----\n").decode()):
        with pytest.raises(CommandError, match="key 'ca' holds no PEM certificate"):
            ca_bundle_from({"ca": bad}, "ns/s", "ca")
