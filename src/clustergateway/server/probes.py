"""``/healthz``, ``/livez`` and ``/readyz``: the apiserver's probe endpoints.

Same shape as kube-apiserver: ``ok`` when every check passes; with
``?verbose`` one ``[+]name ok`` / ``[-]name failed: reason`` line per check;
``/readyz/<check>`` runs one check; ``?exclude=<check>`` skips one.  A failing
probe answers 500 with the verbose listing.  Probes need no authentication
(kubelets and load balancers call them).

Checks are plain callables returning None (healthy) or a reason; other parts
add theirs with :meth:`ProbeResource.add_check` (e.g. a shutdown check).
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import parse_qs

import attrs
from twisted.web.iweb import IRequest
from twisted.web.resource import Resource

__all__ = ["Check", "ProbeResource", "ping"]


@attrs.frozen
class Check:
    """A named check: ``run()`` returns None when healthy, else why not."""

    name: str
    run: Callable[[], str | None]


def ping() -> str | None:
    """Always healthy: the process serves requests."""
    return None


class ProbeResource(Resource):
    """One probe endpoint (``healthz``, ``livez`` or ``readyz``) and its checks."""

    isLeaf = True

    def __init__(self, name: str, checks: list[Check] | None = None) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.name = name
        self.checks: list[Check] = list(checks or [Check("ping", ping)])

    def add_check(self, check: Check) -> None:
        self.checks.append(check)

    def render(self, request: IRequest) -> bytes:
        request.responseHeaders.setRawHeaders(b"content-type", [b"text/plain; charset=utf-8"])
        request.responseHeaders.setRawHeaders(b"x-content-type-options", [b"nosniff"])
        request.responseHeaders.setRawHeaders(b"cache-control", [b"no-cache, private"])
        if request.method not in (b"GET", b"HEAD"):
            request.setResponseCode(405)
            return b"method not allowed\n"
        postpath = [p for p in (request.postpath or []) if p]
        if len(postpath) > 1:
            request.setResponseCode(404)
            return b"404 page not found\n"
        if postpath:
            return self._single(request, postpath[0].decode("utf-8", "replace"))
        return self._all(request)

    def _single(self, request: IRequest, name: str) -> bytes:
        for check in self.checks:
            if check.name == name:
                reason = _run(check)
                if reason is None:
                    return b"ok"
                request.setResponseCode(500)
                return f"internal server error: {reason}\n".encode()
        request.setResponseCode(404)
        return b"404 page not found\n"

    def _all(self, request: IRequest) -> bytes:
        # Twisted's request.args drops a bare "?verbose" (no "="): parse the query here.
        query = request.uri.partition(b"?")[2].decode("utf-8", "replace")
        args = parse_qs(query, keep_blank_values=True)
        excluded = set(args.get("exclude", []))
        lines = []
        failed = False
        for check in self.checks:
            if check.name in excluded:
                lines.append(f"[+]{check.name} excluded: ok")
                continue
            reason = _run(check)
            if reason is None:
                lines.append(f"[+]{check.name} ok")
            else:
                failed = True
                lines.append(f"[-]{check.name} failed: {reason}")
        if failed:
            request.setResponseCode(500)
            lines.append(f"{self.name} check failed")
            return ("\n".join(lines) + "\n").encode()
        if "verbose" not in args:
            return b"ok"
        lines.append(f"{self.name} check passed")
        return ("\n".join(lines) + "\n").encode()


def _run(check: Check) -> str | None:
    try:
        return check.run()
    except Exception as e:  # a broken check is a failing check, not a crash
        return f"check raised {type(e).__name__}"
