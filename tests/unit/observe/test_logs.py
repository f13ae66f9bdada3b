"""Log writers, redaction and the access log of ``clustergateway.observe.logs``."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from twisted.internet.testing import StringTransport
from twisted.logger import Logger, LogLevel, formatEvent
from twisted.web.http_headers import Headers
from twisted.web.resource import Resource
from twisted.web.server import Request, Site
from twisted.web.test.requesthelper import DummyChannel, DummyRequest

from clustergateway.auth.user import UserInfo
from clustergateway.observe.logs import (
    REDACTED,
    AccessLog,
    JsonLinesObserver,
    TextObserver,
    gateway_observer,
    is_sensitive_key,
    mask_query,
    redact_event,
    redact_value,
    scrub_text,
)


@pytest.mark.parametrize(
    ("name", "sensitive"),
    [
        ("token", True),
        ("bearerToken", True),
        ("access_token", True),
        ("Authorization", True),
        ("proxy-authorization", True),
        ("password", True),
        ("private_key", True),
        ("privateKey", True),
        ("client-key-data", True),
        ("tls_cert", True),
        ("certificate", True),
        ("credentials", True),
        ("cookie", True),
        ("exec_config", True),
        ("execConfig", True),
        ("env", True),
        ("data", True),
        ("stringData", True),
        ("client_secret", True),
        ("kubeconfig", True),
        # names of places and names of things are kept
        ("tls_cert_file", False),
        ("client_key_path", False),
        ("cert_dir", False),
        ("secret_name", False),
        ("credential_type", False),
        ("secret", False),
        # ordinary fields
        ("cluster", False),
        ("code", False),
        ("user", False),
        ("path", False),
        ("monkey", False),
        ("tokenizer_count", False),
    ],
)
def test_is_sensitive_key(name: str, sensitive: bool) -> None:
    """Field names are judged by their words (snake, kebab and camel case)."""
    assert is_sensitive_key(name) is sensitive


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Authorization: Bearer abcdefgh12345678", f"Authorization: Bearer {REDACTED}"),
        ("header Basic dXNlcjpwYXNzd29yZA==", f"header Basic {REDACTED}"),
        ("no bearer token given", "no bearer token given"),
        (
            "sa eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln ok",
            "sa <redacted JWT> ok",
        ),
        ("join abcdef.0123456789abcdef now", f"join {REDACTED} now"),
        (
            "k -----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY----- end",
            "k <redacted PEM> end",
        ),
        ("cut -----BEGIN CERTIFICATE-----\nMIIB", "cut <redacted PEM>"),
        ("client-key-data: LS0tLS1CRUdJTiBSU0E=", "client-key-data: <redacted PEM>"),
        ("/api?access_token=abc123&watch=1", f"/api?access_token={REDACTED}&watch=1"),
        ("password: hunter2", f"password: {REDACTED}"),
        ('{"token": "abc"}', f'{{"token": "{REDACTED}"}}'),
        ("{b'authorization': [b'rawvalue']}", f"{{b'authorization': [b'{REDACTED}']}}"),
        ("cluster c1 answered 502", "cluster c1 answered 502"),
        ("failed converting secret vela-system/c1", "failed converting secret vela-system/c1"),
    ],
)
def test_scrub_text(text: str, expected: str) -> None:
    """Credential shapes are masked wherever they appear in text; other text is kept."""
    assert scrub_text(text) == expected


def test_redact_value_walks_mappings_headers_and_sequences() -> None:
    """Nested keys are judged by name, Headers by header name, strings by shape."""
    secret = {
        "metadata": {"name": "c1", "labels": {"a": "b"}},
        "data": {"token": "raw"},
        "stringData": {"x": "y"},
    }
    assert redact_value(secret) == {
        "metadata": {"name": "c1", "labels": {"a": "b"}},
        "data": REDACTED,
        "stringData": REDACTED,
    }
    headers = Headers({b"Authorization": [b"raw-token"], b"Accept": [b"application/json"]})
    assert redact_value(headers) == {"Authorization": REDACTED, "Accept": ["application/json"]}
    assert redact_value([{"password": "x"}, ("Bearer abcdefghijk",)]) == [
        {"password": REDACTED},
        (f"Bearer {REDACTED}",),
    ]
    assert redact_value({b"token": b"x"}) == {b"token": REDACTED}


def test_redact_event_keeps_formatting_and_internals() -> None:
    """Sensitive fields are replaced before formatting; other objects stay usable."""

    class Target:
        host = "c1.example"

    event = {
        "log_format": "dial {target.host} with {token} for {user}",
        "log_level": LogLevel.info,
        "log_namespace": "ns",
        "target": Target(),
        "token": "raw-secret",
        "user": "alice",
        "count": 3,
    }
    redacted = redact_event(event)
    assert formatEvent(redacted) == f"dial c1.example with {REDACTED} for alice"
    assert event["token"] == "raw-secret", "the original event is not modified"
    assert redacted["count"] == 3 and redacted["log_namespace"] == "ns"


def test_json_lines_format() -> None:
    """One JSON object per line: time, level, namespace, message, fields, error."""
    out = io.StringIO()
    log = Logger(namespace="clustergateway.registry", observer=JsonLinesObserver(out))
    log.info(
        "cluster {cluster} added ({n} entries)",
        cluster="c1",
        n=2,
        ok=True,
        entry=("a", "b"),
    )
    try:
        raise ValueError("boom")
    except ValueError:
        log.failure("conversion of {secret} failed", secret="vela-system/c2")
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert list(first)[:4] == ["time", "level", "namespace", "message"]
    assert first["time"].endswith("Z") and first["time"][10] == "T"
    assert first == {
        "time": first["time"],
        "level": "info",
        "namespace": "clustergateway.registry",
        "message": "cluster c1 added (2 entries)",
        "cluster": "c1",
        "n": 2,
        "ok": True,
        "entry": "('a', 'b')",
    }
    assert second["level"] == "critical"
    assert second["message"] == "conversion of vela-system/c2 failed"
    assert second["secret"] == "vela-system/c2"
    assert "ValueError: boom" in second["error"]


def test_text_format() -> None:
    """Text lines read as '<time> [<namespace>#<level>] <message>'."""
    out = io.StringIO()
    log = Logger(namespace="clustergateway.proxy", observer=TextObserver(out))
    log.warn("upstream {cluster} failed: {why}", cluster="c2", why="connection refused")
    line = out.getvalue()
    assert line.endswith(" [clustergateway.proxy#warn] upstream c2 failed: connection refused\n")
    assert line.count("\n") == 1


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_gateway_observer_picks_json_off_a_terminal_and_filters_levels() -> None:
    """JSON when the stream is not a terminal, text when it is; below-level events dropped."""
    piped, tty = io.StringIO(), _Tty()
    for stream in (piped, tty):
        log = Logger(namespace="t", observer=gateway_observer(stream))
        log.debug("hidden {token}", token="x")
        log.info("shown token={token}", token="raw-secret")
    assert json.loads(piped.getvalue())["message"] == f"shown token={REDACTED}"
    assert tty.getvalue().endswith(f"[t#info] shown token={REDACTED}\n")
    assert "hidden" not in piped.getvalue() + tty.getvalue()


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", ""),
        ("watch=true&resourceVersion=5", "watch=true&resourceVersion=5"),
        ("access_token=abc&watch=1", f"access_token={REDACTED}&watch=1"),
        ("token=abc", f"token={REDACTED}"),
        ("command=ls&password=x", f"command=ls&password={REDACTED}"),
        ("tty", "tty"),
    ],
)
def test_mask_query(query: str, expected: str) -> None:
    """Only the values of credential-like query parameters are masked."""
    assert mask_query(query) == expected


def test_access_log_off_by_default() -> None:
    """Disabled, the Site.log replacement and note() record nothing."""
    events: list[dict[str, Any]] = []
    access = AccessLog(log=Logger(observer=events.append))
    request = DummyRequest([b"x"])
    access.note(request, user="alice")
    access.log_request(request)
    assert events == []
    assert len(access._notes) == 0


def test_access_log_line() -> None:
    """Enabled: one line with method, masked path, code, bytes, duration, user, cluster."""
    events: list[dict[str, Any]] = []
    now = [100.0]
    access = AccessLog(
        enabled=True,
        clock=lambda: now[0],
        log=Logger(namespace="clustergateway.access", observer=events.append),
    )
    request = Request(DummyChannel())
    request.method = b"GET"
    request.uri = (
        b"/apis/cluster.core.oam.dev/v1alpha1/clustergateways/c1/proxy/api/v1/pods"
        b"?watch=true&access_token=raw"
    )
    access.note(request, started=99.75, user="alice")
    access.note(request, cluster="c1")
    request.setResponseCode(200)
    request.write(b"12345")
    now[0] = 100.0
    access.log_request(request)
    (event,) = events
    assert formatEvent(event) == (
        "GET /apis/cluster.core.oam.dev/v1alpha1/clustergateways/c1/proxy/api/v1/pods"
        f"?watch=true&access_token={REDACTED} 200 5 0.25s user=alice cluster=c1"
    )
    assert event["code"] == 200 and event["bytes"] == 5 and event["duration"] == 0.25
    assert event["user"] == "alice" and event["cluster"] == "c1"


def test_access_log_for_an_upgrade() -> None:
    """An upgrade (never finished by Twisted) is logged by the proxy with the relayed code;
    the user comes from the Gate's ``gateway_user`` when nobody noted one."""
    events: list[dict[str, Any]] = []
    access = AccessLog(enabled=True, log=Logger(observer=events.append))
    request = Request(DummyChannel())
    request.method = b"POST"
    request.uri = b"/x/proxy/api/v1/namespaces/n/pods/p/exec?command=sh"
    request.gateway_user = UserInfo("bob")  # what the serving layer's Gate sets
    access.log_request(request, code=101, sent_bytes=4096)
    (event,) = events
    assert (event["code"], event["bytes"], event["user"], event["cluster"]) == (
        101,
        4096,
        "bob",
        None,
    )


