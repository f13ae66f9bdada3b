"""The hub's review APIs: TokenReview, SubjectAccessReview and their ``Self*`` forms.

The gateway delegates caller authentication and authorization to the hub; these
answer the way kube-apiserver does and are pure functions of the review body, the
token table and the policy.  The server records each review so tests can assert
how often the gateway asked (caching).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from clustergateway.auth.user import UserInfo
from clustergateway.errors import BadRequest
from clustergateway.testing.simauth import TokenAuthenticator

__all__ = [
    "SarPolicy",
    "access_review",
    "self_access_review",
    "self_subject_review",
    "token_review",
]

#: ``policy(spec) -> (allowed, reason)`` for a SubjectAccessReview spec.
SarPolicy = Callable[[dict[str, Any]], tuple[bool, str]]


def _user_dict(user: UserInfo) -> dict[str, Any]:
    info: dict[str, Any] = {"username": user.name, "groups": list(user.groups)}
    if user.uid:
        info["uid"] = user.uid
    if user.extra:
        info["extra"] = user.extra_dict()
    return info


def _check_body(body: Any, kind: str, api_version: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise BadRequest(f"the body of a {kind} must be a JSON object")
    if body.get("kind", kind) != kind or body.get("apiVersion", api_version) != api_version:
        raise BadRequest(
            f"expected {api_version} {kind}, got {body.get('apiVersion')} {body.get('kind')}"
        )
    spec = body.get("spec")
    if spec is None:
        spec = {}
    if not isinstance(spec, dict):
        raise BadRequest(f"{kind}.spec must be a JSON object")
    return spec


def _answer(
    body: dict[str, Any], kind: str, api_version: str, spec: Any, status: Any
) -> dict[str, Any]:
    metadata = dict(body.get("metadata") or {})
    metadata.setdefault("creationTimestamp", None)
    return {
        "kind": kind,
        "apiVersion": api_version,
        "metadata": metadata,
        "spec": spec,
        "status": status,
    }


def token_review(body: Any, tokens: TokenAuthenticator) -> dict[str, Any]:
    """Answer a ``TokenReview``: authenticated with the token's user, or not."""
    api_version = "authentication.k8s.io/v1"
    spec = _check_body(body, "TokenReview", api_version)
    token = spec.get("token")
    if not isinstance(token, str) or not token:
        raise BadRequest("TokenReview.spec.token: Required value")
    user = tokens.lookup(token)
    status: dict[str, Any]
    if user is None:
        status = {"authenticated": False, "user": {}, "error": "invalid bearer token"}
    else:
        status = {"authenticated": True, "user": _user_dict(user)}
        if spec.get("audiences"):
            status["audiences"] = list(spec["audiences"])
    return _answer(body, "TokenReview", api_version, spec, status)


def access_review(body: Any, policy: SarPolicy) -> dict[str, Any]:
    """Answer a ``SubjectAccessReview`` with ``policy``."""
    api_version = "authorization.k8s.io/v1"
    spec = _check_body(body, "SubjectAccessReview", api_version)
    has_resource = isinstance(spec.get("resourceAttributes"), dict)
    has_path = isinstance(spec.get("nonResourceAttributes"), dict)
    if has_resource == has_path:
        raise BadRequest(
            "SubjectAccessReview.spec: exactly one of nonResourceAttributes or"
            " resourceAttributes must be specified"
        )
    if not spec.get("user") and not spec.get("groups"):
        raise BadRequest(
            "SubjectAccessReview.spec: at least one of user or group must be specified"
        )
    allowed, reason = policy(spec)
    status: dict[str, Any] = {"allowed": bool(allowed)}
    if reason:
        status["reason"] = reason
    return _answer(body, "SubjectAccessReview", api_version, spec, status)


def self_access_review(body: Any, user: UserInfo, policy: SarPolicy) -> dict[str, Any]:
    """Answer a ``SelfSubjectAccessReview`` for the calling ``user``."""
    api_version = "authorization.k8s.io/v1"
    spec = _check_body(body, "SelfSubjectAccessReview", api_version)
    full = {**spec, "user": user.name, "groups": list(user.groups)}
    if user.uid:
        full["uid"] = user.uid
    if user.extra:
        full["extra"] = user.extra_dict()
    allowed, reason = policy(full)
    status: dict[str, Any] = {"allowed": bool(allowed)}
    if reason:
        status["reason"] = reason
    return _answer(body, "SelfSubjectAccessReview", api_version, spec, status)


def self_subject_review(body: Any, user: UserInfo) -> dict[str, Any]:
    """Answer a ``SelfSubjectReview`` (``kubectl auth whoami``)."""
    api_version = "authentication.k8s.io/v1"
    if not isinstance(body, dict):
        raise BadRequest("the body of a SelfSubjectReview must be a JSON object")
    answer = _answer(body, "SelfSubjectReview", api_version, None, {"userInfo": _user_dict(user)})
    answer.pop("spec")
    return answer
