"""Trust configuration: the hub's ConfigMap, flags over it, reloading on change."""

from __future__ import annotations

import json

import pytest
from twisted.internet.defer import ensureDeferred
from twisted.internet.task import Clock

from clustergateway.auth.authconfig import (
    AUTH_CONFIGMAP_PATH,
    AuthConfig,
    AuthConfigError,
    AuthConfigSource,
    AuthFlags,
    build_auth_config,
    names_list,
)
from clustergateway.errors import Forbidden, NotFound
from tests.unit.auth.fakes import FakeHub
from tests.unit.auth.pki import pki
from tests.unit.auth.test_reviews import result


def configmap(**overrides: str) -> dict[str, str]:
    p = pki()
    data = {
        "client-ca-file": p.client_ca.cert_pem.decode(),
        "requestheader-client-ca-file": p.front_ca.cert_pem.decode(),
        "requestheader-allowed-names": json.dumps(["front-proxy-client"]),
        "requestheader-username-headers": json.dumps(["X-Remote-User"]),
        "requestheader-group-headers": json.dumps(["X-Remote-Group"]),
        "requestheader-extra-headers-prefix": json.dumps(["X-Remote-Extra-"]),
    }
    data.update(overrides)
    return data


def test_configmap_alone() -> None:
    """Every setting comes from the ConfigMap when no flag is given."""
    config = build_auth_config(AuthFlags(), configmap())
    p = pki()
    assert config.client_ca.pem == p.client_ca.cert_pem
    rh = config.requestheader
    assert rh.ca.pem == p.front_ca.cert_pem
    assert rh.allowed_names == ("front-proxy-client",)
    assert (rh.username_headers, rh.group_headers, rh.extra_prefixes, rh.uid_headers) == (
        ("X-Remote-User",),
        ("X-Remote-Group",),
        ("X-Remote-Extra-",),
        (),
    )
    assert {c.subject.rfc4514_string() for c in config.trusted_cas()} == {
        "CN=client-ca",
        "CN=front-proxy-ca",
    }


def test_flags_win_field_by_field(tmp_path) -> None:
    """A given flag replaces the ConfigMap's value; the others still come from the ConfigMap."""
    ca_file = tmp_path / "other.crt"
    ca_file.write_bytes(pki().other_ca.cert_pem)
    flags = AuthFlags(
        client_ca_file=str(ca_file),
        requestheader_allowed_names=(),
        requestheader_username_headers=("X-User",),
    )
    config = build_auth_config(
        flags, configmap(**{"requestheader-uid-headers": '["X-Remote-Uid"]'})
    )
    assert config.client_ca.pem == pki().other_ca.cert_pem
    assert config.requestheader.allowed_names == ()
    assert config.requestheader.username_headers == ("X-User",)
    assert config.requestheader.uid_headers == ("X-Remote-Uid",)
    assert config.requestheader.ca.pem == pki().front_ca.cert_pem


def test_flags_alone(tmp_path) -> None:
    """Without a ConfigMap the flags and the defaults decide."""
    front = tmp_path / "front.crt"
    front.write_bytes(pki().front_ca.cert_pem)
    config = build_auth_config(AuthFlags(requestheader_client_ca_file=str(front)), None)
    assert config.client_ca is None
    assert config.requestheader.username_headers == ("X-Remote-User",)
    assert config.requestheader.allowed_names == ()


def test_nothing_configured() -> None:
    """No CA anywhere: no client certificates, no front proxy."""
    assert build_auth_config(AuthFlags(), {}) == AuthConfig()


