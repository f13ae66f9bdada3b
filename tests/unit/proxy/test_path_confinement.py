"""A proxied path never leaves the cluster's endpoint path (proxy.paths.confine_subpath).

The oracle is an upstream that is as lenient as any server in front of an
apiserver might be: it percent-decodes the path up to three times, treats ``\\``
as ``/``, folds Unicode look-alikes (NFKC), and then removes dot-segments as
RFC 3986 §5.2.4 says.  Whatever :func:`confine_subpath` lets through must still
resolve under the endpoint's path after all of that.
"""

from __future__ import annotations

import unicodedata
from urllib.parse import unquote_to_bytes

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from clustergateway.proxy.paths import PathOutsideEndpoint, confine_subpath, join_path

BASE = b"/k8s/clusters/c-abc"

# Pieces an attacker strings together: dots in every encoding, separators in
# every encoding, NUL, Unicode look-alikes, ordinary Kubernetes path words.
_PIECES = [
    b".",
    b"..",
    b"%2e",
    b"%2E",
    b"%252e",
    b"%25252e",
    b"%c0%ae",
    b"%e0%80%ae",
    b"\xef\xbc\x8e",
    b"%ef%bc%8e",
    b"\xe2\x80\xa4",
    b"/",
    b"//",
    b"%2f",
    b"%2F",
    b"%252f",
    b"\\",
    b"%5c",
    b"%5C",
    b"%255c",
    b"%00",
    b"\x00",
    b"%",
    b"%%",
    b"%zz",
    b"api",
    b"v1",
    b"namespaces",
    b"k8s",
    b"clusters",
    b"other",
    b"caf\xc3\xa9",
    b"a.b",
    b"..a",
    b"a..",
    b"...",
    b"-",
    b"~",
    b";",
    b"%3b",
    b"?",
]
paths = st.lists(st.sampled_from(_PIECES), min_size=1, max_size=12).map(
    lambda parts: b"/" + b"".join(parts)
)


def resolve_leniently(path: bytes, rounds: int) -> bytes:
    """What the most lenient upstream makes of ``path`` after ``rounds`` decodings."""
    for _ in range(rounds):
        path = unquote_to_bytes(path)
    text = unicodedata.normalize("NFKC", path.decode("utf-8", "replace"))
    text = text.replace("\\", "/")
    return remove_dot_segments(text).encode()


def remove_dot_segments(path: str) -> str:
    """RFC 3986 §5.2.4, as a server resolving the request target would."""
    output: list[str] = []
    for segment in path.split("/")[1:]:
        if segment == "..":
            if output:
                output.pop()
        elif segment != ".":
            output.append(segment)
    trailing = path.endswith(("/.", "/.."))
    return "/" + "/".join(output) + ("/" if trailing else "")


@settings(max_examples=3000, deadline=None, derandomize=True)
@given(paths)
@example(b"/.%2e/.%2e/.%2e/k8s/clusters/other/api/v1/namespaces")
@example(b"/..%2f..%2f..%2fk8s/clusters/other")
@example(b"/%252e%252e/%252e%252e/other")
@example(b"/..%5c..%5cother")
@example(b"/\xef\xbc\x8e\xef\xbc\x8e/other")
def test_accepted_paths_stay_under_the_endpoint(subpath: bytes) -> None:
    """Any subpath that is forwarded resolves under the endpoint's path, however decoded."""
    try:
        accepted = confine_subpath(subpath)
    except PathOutsideEndpoint:
        return
    assert accepted == subpath  # forwarded byte for byte, never rewritten
    forwarded = join_path(BASE, accepted)
    for rounds in range(4):
        resolved = resolve_leniently(forwarded, rounds)
        assert resolved == BASE or resolved.startswith(BASE + b"/"), (subpath, rounds, resolved)


@pytest.mark.parametrize(
    "subpath",
    [
        b"/.%2e/.%2e/.%2e/k8s/clusters/other/api/v1/namespaces",
        b"/api/v1/../../../other",
        b"/api/./v1",
        b"/%2e",
        b"/api%2f..%2f..",
        b"/%252e%252e/x",
        b"/..%5cx",
        b"/\xef\xbc\x8e\xef\xbc\x8e/x",
        b"/%c0%ae%c0%ae/x",
        b"/api/v1/namespaces/a%00b",
        b"/x/%2525252e",
    ],
)
def test_escapes_are_refused_with_the_reason(subpath: bytes) -> None:
    """Dot segments in any encoding, NUL, overlong UTF-8 and deep encodings are refused."""
    with pytest.raises(PathOutsideEndpoint, match="segment|NUL|UTF-8|encoded more than"):
        confine_subpath(subpath)


@pytest.mark.parametrize(
    "subpath",
    [
        b"",
        b"/",
        b"/api/v1/namespaces/default/pods/demo/log",
        b"/apis/apps/v1/namespaces/x/deployments/a.b-c",
        b"/api/v1/namespaces/default/configmaps/..a",
        b"/api/v1/namespaces/default/services/web:8080/proxy/static/app.v2.js",
        b"/api/v1/namespaces/a%2Fb",
        b"/api/v1/namespaces/caf\xc3\xa9",
        b"/api//v1/",
    ],
)
def test_kubernetes_paths_pass_unchanged(subpath: bytes) -> None:
    """Everything a Kubernetes client sends passes byte for byte (``%2F`` kept encoded)."""
    assert confine_subpath(subpath) == subpath
