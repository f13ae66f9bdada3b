"""Content negotiation: which representation an ``Accept`` header asks for.

kubectl asks ``application/json;as=Table;v=v1;g=meta.k8s.io,...,application/json``
for ``get``; discovery clients ask for aggregated discovery
(``application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList``, or
``v2beta1`` from kubectl 1.29); controllers may ask for ``PartialObjectMetadata``.
Pure functions over the header text.
"""

from __future__ import annotations

import attrs

__all__ = ["MediaRange", "Representation", "choose_representation", "parse_accept"]

JSON = "application/json"


@attrs.frozen
class MediaRange:
    """One element of an ``Accept`` header: ``type/subtype`` and its parameters."""

    mime: str
    params: tuple[tuple[str, str], ...] = ()

    def param(self, name: str) -> str:
        return dict(self.params).get(name, "")


@attrs.frozen
class Representation:
    """What to send: plain JSON, a meta.k8s.io ``Table``/``PartialObjectMetadata``
    (``as_kind``, ``version``) or an aggregated discovery list."""

    as_kind: str = ""  # "", "Table", "PartialObjectMetadata", "APIGroupDiscoveryList"
    version: str = ""
    content_type: str = JSON


def parse_accept(header: str) -> list[MediaRange]:
    """Split an Accept header into media ranges, parameters lower-cased by name."""
    ranges: list[MediaRange] = []
    for element in header.split(","):
        pieces = [p.strip() for p in element.split(";")]
        if not pieces[0]:
            continue
        params: list[tuple[str, str]] = []
        for piece in pieces[1:]:
            if "=" in piece:
                key, _, value = piece.partition("=")
                params.append((key.strip().lower(), value.strip().strip('"')))
        ranges.append(MediaRange(pieces[0].lower(), tuple(params)))
    return ranges


def _json_compatible(mime: str) -> bool:
    return mime in (JSON, "*/*", "application/*")


def choose_representation(header: str, *, discovery: bool = False) -> Representation | None:
    """The first acceptable representation, or None when only unsupported ones are offered.

    ``discovery`` allows the aggregated discovery form (for ``/api`` and ``/apis``).
    """
    if not header.strip():
        return Representation()
    for media in parse_accept(header):
        if not _json_compatible(media.mime):
            continue
        as_kind = media.param("as")
        group = media.param("g")
        version = media.param("v")
        if not as_kind:
            return Representation()
        if (
            group == "meta.k8s.io"
            and as_kind in ("Table", "PartialObjectMetadata", "PartialObjectMetadataList")
            and version in ("v1", "v1beta1")
        ):
            kind = "Table" if as_kind == "Table" else "PartialObjectMetadata"
            return Representation(kind, version, f"{JSON};as={as_kind};g=meta.k8s.io;v={version}")
        if (
            discovery
            and group == "apidiscovery.k8s.io"
            and as_kind == "APIGroupDiscoveryList"
            and version in ("v2", "v2beta1")
        ):
            return Representation(
                "APIGroupDiscoveryList",
                version,
                f"{JSON};g=apidiscovery.k8s.io;v={version};as=APIGroupDiscoveryList",
            )
    return None
