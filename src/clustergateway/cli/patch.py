"""``cluster-gateway patch``: make the hub's aggregator trust the gateway (the Go ``/patch``).

The vela-core chart runs the Go image's ``/patch`` as a Job after its
certificate Job filled a Secret: it copies the CA bundle from the Secret into
the ``APIService``'s ``spec.caBundle`` and turns ``insecureSkipTLSVerify``
off.  This subcommand takes the same flags (``--target-APIService``,
``--secret-name``, ``--secret-namespace``, ``--secret-ca-bundle-key``, default
``ca``) and finds the hub as the other subcommands do (``--kubeconfig``, else
``$KUBECONFIG`` or ``~/.kube/config`` when present, else the in-cluster service
account; the Go tool looks in-cluster before ``~/.kube/config``).

``--create-secret`` covers installs without a certificate Job: when the
Secret does not exist, a CA and a serving pair for the APIService's Service
(``<svc>``, ``<svc>.<ns>``, ``<svc>.<ns>.svc``, plus ``--hosts``) are created
in it under ``ca``, ``tls.crt`` and ``tls.key`` (the keys the vela-core chart
mounts with ``--tls-cert-file``/``--tls-private-key-file``).  An existing
Secret is never rewritten.

What differs from Go, on purpose: the bundle must hold a PEM certificate (an
empty or garbled one would make the aggregator fail every request); a
conflicting write is retried; a failure prints one line naming the object
and the reason, and nothing is changed unless the APIService update itself
succeeds.  Short-lived and synchronous: the official ``kubernetes`` client.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
from collections.abc import Sequence
from typing import Any

from cryptography import x509

from clustergateway.api.types import DEFAULT_GROUP
from clustergateway.certs import issue_cert, make_ca
from clustergateway.cli.command import CommandError, hub_error, run

__all__ = ["ca_bundle_from", "main", "parse_args", "patch", "serving_hosts_of"]

PROG = "cluster-gateway patch"
#: Conflicting writes (someone else updated the APIService between read and write).
_ATTEMPTS = 5


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """The Go tool's flags, plus ``--kubeconfig`` and the ``--create-secret`` group."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Set an APIService's caBundle from a Secret (the Go image's /patch).",
        allow_abbrev=False,
    )
    parser.add_argument(
        "--target-APIService",
        dest="api_service",
        metavar="NAME",
        default=f"v1alpha1.{DEFAULT_GROUP}",
        help="the APIService to patch (default: %(default)s)",
    )
    parser.add_argument(
        "--secret-name", default="", metavar="NAME", help="the Secret holding the CA bundle"
    )
    parser.add_argument(
        "--secret-namespace", default="", metavar="NAMESPACE", help="the Secret's namespace"
    )
    parser.add_argument(
        "--secret-ca-bundle-key",
        default="ca",
        metavar="KEY",
        help="the Secret's key holding the CA bundle (default: %(default)s)",
    )
    parser.add_argument(
        "--kubeconfig",
        default=None,
        metavar="PATH",
        help="hub kubeconfig (default: $KUBECONFIG, in-cluster, ~/.kube/config)",
    )
    create = parser.add_argument_group("creating the Secret when it does not exist")
    create.add_argument(
        "--create-secret",
        action="store_true",
        help="create a CA and a serving pair for the APIService's Service in the Secret",
    )
    create.add_argument(
        "--hosts",
        default="",
        metavar="HOSTS",
        help="more names/IPs for the serving certificate (comma-separated)",
    )
    create.add_argument(
        "--secret-cert-key",
        default="tls.crt",
        metavar="KEY",
        help="the key of the serving certificate (default: %(default)s)",
    )
    create.add_argument(
        "--secret-private-key-key",
        default="tls.key",
        metavar="KEY",
        help="the key of its private key (default: %(default)s)",
    )
    args = parser.parse_args(list(argv))
    for flag, value in (
        ("secret-name", args.secret_name),
        ("secret-namespace", args.secret_namespace),
    ):
        if not value:
            parser.error(f"--{flag} is required")
    return args


def serving_hosts_of(api_service: dict[str, Any], extra: Sequence[str] = ()) -> tuple[str, ...]:
    """The names the aggregator may dial the APIService's Service by, then ``extra``."""
    service = (api_service.get("spec") or {}).get("service") or {}
    name, namespace = service.get("name"), service.get("namespace")
    hosts = [name, f"{name}.{namespace}", f"{name}.{namespace}.svc"] if name and namespace else []
    hosts.extend(h.strip() for h in extra if h.strip())
    return tuple(dict.fromkeys(hosts))


def ca_bundle_from(data: dict[str, str], where: str, key: str) -> str:
    """The base64 value of ``key`` after checking it decodes to PEM certificates."""
    if key not in data:
        raise CommandError(f"Secret {where} has no key {key!r}; nothing changed")
    try:
        pem = base64.b64decode(data[key], validate=True)
        certificates = x509.load_pem_x509_certificates(pem)
    except (binascii.Error, ValueError):
        certificates = []
    if not certificates:
        raise CommandError(
            f"Secret {where} key {key!r} holds no PEM certificate (a CA bundle); nothing changed"
        )
    return data[key]


