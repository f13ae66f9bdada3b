"""HubClient without a network: configuration loading and error mapping."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from twisted.internet.task import Clock

from clustergateway import errors
from clustergateway.certs import issue_cert, make_ca
from clustergateway.hubclient import (
    HubClient,
    HubConfig,
    HubConfigError,
    UnexpectedStatus,
    status_error_from_response,
)

TOKEN = "hub-token-never-shown"


@pytest.fixture(scope="module")
def pki() -> dict[str, Any]:
    ca = make_ca("hub-ca")
    return {"ca": ca, "client": issue_cert(ca, "gateway", client=True)}


def kubeconfig(
    tmp_path: Path,
    cluster: dict[str, Any],
    user: dict[str, Any],
    contexts: dict[str, str] | None = None,
) -> Path:
    names = contexts or {"main": "main"}
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "main", "cluster": cluster}],
        "users": [{"name": "main", "user": user}],
        "contexts": [{"name": n, "context": {"cluster": "main", "user": "main"}} for n in names],
        "current-context": next(iter(names)),
    }
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return path


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_token_kubeconfig(tmp_path: Path, pki: dict[str, Any]) -> None:
    """A token kubeconfig: server, CA data, bearer header; nothing secret in the repr."""
    path = kubeconfig(
        tmp_path,
        {
            "server": "https://127.0.0.1:6443/",
            "certificate-authority-data": b64(pki["ca"].cert_pem),
        },
        {"token": TOKEN},
    )
    config = HubConfig.from_kubeconfig(path)
    assert config.server == "https://127.0.0.1:6443"
    assert config.ca_pem == pki["ca"].cert_pem
    assert config.authorization() == f"Bearer {TOKEN}"
    assert config.insecure is False and config.cert_pem is None
    assert TOKEN not in repr(config)


def test_client_cert_kubeconfig_with_relative_files(tmp_path: Path, pki: dict[str, Any]) -> None:
    """Client cert and CA as files relative to the kubeconfig's directory."""
    (tmp_path / "ca.crt").write_bytes(pki["ca"].cert_pem)
    (tmp_path / "client.crt").write_bytes(pki["client"].cert_pem)
    (tmp_path / "client.key").write_bytes(pki["client"].key_pem)
    path = kubeconfig(
        tmp_path,
        {"server": "https://hub.example:6443", "certificate-authority": "ca.crt"},
        {"client-certificate": "client.crt", "client-key": "client.key"},
    )
    config = HubConfig.from_kubeconfig(path)
    assert config.cert_pem == pki["client"].cert_pem
    assert config.key_pem == pki["client"].key_pem
    assert config.ca_pem == pki["ca"].cert_pem
    assert config.authorization() is None
    assert "PRIVATE" not in repr(config)
    HubClient.from_config(Clock(), config)  # the TLS material is usable


def test_insecure_and_server_name(tmp_path: Path) -> None:
    """``insecure-skip-tls-verify`` and ``tls-server-name`` are honoured."""
    path = kubeconfig(
        tmp_path,
        {"server": "https://10.0.0.1", "insecure-skip-tls-verify": True, "tls-server-name": "hub"},
        {"token": TOKEN},
    )
    config = HubConfig.from_kubeconfig(path)
    assert config.insecure is True and config.tls_server_name == "hub"
    HubClient.from_config(Clock(), config)


def test_context_selection(tmp_path: Path) -> None:
    """A named context is used; an unknown one is an error naming it."""
    path = kubeconfig(tmp_path, {"server": "https://h"}, {"token": TOKEN}, {"a": "a", "b": "b"})
    assert HubConfig.from_kubeconfig(path, context="b").server == "https://h"
    with pytest.raises(HubConfigError, match="nope"):
        HubConfig.from_kubeconfig(path, context="nope")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read kubeconfig"),
        ("a: [", "is not valid YAML"),
        ("- 1", "is not a kubeconfig"),
        ("apiVersion: v1\nkind: Config\n", "kubeconfig"),
    ],
)
def test_kubeconfig_errors(tmp_path: Path, content: str | None, message: str) -> None:
    """Unusable kubeconfigs raise HubConfigError (the start stops with one line)."""
    path = tmp_path / "kc"
    if content is not None:
        path.write_text(content)
    with pytest.raises(HubConfigError, match=message):
        HubConfig.from_kubeconfig(path)


def test_missing_ca_file(tmp_path: Path) -> None:
    """A CA file that does not exist is an error."""
    path = kubeconfig(
        tmp_path, {"server": "https://h", "certificate-authority": "gone.crt"}, {"token": TOKEN}
    )
    with pytest.raises(HubConfigError):
        HubConfig.from_kubeconfig(path)


def test_bad_scheme(tmp_path: Path) -> None:
    """A server that is not an http(s) URL is refused."""
    path = kubeconfig(tmp_path, {"server": "ftp://h"}, {"token": TOKEN})
    with pytest.raises(HubConfigError, match="not an https:// URL"):
        HubConfig.from_kubeconfig(path)


def test_bad_ca_material() -> None:
    """CA data that is not PEM is refused when the client is built."""
    with pytest.raises(HubConfigError, match="TLS material"):
        HubClient.from_config(Clock(), HubConfig("https://h", ca_pem=b"junk"))


