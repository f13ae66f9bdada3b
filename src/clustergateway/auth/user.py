"""Who is calling: the authenticated user a request carries through the gateway."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import attrs

__all__ = ["UserInfo", "ANONYMOUS", "STANDALONE_ADMIN"]


def _tuple(value: Iterable[str]) -> tuple[str, ...]:
    return tuple(value)


def _extra(
    value: Mapping[str, Iterable[str]] | Iterable[tuple[str, Iterable[str]]],
) -> tuple[tuple[str, tuple[str, ...]], ...]:
    items = value.items() if isinstance(value, Mapping) else value
    return tuple(sorted((str(k), tuple(v)) for k, v in items))


@attrs.frozen
class UserInfo:
    """A caller as Kubernetes describes one (``user.Info``).

    ``extra`` is a sorted tuple of ``(key, values)`` so the value hashes and can
    key caches; build it from a dict freely.
    """

    name: str
    groups: tuple[str, ...] = attrs.field(default=(), converter=_tuple)
    uid: str = ""
    extra: tuple[tuple[str, tuple[str, ...]], ...] = attrs.field(default=(), converter=_extra)

    def extra_dict(self) -> dict[str, list[str]]:
        return {k: list(v) for k, v in self.extra}


ANONYMOUS = UserInfo("system:anonymous", ("system:unauthenticated",))

#: The caller every request is served as in ``--standalone-debug-mode``.
STANDALONE_ADMIN = UserInfo("system:admin", ("system:masters", "system:authenticated"))