def _api_client(kubeconfig: str | None) -> Any:
    """The hub client, found as the other subcommands find it (``client.hub``)."""
    from kubernetes.client import ApiClient
    from kubernetes.config import ConfigException

    from clustergateway.client.hub import load_hub_configuration

    try:
        return ApiClient(load_hub_configuration(kubeconfig))
    except (ConfigException, OSError) as e:
        raise CommandError(f"no hub to talk to: {e}") from None


def _create_secret(core: Any, args: argparse.Namespace, api_service: dict[str, Any]) -> Any:
    hosts = serving_hosts_of(api_service, args.hosts.split(","))
    if not hosts:
        raise CommandError(
            f"APIService {args.api_service} names no Service; give --hosts for the certificate"
        )
    ca = make_ca(f"{hosts[0]}-ca")
    pair = issue_cert(ca, hosts[0], hosts=hosts, server=True)
    body = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": args.secret_name, "namespace": args.secret_namespace},
        "type": "Opaque",
        "data": {
            args.secret_ca_bundle_key: base64.b64encode(ca.cert_pem).decode(),
            args.secret_cert_key: base64.b64encode(pair.cert_pem).decode(),
            args.secret_private_key_key: base64.b64encode(pair.key_pem).decode(),
        },
    }
    from kubernetes.client import ApiException

    try:
        core.create_namespaced_secret(args.secret_namespace, body)
    except ApiException as e:
        if e.status != 409:  # 409: created meanwhile by someone else; use theirs
            where = f"{args.secret_namespace}/{args.secret_name}"
            raise hub_error(e, f"creating Secret {where}") from None
    else:
        print(
            f"{PROG}: created Secret {args.secret_namespace}/{args.secret_name} "
            f"(CA and serving pair for {', '.join(hosts)})"
        )
    return core.read_namespaced_secret(args.secret_name, args.secret_namespace)


def patch(args: argparse.Namespace) -> str:
    """Patch the APIService; the success line.  Raises :class:`CommandError`."""
    from kubernetes.client import ApiException, ApiregistrationV1Api, CoreV1Api
    from urllib3.exceptions import HTTPError

    client = _api_client(args.kubeconfig)
    core, registration = CoreV1Api(client), ApiregistrationV1Api(client)
    where = f"{args.secret_namespace}/{args.secret_name}"
    try:
        api_service = _read_api_service(registration, args.api_service)
        try:
            secret = core.read_namespaced_secret(args.secret_name, args.secret_namespace)
        except ApiException as e:
            if e.status != 404:
                raise hub_error(e, f"reading Secret {where}") from None
            if not args.create_secret:
                raise CommandError(
                    f"Secret {where} not found (--create-secret creates a CA and serving "
                    "pair in it); nothing changed"
                ) from None
            secret = _create_secret(core, args, api_service)
        data = {str(k): str(v) for k, v in (secret.data or {}).items()}  # base64 text
        bundle = ca_bundle_from(data, where, args.secret_ca_bundle_key)
        for attempt in range(_ATTEMPTS):
            spec = api_service.setdefault("spec", {})
            if spec.get("caBundle") == bundle and spec.get("insecureSkipTLSVerify") is not True:
                return f"APIService {args.api_service} already trusts the CA in Secret {where}"
            spec["caBundle"] = bundle
            spec["insecureSkipTLSVerify"] = False
            try:
                # The raw object read above goes back whole (no field the model lacks is lost).
                registration.replace_api_service(args.api_service, api_service)  # type: ignore[arg-type]
                break
            except ApiException as e:
                if e.status != 409 or attempt == _ATTEMPTS - 1:
                    raise hub_error(e, f"updating APIService {args.api_service}") from None
                api_service = _read_api_service(registration, args.api_service)
    except (ApiException, HTTPError) as e:
        raise hub_error(e, "talking to the hub") from None
    return (
        f"APIService {args.api_service} now verifies its service with the CA bundle in "
        f"Secret {where} (key {args.secret_ca_bundle_key!r}); insecureSkipTLSVerify is off"
    )


def _read_api_service(registration: Any, name: str) -> dict[str, Any]:
    """The APIService as the hub sends it (raw JSON: no field lost on the way back)."""
    from kubernetes.client import ApiException
    from urllib3.exceptions import HTTPError

    try:
        response = registration.read_api_service(name, _preload_content=False)
    except (ApiException, HTTPError) as e:
        raise hub_error(e, f"reading APIService {name}") from None
    body: dict[str, Any] = json.loads(response.data)
    return body


def main(argv: Sequence[str]) -> int:
    """``cluster-gateway patch [flags]``: 0 after one line saying what was done, or 1
    after one line (on stderr) saying why not (``cli.command.run``)."""
    args = parse_args(argv)
    return run("patch", lambda: print(f"{PROG}: {patch(args)}"))
