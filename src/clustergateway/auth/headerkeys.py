"""%-escaping of user "extra" keys carried in HTTP header names.

Kubernetes moves a user's extra attributes in headers named
``<prefix><key>`` (``X-Remote-Extra-`` from the front proxy,
``Impersonate-Extra-`` towards a cluster).  Keys such as
``authentication.kubernetes.io/credential-id`` contain bytes that are not legal
in a header name, so they are %-escaped (RFC 3986) — exactly as client-go's
``headerKeyEscape`` does — and unescaped on receipt like the apiserver's
``unescapeExtraKey``.  Both sides must agree byte for byte, or the managed
cluster sees a different key than the hub authorized.
"""

from __future__ import annotations

import re
from urllib.parse import unquote_to_bytes

__all__ = ["escape_extra_key", "unescape_extra_key"]

# net/http's isTokenTable: the bytes allowed in a header name (RFC 7230 tchar).
_TOKEN_BYTES = frozenset(
    b"!#$&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
)
# A '%' not followed by two hex digits makes Go's url.PathUnescape fail.
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


def escape_extra_key(key: str) -> str:
    """``key`` with every byte outside the header token set (and ``%``) as ``%XX``.

    Same output as client-go ``headerKeyEscape``: upper-case hex, UTF-8 bytes
    escaped one by one, letters keep their case.
    """
    out: list[str] = []
    for byte in key.encode("utf-8"):
        if byte in _TOKEN_BYTES:
            out.append(chr(byte))
        else:
            out.append(f"%{byte:02X}")
    return "".join(out)


def unescape_extra_key(encoded: str) -> str:
    """Decode ``%XX`` escapes; a malformed escape keeps the key as received.

    Matches the apiserver, which records the raw key rather than dropping it
    when ``url.PathUnescape`` fails.  Invalid UTF-8 after decoding is kept as
    replacement characters rather than failing the request.
    """
    if "%" not in encoded:
        return encoded
    if _BAD_ESCAPE.search(encoded):
        return encoded
    return unquote_to_bytes(encoded).decode("utf-8", errors="replace")
