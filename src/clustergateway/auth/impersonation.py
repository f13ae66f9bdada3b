"""Callers impersonating someone at the gateway itself (``kubectl --as`` sent straight to it).

Through the hub this never arrives: kube-apiserver applies ``Impersonate-*``
itself and the aggregator forwards the resulting user in ``X-Remote-*``.  A
client that talks to the gateway directly may send the headers, and the Go
gateway (a generic apiserver) honours them; silently serving the request as
the real caller would be a surprise, so this is the apiserver's impersonation
filter (``WithImpersonation``): every requested attribute is authorized with
a SubjectAccessReview for verb ``impersonate`` —

- ``Impersonate-User``: ``users`` (``serviceaccounts`` in the namespace for
  ``system:serviceaccount:<ns>:<name>``), name = the user;
- each ``Impersonate-Group``: ``groups``;
- ``Impersonate-Uid``: ``authentication.k8s.io/uids``;
- each ``Impersonate-Extra-<key>`` value: ``authentication.k8s.io/userextras/<key>``

— and the request then runs as the impersonated user (``system:authenticated``
added unless a group says otherwise; a service account without groups gets
its ``system:serviceaccounts`` groups).  Groups, uid or extras without a user
are a 400.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import attrs
from twisted.web.http_headers import Headers

from clustergateway.auth.guard import RequestAttributes
from clustergateway.auth.headerkeys import unescape_extra_key
from clustergateway.auth.user import UserInfo
from clustergateway.errors import BadRequest

__all__ = ["ImpersonationRequest", "impersonated_user", "requested_impersonation"]

_EXTRA_PREFIX = b"impersonate-extra-"
_SA_PREFIX = "system:serviceaccount:"
AUTHENTICATED = "system:authenticated"
UNAUTHENTICATED = "system:unauthenticated"
ANONYMOUS = "system:anonymous"


def _text(value: bytes) -> str:
    return value.decode("utf-8", errors="replace")


@attrs.frozen
class ImpersonationRequest:
    """What the ``Impersonate-*`` headers of a request ask for."""

    user: str = ""
    groups: tuple[str, ...] = ()
    uid: str = ""
    extra: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def checks(self) -> list[RequestAttributes]:
        """The ``impersonate`` authorizations the request needs, in the apiserver's order."""
        out: list[RequestAttributes] = []
        namespace, sa_name = _service_account(self.user)
        if sa_name:
            out.append(_impersonate("serviceaccounts", sa_name, namespace=namespace))
        else:
            out.append(_impersonate("users", self.user))
        out.extend(_impersonate("groups", group) for group in self.groups)
        if self.uid:
            out.append(_impersonate("uids", self.uid, group="authentication.k8s.io"))
        for key, values in self.extra:
            out.extend(
                _impersonate("userextras", v, group="authentication.k8s.io", subresource=key)
                for v in values
            )
        return out

    def as_user(self) -> UserInfo:
        """The user the request runs as once every check passed."""
        groups = list(self.groups)
        namespace, sa_name = _service_account(self.user)
        if sa_name and not groups:
            groups = ["system:serviceaccounts", f"system:serviceaccounts:{namespace}"]
        if self.user != ANONYMOUS and not (AUTHENTICATED in groups or UNAUTHENTICATED in groups):
            groups.append(AUTHENTICATED)
        return UserInfo(self.user, groups, self.uid, self.extra)


def _service_account(user: str) -> tuple[str, str]:
    if not user.startswith(_SA_PREFIX):
        return "", ""
    namespace, sep, name = user[len(_SA_PREFIX) :].partition(":")
    if not sep or not namespace or not name or ":" in name:
        return "", ""
    return namespace, name


def _impersonate(
    resource: str, name: str, *, group: str = "", namespace: str = "", subresource: str = ""
) -> RequestAttributes:
    return RequestAttributes(
        verb="impersonate",
        path="",
        resource_request=True,
        api_group=group,
        resource=resource,
        subresource=subresource,
        name=name,
        namespace=namespace,
    )


def requested_impersonation(headers: Headers) -> ImpersonationRequest | None:
    """The ``Impersonate-*`` headers of a request, or None when it has none.

    ``BadRequest`` for groups, uid or extras without ``Impersonate-User``.
    """
    user_values = headers.getRawHeaders(b"impersonate-user") or []
    groups = [_text(v) for v in headers.getRawHeaders(b"impersonate-group") or []]
    uid_values = headers.getRawHeaders(b"impersonate-uid") or []
    extra: dict[str, list[str]] = {}
    for name, values in headers.getAllRawHeaders():
        lowered = name.lower()
        if lowered.startswith(_EXTRA_PREFIX) and len(lowered) > len(_EXTRA_PREFIX):
            key = unescape_extra_key(_text(lowered[len(_EXTRA_PREFIX) :]))
            extra.setdefault(key, []).extend(_text(v) for v in values)
    if not (user_values or groups or uid_values or extra):
        return None
    user = _text(user_values[0]) if user_values else ""
    if not user:
        raise BadRequest(
            "requested impersonation of groups, uid or user extras without impersonating a user"
        )
    uid = _text(uid_values[0]) if uid_values else ""
    return ImpersonationRequest(
        user, tuple(groups), uid, tuple(sorted((k, tuple(v)) for k, v in extra.items()))
    )


async def impersonated_user(
    caller: UserInfo,
    wanted: ImpersonationRequest,
    authorize: Callable[[UserInfo, RequestAttributes], Awaitable[None]],
) -> UserInfo:
    """Authorize every part of ``wanted`` for ``caller`` (raising the 403), then the new user."""
    for attributes in wanted.checks():
        await authorize(caller, attributes)
    return wanted.as_user()