@pytest.mark.parametrize(
    ("flags", "cm", "message"),
    [
        (
            AuthFlags(client_ca_file="/nonexistent/ca.crt"),
            {},
            "--client-ca-file /nonexistent/ca.crt",
        ),
        (
            AuthFlags(requestheader_client_ca_file="/nonexistent/f.crt"),
            {},
            "--requestheader-client-ca-file /nonexistent/f.crt",
        ),
        (AuthFlags(), {"client-ca-file": "garbage"}, "ConfigMap key client-ca-file"),
        (
            AuthFlags(),
            configmap(**{"requestheader-allowed-names": "front-proxy-client"}),
            "ConfigMap key requestheader-allowed-names: not a JSON list",
        ),
        (
            AuthFlags(),
            configmap(**{"requestheader-group-headers": "[1]"}),
            "requestheader-group-headers: not a JSON list of strings",
        ),
    ],
)
def test_errors_name_their_source(flags, cm, message) -> None:
    """A bad file or ConfigMap value names the flag or key."""
    with pytest.raises(AuthConfigError, match=message.replace("[", r"\[")):
        build_auth_config(flags, cm)


def test_names_list() -> None:
    """Comma-separated flag values, blanks dropped."""
    assert names_list("a, b,,c ") == ("a", "b", "c") and names_list("") == ()


def hub_serving(data):
    def answer(path, body):
        assert path == AUTH_CONFIGMAP_PATH
        if isinstance(data, Exception):
            return data
        return {"kind": "ConfigMap", "data": data[0]}

    return answer


def test_source_load_and_reload_on_change() -> None:
    """The source reads the ConfigMap at load and re-reads it; listeners hear real changes only."""
    clock = Clock()
    current = [configmap()]
    source = AuthConfigSource(AuthFlags(), clock, FakeHub(hub_serving(current)), interval=10)
    seen: list[AuthConfig] = []
    source.subscribe(seen.append)
    result(ensureDeferred(source.load()))
    assert source.current.requestheader.allowed_names == ("front-proxy-client",)
    source.start()
    clock.advance(10)
    assert len(seen) == 1  # unchanged ConfigMap: no second notification
    current[0] = configmap(**{"requestheader-allowed-names": '["aggregator"]'})
    clock.advance(10)
    assert source.current.requestheader.allowed_names == ("aggregator",)
    assert len(seen) == 2
    source.stop()


def test_source_refresh_failure_keeps_the_last_good_config() -> None:
    """A hub error or a broken ConfigMap later on changes nothing."""
    clock = Clock()
    state = [configmap()]
    hub = FakeHub(lambda p, b: state[0] if isinstance(state[0], Exception) else {"data": state[0]})
    source = AuthConfigSource(AuthFlags(), clock, hub, interval=5)
    result(ensureDeferred(source.load()))
    good = source.current
    source.start()
    state[0] = ConnectionRefusedError("down")
    clock.advance(5)
    state[0] = configmap(**{"client-ca-file": "garbage"})
    clock.advance(5)
    assert source.current is good
    source.stop()


def test_missing_configmap_is_not_an_error() -> None:
    """A hub without the ConfigMap (404) leaves the flags alone in charge."""
    source = AuthConfigSource(AuthFlags(), Clock(), FakeHub(lambda p, b: NotFound("nope")))
    assert result(ensureDeferred(source.load())) == AuthConfig()


def test_unreadable_configmap_stops_the_start_unless_tolerated() -> None:
    """Forbidden at start is fatal with a hint; tolerated it falls back to the flags."""
    hub = FakeHub(lambda p, b: Forbidden("configmaps is forbidden"))
    with pytest.raises(AuthConfigError, match="extension-apiserver-authentication-reader"):
        result(ensureDeferred(AuthConfigSource(AuthFlags(), Clock(), hub).load()))
    tolerant = AuthConfigSource(AuthFlags(), Clock(), hub, tolerate_lookup_failure=True)
    assert result(ensureDeferred(tolerant.load())) == AuthConfig()


def test_skip_lookup_reads_no_configmap(tmp_path) -> None:
    """Without a hub client only the flags are read."""
    source = AuthConfigSource(AuthFlags(), Clock(), None)
    assert result(ensureDeferred(source.load())) == AuthConfig()
