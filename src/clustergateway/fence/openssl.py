"""OpenSSL calls that pyOpenSSL does not wrap, made through its binding.

pyOpenSSL exposes its cffi binding of libssl as ``OpenSSL._util.lib`` (with
``ffi``) and the ``SSL*`` of a ``Connection`` as ``Connection._ssl``; neither
is public.  ``fence.tlssocket`` reads and writes through them; this module
holds the one other call, for ``proxy.tls``.
"""

from __future__ import annotations

from typing import Any

from OpenSSL._util import lib as _lib

__all__ = ["verify_result"]


def verify_result(connection: Any) -> int:
    """OpenSSL's ``SSL_get_verify_result`` for a pyOpenSSL ``Connection`` (0: verified).

    pyOpenSSL has no ``get_verify_result``; the verify callback cannot stand in,
    since Twisted checks the host name in it.
    """
    return int(_lib.SSL_get_verify_result(connection._ssl))