class _Hello(Resource):
    isLeaf = True

    def render_GET(self, request: Any) -> bytes:
        return b"hello"


@pytest.mark.parametrize("enabled", [False, True])
def test_access_log_replaces_site_log(enabled: bool) -> None:
    """Installed as ``Site.log``, it is what runs when twisted.web finishes a request."""
    events: list[dict[str, Any]] = []
    access = AccessLog(enabled=enabled, log=Logger(observer=events.append))
    site = Site(_Hello())
    site.log = access.log_request  # type: ignore[method-assign]
    channel = site.buildProtocol(None)
    transport = StringTransport()
    channel.makeConnection(transport)
    channel.dataReceived(b"GET /x?token=raw HTTP/1.1\r\nHost: gw\r\n\r\n")
    assert transport.value().endswith(b"hello")
    if enabled:
        (event,) = events
        assert formatEvent(event) == f"GET /x?token={REDACTED} 200 5 - user=None cluster=None"
    else:
        assert events == []
    channel.connectionLost(None)


def test_twistd_logger_factory_gives_a_new_style_observer() -> None:
    """``twistd --logger=clustergateway.observe.logs.twistd_observer`` needs an ILogObserver."""
    from twisted.logger import ILogObserver
    from zope.interface.verify import verifyObject

    from clustergateway.observe.logs import RedactingObserver, twistd_observer

    assert verifyObject(ILogObserver, twistd_observer())
    assert verifyObject(ILogObserver, RedactingObserver(lambda event: None))
