"""Bearer tokens, authenticated by the hub with a TokenReview (``authentication.k8s.io/v1``).

Callers that reach the gateway directly (not through the hub's aggregator)
may present ``Authorization: Bearer <token>``; the hub says whose token it
is.  Answers — "this user" and "not a valid token" alike — are cached for
``--authentication-token-webhook-cache-ttl`` (default 10 s, as in the
apiserver), keyed by the token's SHA-256 so the raw token is not kept as a
key; concurrent requests with the same token share one review.  Hub errors
are not cached.  No token ever appears in a log line or an error message.
"""

from __future__ import annotations

import hashlib
from typing import Any, Protocol

import attrs
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from clustergateway.auth.reviewcache import ReviewCache
from clustergateway.auth.user import UserInfo
from clustergateway.errors import Unauthorized

__all__ = ["ReviewClient", "TokenReviewAuthenticator", "bearer_token", "user_from_review"]

TOKEN_REVIEW_PATH = "/apis/authentication.k8s.io/v1/tokenreviews"


class ReviewClient(Protocol):
    """The part of the hub client the reviews need."""

    async def post_json(self, path: str, body: Any) -> Any: ...


def bearer_token(authorization: bytes | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` value, like the apiserver reads it.

    Scheme case-insensitive; surrounding whitespace ignored; a third
    space-separated part is ignored as in Go's ``SplitN(auth, " ", 3)``.
    """
    if not authorization:
        return None
    try:
        text = authorization.decode("ascii").strip()
    except UnicodeDecodeError:
        return None
    parts = text.split(" ", 2)
    if len(parts) < 2 or parts[0].lower() != "bearer" or not parts[1]:
        return None
    return parts[1]


def user_from_review(status: Any) -> UserInfo | None:
    """The user of a TokenReview ``status``, or None if not authenticated."""
    if not isinstance(status, dict) or status.get("authenticated") is not True:
        return None
    user = status.get("user") or {}
    name = user.get("username") if isinstance(user, dict) else None
    if not isinstance(name, str) or not name:
        return None
    groups = [g for g in user.get("groups") or [] if isinstance(g, str)]
    raw_uid = user.get("uid")
    uid = raw_uid if isinstance(raw_uid, str) else ""
    extra_raw = user.get("extra") or {}
    extra = {
        str(k): [v for v in vs if isinstance(v, str)]
        for k, vs in (extra_raw.items() if isinstance(extra_raw, dict) else [])
        if isinstance(vs, list)
    }
    return UserInfo(name, groups, uid, extra)


@attrs.define
class TokenReviewAuthenticator:
    """Authenticates bearer tokens at the hub, with a TTL cache and shared lookups."""

    hub: ReviewClient
    clock: IReactorTime
    ttl: float = 10.0
    audiences: tuple[str, ...] = ()
    _cache: ReviewCache[bytes, UserInfo | None] = attrs.field(init=False)
    _log = Logger()

    @_cache.default
    def _make_cache(self) -> ReviewCache[bytes, UserInfo | None]:
        return ReviewCache(self.clock)

    async def authenticate_token(self, token: str) -> UserInfo:
        """The token's user; ``Unauthorized`` for a token the hub rejects or cannot check."""
        key = hashlib.sha256(token.encode()).digest()
        user = await self._cache.get(key, lambda: self._review(token), lambda _: self.ttl)
        if user is None:
            raise Unauthorized("Unauthorized")
        return user

    async def _review(self, token: str) -> UserInfo | None:
        spec: dict[str, Any] = {"token": token}
        if self.audiences:
            spec["audiences"] = list(self.audiences)
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": spec}
        try:
            answer = await self.hub.post_json(TOKEN_REVIEW_PATH, body)
        except Exception as exc:
            # The exception text comes from the hub client, never from the body we sent.
            self._log.warn("TokenReview at the hub failed: {error}", error=str(exc))
            raise Unauthorized("Unauthorized: the token could not be reviewed") from None
        status = answer.get("status") if isinstance(answer, dict) else None
        user = user_from_review(status)
        if user is None and isinstance(status, dict) and status.get("error"):
            self._log.debug("Token rejected by the hub: {error}", error=str(status["error"]))
        return user
