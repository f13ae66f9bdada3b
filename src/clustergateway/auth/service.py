"""Building the delegated authentication/authorization once, and keeping its trust fresh.

``tap`` calls :func:`build_delegated_auth` when the gateway is not in
``--standalone-debug-mode``: it gets the :class:`DelegatingGuard`, the
:class:`TrustService` that loads the hub's
``kube-system/extension-apiserver-authentication`` ConfigMap (merged with the
flags), re-reads it every ``interval`` seconds and hands every new trust to
the serving TLS context, and a readiness check.

A first load that fails (hub unreachable, RBAC missing) is retried with
backoff while ``/readyz`` says why; the Go gateway exits instead, which
restarts the pod into the same error.  With
``--authentication-tolerate-lookup-failure`` the gateway goes on with the
flags alone, as the apiserver does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
from twisted.application.service import Service
from twisted.internet.defer import ensureDeferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from clustergateway.auth.authconfig import AuthConfig, AuthConfigSource, AuthFlags
from clustergateway.auth.delegating import DelegatingGuard
from clustergateway.auth.sar import DEFAULT_ALWAYS_ALLOW_PATHS, SubjectAccessReviewAuthorizer
from clustergateway.auth.tokenreview import ReviewClient, TokenReviewAuthenticator

__all__ = ["AuthSettings", "DelegatedAuth", "TrustService", "build_delegated_auth"]


@attrs.frozen
class AuthSettings:
    """The delegated-auth flags (durations in seconds)."""

    flags: AuthFlags = attrs.field(factory=AuthFlags)
    token_cache_ttl: float = 10.0
    authorized_ttl: float = 10.0
    unauthorized_ttl: float = 10.0
    always_allow_paths: tuple[str, ...] = DEFAULT_ALWAYS_ALLOW_PATHS
    skip_lookup: bool = False
    tolerate_lookup_failure: bool = False
    #: Seconds between re-reads of the ConfigMap and the CA files.
    reload_interval: float = 10.0


@attrs.define(eq=False, slots=False)
class TrustService(Service):
    """Loads the trust at start (retrying), then refreshes it; tells listeners of changes."""

    source: AuthConfigSource
    clock: IReactorTime
    max_backoff: float = 30.0
    loaded: bool = attrs.field(default=False, init=False)
    last_error: str = attrs.field(default="", init=False)
    _retry: IDelayedCall | None = attrs.field(default=None, init=False)
    _backoff: float = attrs.field(default=0.5, init=False)
    _log = Logger()

    def startService(self) -> None:  # noqa: N802 - Twisted's name
        super().startService()  # type: ignore[no-untyped-call]
        self._attempt()

    def _attempt(self) -> None:
        self._retry = None
        ensureDeferred(self._load())

    async def _load(self) -> None:
        try:
            await self.source.load()
        except Exception as exc:
            self.last_error = str(exc)
            if not self.running:
                return
            self._log.error(
                "Cannot load the authentication trust (retrying in {delay}s): {error}",
                delay=self._backoff,
                error=self.last_error,
            )
            self._retry = self.clock.callLater(self._backoff, self._attempt)
            self._backoff = min(self._backoff * 2, self.max_backoff)
            return
        self.loaded = True
        self.last_error = ""
        if self.running:
            self.source.start()

    def stopService(self) -> None:  # noqa: N802 - Twisted's name
        super().stopService()  # type: ignore[no-untyped-call]
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
        self.source.stop()

    def readiness(self) -> str | None:
        """For ``/readyz``: None once loaded, else why not."""
        if self.loaded:
            return None
        reason = self.last_error or "not loaded yet"
        return f"the authentication trust (extension-apiserver-authentication): {reason}"


@attrs.frozen
class DelegatedAuth:
    """What ``tap`` wires: the guard, the trust service, the proxy's target check."""

    guard: DelegatingGuard
    trust: TrustService

    def serve_trust_with(self, set_trust: Callable[[Any], None]) -> None:
        """Call ``set_trust(cas)`` (``ServerTLS.set_trust``) now and on every change."""

        def apply(config: AuthConfig) -> None:
            set_trust(config.trusted_cas())

        apply(self.trust.source.current)
        self.trust.source.subscribe(apply)


def build_delegated_auth(
    reactor: IReactorTime,
    settings: AuthSettings,
    *,
    authentication_hub: Any,
    authorization_hub: ReviewClient,
) -> DelegatedAuth:
    """The delegating guard over the given hub clients (TokenReview + ConfigMap, SAR)."""
    source = AuthConfigSource(
        settings.flags,
        reactor,
        None if settings.skip_lookup else authentication_hub,
        interval=settings.reload_interval,
        tolerate_lookup_failure=settings.tolerate_lookup_failure,
    )
    authorizer = SubjectAccessReviewAuthorizer(
        authorization_hub,
        reactor,
        allowed_ttl=settings.authorized_ttl,
        denied_ttl=settings.unauthorized_ttl,
        always_allow_paths=settings.always_allow_paths,
    )
    tokens = TokenReviewAuthenticator(authentication_hub, reactor, ttl=settings.token_cache_ttl)
    guard = DelegatingGuard(trust=source, authorizer=authorizer, tokens=tokens)
    return DelegatedAuth(guard, TrustService(source, reactor))
