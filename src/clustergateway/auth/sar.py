"""Authorization delegated to the hub with SubjectAccessReview (``authorization.k8s.io/v1``).

As an aggregated apiserver does: paths in ``--authorization-always-allow-paths``
(default ``/healthz``, ``/readyz``, ``/livez``; a trailing ``*`` is a prefix)
and members of ``system:masters`` are allowed locally; everything else is a
SubjectAccessReview at the hub.  Allowed and denied answers are cached for
``--authorization-webhook-cache-authorized-ttl`` and
``--authorization-webhook-cache-unauthorized-ttl`` (10 s each by default);
identical reviews in flight are shared.  A denial is a 403 ``Forbidden``
Status worded like the apiserver's; a hub failure is a 503 (the caller may
retry), logged with its cause.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import attrs
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from clustergateway.auth.guard import RequestAttributes
from clustergateway.auth.reviewcache import ReviewCache
from clustergateway.auth.subpath import target_request_info
from clustergateway.auth.tokenreview import ReviewClient
from clustergateway.auth.user import UserInfo
from clustergateway.errors import Forbidden, ServiceUnavailable

__all__ = [
    "DEFAULT_ALWAYS_ALLOW_PATHS",
    "Decision",
    "SubjectAccessReviewAuthorizer",
    "forbidden",
    "path_always_allowed",
    "review_body",
    "target_attributes",
]

SAR_PATH = "/apis/authorization.k8s.io/v1/subjectaccessreviews"
DEFAULT_ALWAYS_ALLOW_PATHS = ("/healthz", "/readyz", "/livez")
_MASTERS = "system:masters"


@attrs.frozen
class Decision:
    allowed: bool
    reason: str = ""


def review_body(user: UserInfo, attributes: RequestAttributes) -> dict[str, Any]:
    """The SubjectAccessReview for ``user`` doing ``attributes`` (empty fields left out)."""
    spec: dict[str, Any] = {"user": user.name}
    if user.uid:
        spec["uid"] = user.uid
    if user.groups:
        spec["groups"] = list(user.groups)
    if user.extra:
        spec["extra"] = user.extra_dict()
    if attributes.resource_request:
        fields = {
            "namespace": attributes.namespace,
            "verb": attributes.verb,
            "group": attributes.api_group,
            "version": attributes.api_version,
            "resource": attributes.resource,
            "subresource": attributes.subresource,
            "name": attributes.name,
        }
        spec["resourceAttributes"] = {k: v for k, v in fields.items() if v}
    else:
        spec["nonResourceAttributes"] = {"path": attributes.path, "verb": attributes.verb}
    return {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": spec}


def _denial_text(user: UserInfo, attributes: RequestAttributes) -> str:
    if not attributes.resource_request:
        return f'User "{user.name}" cannot {attributes.verb} path "{attributes.path}"'
    resource = attributes.resource
    if attributes.subresource:
        resource += "/" + attributes.subresource
    where = (
        f'in the namespace "{attributes.namespace}"'
        if attributes.namespace
        else "at the cluster scope"
    )
    return (
        f'User "{user.name}" cannot {attributes.verb} resource "{resource}"'
        f' in API group "{attributes.api_group}" {where}'
    )


def forbidden(
    user: UserInfo, attributes: RequestAttributes, reason: str = "", prefix: str = ""
) -> Forbidden:
    """The apiserver's 403: ``<resource>.<group> "<name>" is forbidden: User "u" cannot ...``.

    ``prefix`` replaces the ``<resource> "<name>" is forbidden`` head (used
    for proxy targets, whose resource lives on another cluster).
    """
    text = _denial_text(user, attributes)
    if reason:
        text += ": " + reason
    details: dict[str, Any] = {}
    if prefix:
        head = prefix
    elif attributes.resource_request:
        qualified = attributes.resource
        if attributes.api_group:
            qualified += "." + attributes.api_group
        head = (
            f'{qualified} "{attributes.name}" is forbidden'
            if attributes.name
            else (f"{qualified} is forbidden")
        )
        details = {"group": attributes.api_group, "kind": attributes.resource}
        if attributes.name:
            details["name"] = attributes.name
    else:
        head = "forbidden"
    return Forbidden(f"{head}: {text}", details or None)


def path_always_allowed(path: str, patterns: Iterable[str]) -> bool:
    """``--authorization-always-allow-paths`` matching: exact, or a prefix ending in ``*``."""
    for pattern in patterns:
        if pattern.endswith("*"):
            if path.startswith(pattern[:-1]):
                return True
        elif path == pattern:
            return True
    return False


def target_attributes(method: str, subpath: str, query_string: str = "") -> RequestAttributes:
    """The attributes of a proxied request's target (``--authorize-proxy-subpath``)."""
    info = target_request_info(method, subpath, query_string)
    return RequestAttributes(
        verb=info.verb,
        path=info.path,
        resource_request=info.is_resource_request,
        api_group=info.api_group,
        api_version=info.api_version,
        resource=info.resource,
        subresource=info.subresource,
        name=info.name,
        namespace=info.namespace,
    )


