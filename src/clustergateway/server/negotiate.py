"""Content negotiation for API responses: JSON, YAML, Table, PartialObjectMetadata.

Clients say what they want in ``Accept``:

* kubectl ``get``: ``application/json;as=Table;v=v1;g=meta.k8s.io,
  application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json``;
* metadata informers: ``application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io``;
* everything else: ``application/json`` (``-o yaml`` also asks JSON), sometimes
  with protobuf first, which we do not speak and skip.

The first acceptable entry (by ``q``, then order) wins, as in the apiserver.
"""

from __future__ import annotations

from typing import Literal

import attrs

from clustergateway import errors

__all__ = ["Representation", "negotiate", "parse_accept"]

Format = Literal["json", "yaml", "table", "partial"]

_META_VERSIONS = ("v1", "v1beta1")
_SUPPORTED = (
    "application/json, application/yaml, "
    "application/json;as=Table;v=v1;g=meta.k8s.io, "
    "application/json;as=PartialObjectMetadata;v=v1;g=meta.k8s.io"
)


@attrs.frozen
class Representation:
    """What to send: ``format`` and, for Table/PartialObjectMetadata, the meta version."""

    format: Format = "json"
    version: str = "v1"

    @property
    def content_type(self) -> bytes:
        if self.format == "yaml":
            return b"application/yaml"
        if self.format == "table":
            return f"application/json;as=Table;v={self.version};g=meta.k8s.io".encode()
        if self.format == "partial":
            return (
                f"application/json;as=PartialObjectMetadata;v={self.version};g=meta.k8s.io".encode()
            )
        return b"application/json"


JSON = Representation()


@attrs.frozen
class MediaRange:
    type: str
    subtype: str
    params: dict[str, str] = attrs.field(hash=False)
    q: float = 1.0


def parse_accept(header: str) -> list[MediaRange]:
    """The media ranges of an ``Accept`` header, best first (stable on equal ``q``)."""
    ranges: list[MediaRange] = []
    for item in header.split(","):
        item = item.strip()
        if not item:
            continue
        kind, *raw_params = (part.strip() for part in item.split(";"))
        main, _, sub = kind.lower().partition("/")
        params: dict[str, str] = {}
        q = 1.0
        for raw in raw_params:
            key, _, value = raw.partition("=")
            key, value = key.strip().lower(), value.strip().strip('"')
            if key == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
            elif key:
                params[key] = value
        if q > 0:
            ranges.append(MediaRange(main, sub or "*", params, q))
    ranges.sort(key=lambda r: -r.q)
    return ranges


def _representation(media: MediaRange, allowed: frozenset[Format]) -> Representation | None:
    if media.type == "*" or (media.type == "application" and media.subtype == "*"):
        return JSON if "json" in allowed else None
    if media.type != "application":
        return None
    if media.subtype == "yaml":
        return Representation("yaml") if "yaml" in allowed else None
    if media.subtype != "json":
        return None
    as_kind = media.params.get("as")
    if as_kind is None:
        return JSON if "json" in allowed else None
    if media.params.get("g") != "meta.k8s.io" or media.params.get("v") not in _META_VERSIONS:
        return None
    version = media.params["v"]
    if as_kind == "Table" and "table" in allowed:
        return Representation("table", version)
    if as_kind in ("PartialObjectMetadata", "PartialObjectMetadataList") and "partial" in allowed:
        return Representation("partial", version)
    return None


def negotiate(
    accept: bytes | None,
    allowed: frozenset[Format] = frozenset({"json", "yaml", "table", "partial"}),
) -> Representation:
    """The representation to answer with; ``errors.NotAcceptable`` if none fits."""
    if not accept or not accept.strip():
        return JSON
    for media in parse_accept(accept.decode("latin-1")):
        found = _representation(media, allowed)
        if found is not None:
            return found
    raise errors.NotAcceptable(f"only the following media types are accepted: {_SUPPORTED}")
