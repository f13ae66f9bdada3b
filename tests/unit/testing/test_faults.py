"""Fault knobs (clustergateway.testing.faults)."""

from __future__ import annotations

from clustergateway.testing.faults import Faults


def test_deny_wildcards():
    """Deny triples match exactly or through '*'."""
    faults = Faults()
    faults.deny.update({("alice", "get", "pods"), ("*", "delete", "*")})
    assert faults.denies("alice", "get", "pods")
    assert not faults.denies("alice", "list", "pods")
    assert faults.denies("bob", "delete", "secrets")
    assert not faults.denies("bob", "get", "pods")


def test_stall_listeners_and_reset():
    """Listeners hear stall changes at once; reset clears every knob."""
    faults = Faults(latency=1.0, refuse_websocket=True, drop_after_bytes=3)
    heard = []
    faults.stall_listeners.append(heard.append)
    faults.stall = True
    faults.latency = 2.0
    faults.deny.add(("a", "b", "c"))
    faults.reset()
    assert heard == [True, False]
    assert (faults.latency, faults.refuse_websocket, faults.drop_after_bytes, faults.stall) == (
        0.0,
        False,
        None,
        False,
    )
    assert faults.deny == set()
