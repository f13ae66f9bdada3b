"""The trust service: first load retried with backoff while /readyz says why; then reloads."""

from __future__ import annotations

from twisted.internet.task import Clock

from clustergateway.auth.authconfig import AuthFlags
from clustergateway.auth.service import AuthSettings, build_delegated_auth
from tests.unit.auth.fakes import FakeHub
from tests.unit.auth.test_authconfig import configmap


def test_first_load_retries_until_the_hub_answers() -> None:
    """A failing first load is retried with growing delays; readiness reports the error."""
    clock = Clock()
    state: list[object] = [ConnectionRefusedError("hub down")]

    def answer(path, body):
        return state[0] if isinstance(state[0], Exception) else {"data": state[0]}

    hub = FakeHub(answer)
    auth = build_delegated_auth(
        clock, AuthSettings(), authentication_hub=hub, authorization_hub=hub
    )
    trusted: list[object] = []
    auth.serve_trust_with(trusted.append)
    assert trusted == [()]  # nothing trusted before the first load
    auth.trust.startService()
    assert not auth.trust.loaded
    assert "hub down" in auth.trust.readiness()
    clock.advance(0.5)
    clock.advance(1.0)
    assert len(hub.calls) == 3
    state[0] = configmap()
    clock.advance(2.0)
    assert auth.trust.loaded and auth.trust.readiness() is None
    assert len(trusted[-1]) == 2  # client CA + front-proxy CA handed to TLS
    calls = len(hub.calls)
    clock.advance(10)  # periodic reload
    assert len(hub.calls) == calls + 1
    auth.trust.stopService()
    clock.advance(60)
    assert len(hub.calls) == calls + 1


def test_skip_lookup_never_asks_the_hub(tmp_path) -> None:
    """--authentication-skip-lookup: the flags alone, loaded at once."""
    ca = tmp_path / "ca.crt"
    ca.write_bytes(configmap()["client-ca-file"].encode())
    hub = FakeHub(lambda p, b: AssertionError("asked the hub"))
    auth = build_delegated_auth(
        Clock(),
        AuthSettings(flags=AuthFlags(client_ca_file=str(ca)), skip_lookup=True),
        authentication_hub=hub,
        authorization_hub=hub,
    )
    auth.trust.startService()
    assert auth.trust.loaded and auth.trust.source.current.client_ca is not None
    assert hub.calls == []
    auth.trust.stopService()


def test_stop_during_retry_cancels_it() -> None:
    """Stopping the service while a retry is pending leaves no timer behind."""
    clock = Clock()
    hub = FakeHub(lambda p, b: ConnectionRefusedError("down"))
    auth = build_delegated_auth(
        clock, AuthSettings(), authentication_hub=hub, authorization_hub=hub
    )
    auth.trust.startService()
    auth.trust.stopService()
    assert clock.getDelayedCalls() == []