@attrs.define
class SubjectAccessReviewAuthorizer:
    """Asks the hub whether a user may do something; caches the answers."""

    hub: ReviewClient
    clock: IReactorTime
    allowed_ttl: float = 10.0
    denied_ttl: float = 10.0
    always_allow_paths: tuple[str, ...] = DEFAULT_ALWAYS_ALLOW_PATHS
    #: ``(success, seconds)`` of every proxy-target review (the Go metric
    #: ``ocm_proxy_cluster_escalation_access_review_duration_seconds``);
    #: ``success`` is False when the hub could not decide.
    on_target_review: Callable[[bool, float], None] | None = None
    _cache: ReviewCache[tuple[UserInfo, RequestAttributes], Decision] = attrs.field(init=False)
    _log = Logger()

    @_cache.default
    def _make_cache(self) -> ReviewCache[tuple[UserInfo, RequestAttributes], Decision]:
        return ReviewCache(self.clock)

    async def decide(self, user: UserInfo, attributes: RequestAttributes) -> Decision:
        """Allowed or not, and the hub's reason; ``ServiceUnavailable`` if the hub fails."""
        if not attributes.resource_request and path_always_allowed(
            attributes.path, self.always_allow_paths
        ):
            return Decision(True, "always allowed path")
        if _MASTERS in user.groups:
            return Decision(True, "system:masters")
        return await self._cache.get(
            (user, attributes),
            lambda: self._review(user, attributes),
            lambda d: self.allowed_ttl if d.allowed else self.denied_ttl,
        )

    async def authorize(self, user: UserInfo, attributes: RequestAttributes) -> None:
        """Return if allowed; raise the apiserver's 403 ``Forbidden`` otherwise."""
        decision = await self.decide(user, attributes)
        if not decision.allowed:
            raise forbidden(user, attributes, decision.reason)

    async def authorize_proxy_target(
        self, user: UserInfo, cluster: str, method: str, subpath: str, query_string: str
    ) -> None:
        """``--authorize-proxy-subpath``: may ``user`` do the proxied request's target?

        The target is checked at the hub with the verb the managed cluster
        would use (collection GET → ``list``, ``watch=true`` → ``watch``).
        """
        attributes = target_attributes(method, subpath, query_string)
        started = self.clock.seconds()
        try:
            decision = await self.decide(user, attributes)
        except ServiceUnavailable:
            self._observe_target(False, started)
            raise
        self._observe_target(True, started)
        if not decision.allowed:
            raise forbidden(
                user,
                attributes,
                decision.reason,
                prefix=f'proxying to cluster "{cluster}" is forbidden',
            )

    def _observe_target(self, success: bool, started: float) -> None:
        if self.on_target_review is not None:
            self.on_target_review(success, self.clock.seconds() - started)

    async def _review(self, user: UserInfo, attributes: RequestAttributes) -> Decision:
        try:
            answer = await self.hub.post_json(SAR_PATH, review_body(user, attributes))
        except Exception as exc:
            self._log.warn(
                "SubjectAccessReview at the hub failed for {user}: {error}",
                user=user.name,
                error=str(exc),
            )
            raise ServiceUnavailable(
                f"authorization failed: the hub's SubjectAccessReview failed: {str(exc)[:200]}"
            ) from None
        status = answer.get("status") if isinstance(answer, dict) else None
        if not isinstance(status, dict):
            raise ServiceUnavailable("authorization failed: the hub answered without a status")
        reason = status.get("reason") if isinstance(status.get("reason"), str) else ""
        error = status.get("evaluationError")
        if isinstance(error, str) and error:
            self._log.debug("SubjectAccessReview evaluation error: {error}", error=error)
        return Decision(status.get("allowed") is True, reason or "")
