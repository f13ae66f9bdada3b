"""Fault knobs of the simulated cluster: tests flip them to see how clients cope.

One :class:`Faults` object is shared by the whole simulator (REST core and pod
streams).  Changing ``stall`` notifies listeners at once so paused connections
resume the moment a test clears it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

__all__ = ["Faults"]


def _notify(instance: Faults, attribute: attrs.Attribute[Any], value: Any) -> Any:
    if attribute.name == "stall":
        for listener in list(instance.stall_listeners):
            listener(bool(value))
    return value


@attrs.define(on_setattr=[attrs.setters.validate, _notify])
class Faults:
    """Settable misbehaviours.

    - ``latency``: seconds added before every response (and every upgrade answer).
    - ``refuse_websocket``: requests with ``Upgrade: websocket`` get a 403 ``Status``,
      so kubectl falls back to SPDY.
    - ``drop_after_bytes``: cut the connection after this many response-body bytes
      (``None``: never).
    - ``stall``: stop reading from and writing to every connection (new requests
      hang) until cleared.
    - ``deny``: ``(user, verb, resource)`` triples refused with 403 and denied by the
      default SubjectAccessReview policy; ``"*"`` matches anything in a position.
    """

    latency: float = 0.0
    refuse_websocket: bool = False
    drop_after_bytes: int | None = None
    stall: bool = False
    deny: set[tuple[str, str, str]] = attrs.field(factory=set)
    stall_listeners: list[Callable[[bool], None]] = attrs.field(factory=list, repr=False)

    def denies(self, user: str, verb: str, resource: str) -> bool:
        """True when ``deny`` holds a triple matching the request (``*`` wildcards)."""
        for d_user, d_verb, d_resource in self.deny:
            if d_user in ("*", user) and d_verb in ("*", verb) and d_resource in ("*", resource):
                return True
        return False

    def reset(self) -> None:
        """Back to a well-behaved cluster."""
        self.latency = 0.0
        self.refuse_websocket = False
        self.drop_after_bytes = None
        self.stall = False
        self.deny.clear()
