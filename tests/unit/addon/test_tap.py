"""The addon-manager's command line: Go's flags, one-line refusals, the twistd plugin."""

from __future__ import annotations

import pytest
from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock
from twisted.python import usage

from clustergateway.addon.tap import AddonManagerConfig, Options, build_service


def _parse(args, monkeypatch, namespace="addon-ns"):
    if namespace is None:
        monkeypatch.delenv("NAMESPACE", raising=False)
    else:
        monkeypatch.setenv("NAMESPACE", namespace)
    options = Options()
    options.parseOptions(args)
    return options.config


def test_go_chart_arguments(monkeypatch):
    """The chart's ``--leader-elect=true`` and Go's defaults (:48080, :48081, the signer)."""
    config = _parse(["--leader-elect=true", "-v", "4"], monkeypatch)
    assert config.leader_elect is True
    assert (config.metrics_bind_address, config.health_probe_bind_address) == (
        ":48080",
        ":48081",
    )
    assert config.signer_secret_name == "cluster-gateway-signer"
    assert config.namespace == "addon-ns"
    assert _parse(["--leader-elect=false"], monkeypatch).leader_elect is False


def test_namespace_required_outside_a_pod(monkeypatch):
    """No NAMESPACE, no --namespace, no service-account file: Go's fatal message."""
    with pytest.raises(usage.UsageError, match="specify NAMESPACE"):
        _parse([], monkeypatch, namespace=None)
    assert _parse(["--namespace=ns2"], monkeypatch, namespace=None).namespace == "ns2"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--metrics-bind-address=nowhere"], "--metrics-bind-address"),
        (["--probe-interval=-1"], "--probe-interval: must be positive"),
        (["--leader-elect=maybe"], "--leader-elect"),
    ],
)
def test_bad_flags_name_the_flag(args, message, monkeypatch):
    with pytest.raises(usage.UsageError, match=message):
        _parse(args, monkeypatch)


def test_twistd_plugin_is_found():
    """``twistd cluster-gateway-addon-manager`` resolves to this module's Options."""
    from twisted.application.service import IServiceMaker
    from twisted.plugin import getPlugins

    import twisted.plugins

    makers = {p.tapname: p for p in getPlugins(IServiceMaker, twisted.plugins)}
    maker = makers["cluster-gateway-addon-manager"]
    assert maker.options.__module__ == "clustergateway.addon.tap"
    assert "clustergateway" in makers


class _StopsLater(Service):
    """A service whose stop waits for the test, as a pass or a Lease release waits on I/O."""

    def __init__(self) -> None:
        self.stopping: Deferred[None] = Deferred()

    def stopService(self) -> Deferred[None]:  # noqa: N802 - Twisted's name
        super().stopService()
        return self.stopping


def test_stop_finishes_on_a_turn_of_its_own(hub):
    """The manager's stop fires from the reactor, not from inside the callback that ended
    its last part (a hub connection's dataReceived): twistd's disconnectAll comes next and
    must not tear that connection down under its own dataReceived."""
    clock = MemoryReactorClock()
    config = AddonManagerConfig(
        namespace="addon-ns", metrics_bind_address="0", health_probe_bind_address="0"
    )
    manager = build_service(clock, config, hub=hub)
    manager.leading = MultiService()
    part = _StopsLater()
    part.setServiceParent(manager.leading)
    manager.startService()
    stopped = manager.stopService()
    part.stopping.callback(None)
    assert not stopped.called
    clock.advance(0)
    assert stopped.called
