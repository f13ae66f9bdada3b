"""Take over the byte stream of an HTTP/1.1 connection after its request head.

``twisted.web`` has no public API for HTTP Upgrade (Twisted ticket #3204).  The
gateway's upgrade splice and the simulated cluster's exec/port-forward servers
both need the raw connection once they answer ``101 Switching Protocols``, so this
use of Twisted internals lives in the fence (``clustergateway.fence`` lists the
names), covered by its own tests (twisted-notes §2.1, §2.3).  Pinned to the
Twisted versions in ``pyproject.toml``.

What it does, in order:

1. writes the response head verbatim to the channel's transport (``Request.write``
   would chunk-frame it and invent a ``Content-Type``);
2. frees the transport's producer slot, held by ``HTTPChannel`` since
   ``connectionMade``, so the new protocol can register its own producer;
3. routes the channel's ``dataReceived``/``connectionLost`` to the new protocol
   (the same patch Twisted's own WebSocket server applies) and keeps the
   original ``connectionLost`` so the request's ``notifyFinish`` still fires;
4. hands over the bytes the client sent after the head (parked by the channel
   in ``_dataBuffer`` while the request was being handled, or still in its line
   buffer when the takeover happens inside ``render``) and resumes reading,
   which the channel may have paused after 16 KiB of such bytes.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IProtocol, ITransport
from twisted.python.failure import Failure
from twisted.web.server import Request

__all__ = ["UpgradeNotPossible", "take_over"]


class UpgradeNotPossible(Exception):
    """The request did not arrive on an HTTP/1.1 connection that can be taken over."""


def can_take_over(request: Request) -> bool:
    """True when ``request`` came over HTTP/1.1 on a live connection (not HTTP/2)."""
    channel = request.channel
    return (
        request.clientproto == b"HTTP/1.1"
        and channel is not None
        and getattr(channel, "transport", None) is not None
        and hasattr(channel, "_dataBuffer")
    )


def take_over(request: Request, protocol: IProtocol, head: bytes) -> ITransport:
    """Write ``head`` and give the connection under ``request`` to ``protocol``.

    ``protocol.makeConnection`` is called with the raw (TLS-wrapped, when
    serving TLS) transport; it then receives every byte the client sends,
    starting with any that arrived right after the request head.  When the
    connection ends, ``protocol.connectionLost`` runs, then the channel's own
    cleanup (which errbacks ``request.notifyFinish()``).

    Returns the transport.  Raises :class:`UpgradeNotPossible` for HTTP/2 or a
    connection that is already gone.
    """
    if not can_take_over(request):
        raise UpgradeNotPossible("connection upgrade needs an HTTP/1.1 connection")
    channel: Any = request.channel
    transport: ITransport = channel.transport
    transport.write(head)

    network_producer = getattr(channel, "_networkProducer", None)
    if network_producer is not None:
        network_producer.unregisterProducer()

    original_lost = channel.connectionLost

    def connection_lost(reason: Failure) -> None:
        try:
            protocol.connectionLost(reason)
        finally:
            original_lost(reason)

    channel.dataReceived = protocol.dataReceived
    # When the takeover happens inside render(), the channel's parser (Twisted's
    # line parser, or the gateway's H1Channel) may still hold bytes of the packet
    # that carried the head; it delivers them through rawDataReceived once
    # render() returns.
    channel.rawDataReceived = protocol.dataReceived
    channel.connectionLost = connection_lost
    # The HTTP idle timer is off while a request is handled; make sure it stays
    # off for the life of the upgraded stream.
    channel.setTimeout(None)

    early = b"".join(channel._dataBuffer)
    channel._dataBuffer = []
    protocol.makeConnection(transport)
    producer: Any = transport
    if hasattr(producer, "resumeProducing"):
        producer.resumeProducing()
    if early:
        protocol.dataReceived(early)
    return transport