def test_in_cluster(tmp_path: Path, pki: dict[str, Any]) -> None:
    """In-cluster: the service host/port from the environment, the mounted token and CA."""
    (tmp_path / "token").write_text(TOKEN)
    (tmp_path / "ca.crt").write_bytes(pki["ca"].cert_pem)
    config = HubConfig.in_cluster(
        environ={"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"},
        token_filename=str(tmp_path / "token"),
        cert_filename=str(tmp_path / "ca.crt"),
    )
    assert config.server == "https://10.96.0.1:443"
    assert config.authorization() == f"bearer {TOKEN}"
    assert config.ca_pem == pki["ca"].cert_pem


def test_in_cluster_outside_a_pod(tmp_path: Path) -> None:
    """Outside a pod the in-cluster config is an error, not a crash."""
    with pytest.raises(HubConfigError, match="in-cluster config"):
        HubConfig.in_cluster(
            environ={}, token_filename=str(tmp_path / "t"), cert_filename=str(tmp_path / "c")
        )


def status(code: int, reason: str, message: str = "m") -> bytes:
    return json.dumps(
        {
            "kind": "Status",
            "apiVersion": "v1",
            "status": "Failure",
            "code": code,
            "reason": reason,
            "message": message,
            "details": {"name": "x"},
        }
    ).encode()


@pytest.mark.parametrize(
    ("code", "body", "cls", "message"),
    [
        (
            404,
            status(404, "NotFound", 'secrets "x" not found'),
            errors.NotFound,
            'secrets "x" not found',
        ),
        (409, status(409, "AlreadyExists"), errors.AlreadyExists, "m"),
        (409, status(409, "Conflict"), errors.Conflict, "m"),
        (410, status(410, "Expired"), errors.Gone, "m"),
        (401, status(401, "Unauthorized"), errors.Unauthorized, "m"),
        (403, status(403, "Forbidden"), errors.Forbidden, "m"),
        (
            500,
            b"<html>oops</html>",
            errors.InternalError,
            "the hub answered 500: <html>oops</html>",
        ),
        (503, b"", errors.ServiceUnavailable, "the hub answered 503"),
    ],
)
def test_status_mapping(code: int, body: bytes, cls: type, message: str) -> None:
    """Hub replies become the matching StatusError, keeping message and details."""
    error = status_error_from_response(code, body)
    assert type(error) is cls
    assert error.message == message
    assert error.code == code


def test_status_mapping_unknown_code() -> None:
    """A code without a class (429) keeps its code and reason."""
    error = status_error_from_response(429, status(429, "TooManyRequests", "slow down"))
    assert isinstance(error, UnexpectedStatus)
    assert error.to_dict()["code"] == 429 and error.to_dict()["reason"] == "TooManyRequests"
    assert error.to_dict()["details"] == {"name": "x"}


def test_url_building() -> None:
    """Paths join the server (with its own path prefix); booleans and None params as k8s wants."""
    client = HubClient.from_config(Clock(), HubConfig("https://h:1/prefix", insecure=True))
    url = client._url(
        "/api/v1/secrets", {"watch": True, "limit": 5, "continue": None, "labelSelector": "a/b"}
    )
    assert url == b"https://h:1/prefix/api/v1/secrets?watch=true&limit=5&labelSelector=a%2Fb"


class _Transport:
    stopped = False

    def stopProducing(self) -> None:  # noqa: N802
        self.stopped = True


def _watch_protocol(handler: Any = None) -> tuple[Any, list[dict[str, Any]], Any]:
    from twisted.internet.defer import Deferred

    from clustergateway.hubclient import _WatchLines

    events: list[dict[str, Any]] = []
    done: Deferred[None] = Deferred()
    protocol = _WatchLines(handler or events.append, done, "hub WATCH /x")
    protocol.makeConnection(_Transport())
    return protocol, events, done


def test_watch_lines_split_anywhere() -> None:
    """Events split across chunks, several per chunk, and a last one without newline."""
    from twisted.python.failure import Failure
    from twisted.web.client import ResponseDone

    protocol, events, done = _watch_protocol()
    stream = b'{"type":"ADDED","n":1}\n{"type":"MODIFIED","n":2}\n\n{"type":"DELETED","n":3}'
    for i in range(0, len(stream), 7):
        protocol.dataReceived(stream[i : i + 7])
    assert [e["n"] for e in events] == [1, 2]
    protocol.connectionLost(Failure(ResponseDone()))
    assert [e["n"] for e in events] == [1, 2, 3]
    assert done.called and done.result is None


def test_watch_lines_garbage_ends_stream() -> None:
    """A line that is not JSON ends the stream with BadGateway and closes the connection."""
    from twisted.python.failure import Failure
    from twisted.web.client import ResponseFailed

    protocol, events, done = _watch_protocol()
    protocol.dataReceived(b"<html>\n")
    assert protocol.transport.stopped
    protocol.connectionLost(Failure(ResponseFailed([])))
    failures: list[Any] = []
    done.addErrback(failures.append)
    assert failures[0].check(errors.BadGateway)
    assert "not JSON" in failures[0].value.message


def test_watch_lines_broken_connection() -> None:
    """A connection lost mid-stream is a BadGateway naming the watch."""
    from twisted.internet.error import ConnectionLost
    from twisted.python.failure import Failure
    from twisted.web.client import ResponseFailed

    protocol, events, done = _watch_protocol()
    protocol.connectionLost(Failure(ResponseFailed([Failure(ConnectionLost("gone"))])))
    failures: list[Any] = []
    done.addErrback(failures.append)
    assert "hub WATCH /x: watch stream broken" in failures[0].value.message
