"""Kubernetes ``Status`` errors: one exception family, rendered in one place.

Every error a caller of the gateway (or of the simulated cluster) sees is a
``meta/v1 Status`` object with the HTTP code that matches its ``reason``.  Code
raises a :class:`StatusError` subclass; :func:`render_status` is the only place
that turns one into bytes on the wire, so no HTML page or traceback ever
reaches a client.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

from twisted.web.iweb import IRequest

__all__ = [
    "AlreadyExists",
    "BadGateway",
    "BadRequest",
    "Conflict",
    "Forbidden",
    "GatewayTimeout",
    "Gone",
    "InternalError",
    "MethodNotAllowed",
    "NotAcceptable",
    "NotFound",
    "RequestEntityTooLarge",
    "ServiceUnavailable",
    "StatusError",
    "TooManyRequests",
    "Unauthorized",
    "UnprocessableEntity",
    "render_status",
    "retry_after",
    "status_body",
    "status_dict",
]


class StatusError(Exception):
    """An error that reaches the caller as a Kubernetes ``Status`` object.

    ``details`` follows ``StatusDetails`` (``name``, ``group``, ``kind``, ``causes`` ...).
    """

    code: ClassVar[int] = 500
    reason: ClassVar[str] = "InternalError"

    def __init__(self, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        """The ``Status`` object as a JSON-ready dict."""
        return status_dict(self.code, self.reason, self.message, self.details)


class BadRequest(StatusError):
    code = 400
    reason = "BadRequest"


class Unauthorized(StatusError):
    code = 401
    reason = "Unauthorized"


class Forbidden(StatusError):
    code = 403
    reason = "Forbidden"


class NotFound(StatusError):
    code = 404
    reason = "NotFound"

    @classmethod
    def for_object(cls, resource: str, group: str, name: str, kind: str = "") -> NotFound:
        """The apiserver's wording: ``<resource>.<group> "<name>" not found``."""
        qualified = f"{resource}.{group}" if group else resource
        details: dict[str, Any] = {"name": name, "group": group, "kind": kind or resource}
        return cls(f'{qualified} "{name}" not found', details)


class MethodNotAllowed(StatusError):
    code = 405
    reason = "MethodNotAllowed"


class NotAcceptable(StatusError):
    code = 406
    reason = "NotAcceptable"


class AlreadyExists(StatusError):
    code = 409
    reason = "AlreadyExists"


class Conflict(StatusError):
    code = 409
    reason = "Conflict"


class Gone(StatusError):
    code = 410
    reason = "Expired"


class RequestEntityTooLarge(StatusError):
    code = 413
    reason = "RequestEntityTooLarge"


class UnprocessableEntity(StatusError):
    code = 422
    reason = "Invalid"


class TooManyRequests(StatusError):
    """A cap on requests in flight was met (details carry ``retryAfterSeconds``)."""

    code = 429
    reason = "TooManyRequests"


class InternalError(StatusError):
    code = 500
    reason = "InternalError"


class BadGateway(StatusError):
    """The upstream cluster could not be reached or answered garbage."""

    code = 502
    reason = "BadGateway"


class ServiceUnavailable(StatusError):
    code = 503
    reason = "ServiceUnavailable"


class GatewayTimeout(StatusError):
    code = 504
    reason = "Timeout"


def status_dict(
    code: int, reason: str, message: str, details: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A ``meta/v1 Status`` of ``status: Failure`` as a dict."""
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details:
        body["details"] = details
    return body


def status_body(error: StatusError) -> bytes:
    """The JSON bytes of ``error``'s Status object."""
    return json.dumps(error.to_dict(), separators=(",", ":")).encode()


def retry_after(error: StatusError) -> bytes | None:
    """The ``Retry-After`` header value for ``error``, or None.

    Set when its details carry ``retryAfterSeconds``, as the apiserver does
    for a Status with that field (a refused unhealthy or unreachable cluster,
    a request over a cap).
    """
    seconds = (error.details or {}).get("retryAfterSeconds")
    if isinstance(seconds, int) and not isinstance(seconds, bool) and seconds > 0:
        return b"%d" % seconds
    return None


def render_status(request: IRequest, error: StatusError) -> bytes:
    """Set code and headers of ``request`` for ``error``; return the body to write.

    Safe to call only before any response header was sent.
    """
    body = status_body(error)
    request.setResponseCode(error.code)
    request.responseHeaders.setRawHeaders(b"content-type", [b"application/json"])
    request.responseHeaders.setRawHeaders(b"content-length", [str(len(body)).encode()])
    retry = retry_after(error)
    if retry is not None:
        request.responseHeaders.setRawHeaders(b"retry-after", [retry])
    return body
