"""The serving layer's view of caller authentication and authorization.

The Resource tree asks a :class:`RequestGuard` two questions for every request
except the health probes: *who is calling* (:meth:`~RequestGuard.authenticate`)
and *may they do this* (:meth:`~RequestGuard.authorize`, given the
:class:`RequestAttributes` the tree computed from method, path and query).  The
guard raises ``errors.Unauthorized`` / ``errors.Forbidden``; the tree renders
them as ``Status`` objects.

Implementations: :class:`StandaloneGuard` (``--standalone-debug-mode``: every
caller is ``system:admin`` and everything is allowed) and the delegating guard
(requestheader / client certificates / TokenReview + SubjectAccessReview
against the hub) built by the auth layer.
"""

from __future__ import annotations

from typing import Protocol

import attrs
from twisted.web.iweb import IRequest

from clustergateway.auth.user import STANDALONE_ADMIN, UserInfo

__all__ = ["RequestAttributes", "RequestGuard", "StandaloneGuard"]


@attrs.frozen
class RequestAttributes:
    """What a request does, as a ``SubjectAccessReview`` describes it.

    For resource requests (``resource_request``) ``verb`` is a Kubernetes verb
    (``get``, ``list``, ``watch``, ``create``, ``update``, ``patch``,
    ``delete``, ``deletecollection``) and ``api_group``/``api_version``/
    ``resource``/``subresource``/``name`` are set; for non-resource requests
    (``/apis``, ``/openapi/v3``, ``/version`` ...) ``verb`` is the lower-case
    HTTP method and ``path`` is the URL path.  ``path`` is always the raw
    request path (no query).
    """

    verb: str
    path: str
    resource_request: bool = False
    api_group: str = ""
    api_version: str = ""
    resource: str = ""
    subresource: str = ""
    name: str = ""
    namespace: str = ""


class RequestGuard(Protocol):
    """Authenticates callers and authorizes what they ask for."""

    async def authenticate(self, request: IRequest) -> UserInfo:
        """The caller of ``request``; raises ``errors.Unauthorized``."""

    async def authorize(self, user: UserInfo, attributes: RequestAttributes) -> None:
        """Return if ``user`` may do ``attributes``; raise ``errors.Forbidden`` otherwise."""


@attrs.frozen
class StandaloneGuard:
    """``--standalone-debug-mode``: no authentication, no authorization.

    Every caller is :data:`~clustergateway.auth.user.STANDALONE_ADMIN`.  Only
    safe on a loopback address, which ``tap`` enforces.
    """

    user: UserInfo = STANDALONE_ADMIN

    async def authenticate(self, request: IRequest) -> UserInfo:
        return self.user

    async def authorize(self, user: UserInfo, attributes: RequestAttributes) -> None:
        return None
