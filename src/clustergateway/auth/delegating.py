"""The production request guard: authentication and authorization delegated to the hub.

Authentication tries, in the apiserver's order (``DelegatingAuthenticatorConfig``):

1. front proxy — a client certificate vouched for by the requestheader CA
   with an allowed CN, and the user in the ``X-Remote-*`` headers;
2. client certificate — vouched for by the client CA: CN = user, O = groups;
3. bearer token — ``Authorization: Bearer``, reviewed by the hub (TokenReview).

The first that names a user wins and ``system:authenticated`` is added to its
groups.  ``X-Remote-*`` headers without a front-proxy certificate are never
believed: such a request is authenticated by its certificate or token, or not
at all.  Nobody authenticated → 401 ``Unauthorized`` — except on the
always-allowed health paths, where the caller is ``system:anonymous``.
``Impersonate-*`` headers from a direct caller are then applied like the
apiserver does, each part authorized at the hub
(:mod:`clustergateway.auth.impersonation`).

Authorization is the SubjectAccessReview authorizer
(:class:`~clustergateway.auth.sar.SubjectAccessReviewAuthorizer`).
"""

from __future__ import annotations

from typing import Protocol

import attrs
from twisted.logger import Logger
from twisted.web.iweb import IRequest

from clustergateway.auth.authconfig import AuthConfig
from clustergateway.auth.clientcert import PeerCertificates, user_from_certificate
from clustergateway.auth.guard import RequestAttributes
from clustergateway.auth.impersonation import impersonated_user, requested_impersonation
from clustergateway.auth.requestheader import FrontProxyRejected, front_proxy_user
from clustergateway.auth.sar import SubjectAccessReviewAuthorizer, path_always_allowed
from clustergateway.auth.tokenreview import TokenReviewAuthenticator, bearer_token
from clustergateway.auth.user import ANONYMOUS, UserInfo
from clustergateway.errors import Unauthorized

__all__ = ["DelegatingGuard", "with_authenticated_group"]

AUTHENTICATED = "system:authenticated"
UNAUTHENTICATED = "system:unauthenticated"


def with_authenticated_group(user: UserInfo) -> UserInfo:
    """The apiserver's ``AuthenticatedGroupAdder``: every real user is in system:authenticated."""
    if (
        user.name == ANONYMOUS.name
        or AUTHENTICATED in user.groups
        or UNAUTHENTICATED in user.groups
    ):
        return user
    return attrs.evolve(user, groups=(*user.groups, AUTHENTICATED))


class _ConfigHolder(Protocol):
    """Anything with a ``current`` :class:`AuthConfig` (``AuthConfigSource``)."""

    @property
    def current(self) -> AuthConfig: ...


@attrs.define
class DelegatingGuard:
    """:class:`~clustergateway.auth.guard.RequestGuard` for production.

    ``trust`` supplies the current :class:`AuthConfig` (an
    :class:`~clustergateway.auth.authconfig.AuthConfigSource`, reloaded in the
    background); ``tokens`` is None when bearer tokens are not accepted.
    """

    trust: _ConfigHolder
    authorizer: SubjectAccessReviewAuthorizer
    tokens: TokenReviewAuthenticator | None = None
    peers: PeerCertificates = attrs.field(factory=PeerCertificates)
    _log = Logger()

    async def authenticate(self, request: IRequest) -> UserInfo:
        """The caller — or whom the caller impersonates, once the hub allowed it."""
        caller = await self._caller(request)
        wanted = requested_impersonation(request.requestHeaders)
        if wanted is None:
            return caller
        request.cg_caller = caller  # type: ignore[attr-defined]  # the audit names the real caller too
        return await impersonated_user(caller, wanted, self.authorizer.authorize)

    async def _caller(self, request: IRequest) -> UserInfo:
        config = self.trust.current
        peer = self.peers.of(request)
        problems: list[str] = []

        front = front_proxy_user(peer, request.requestHeaders, config.requestheader)
        if isinstance(front, UserInfo):
            return with_authenticated_group(front)
        if isinstance(front, FrontProxyRejected):
            problems.append(str(front))

        if peer is not None and peer.vouched_by(config.client_ca):
            user = user_from_certificate(peer)
            if user is not None:
                return with_authenticated_group(user)
        elif (
            peer is not None
            and front is None
            and not peer.vouched_by(config.requestheader.ca if config.requestheader else None)
        ):
            # Verified at the handshake by a CA that is no longer trusted.
            problems.append("x509: certificate signed by unknown authority")

        token = bearer_token(request.getHeader(b"authorization"))
        if token is not None and self.tokens is not None:
            try:
                return with_authenticated_group(await self.tokens.authenticate_token(token))
            except Unauthorized:
                problems.append("invalid bearer token")

        path = request.path.decode("utf-8", errors="replace")
        if not problems and path_always_allowed(path, self.authorizer.always_allow_paths):
            return ANONYMOUS
        if problems:
            self._log.debug(
                "Unauthenticated request to {path}: {problems}", path=path, problems=problems
            )
        raise Unauthorized("Unauthorized")

    async def authorize(self, user: UserInfo, attributes: RequestAttributes) -> None:
        await self.authorizer.authorize(user, attributes)

    async def authorize_proxy_target(
        self, user: UserInfo, cluster: str, method: str, subpath: str, query_string: str
    ) -> None:
        """``--authorize-proxy-subpath`` check of the proxied request's target.

        See :meth:`SubjectAccessReviewAuthorizer.authorize_proxy_target`.
        """
        await self.authorizer.authorize_proxy_target(user, cluster, method, subpath, query_string)
