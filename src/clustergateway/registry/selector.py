"""Kubernetes label selectors (``?labelSelector=``): parse once, match many.

The grammar of ``k8s.io/apimachinery/pkg/labels.Parse``: comma-separated
requirements ``key``, ``!key``, ``key=v``, ``key==v``, ``key!=v``,
``key in (a,b)``, ``key notin (a,b)``, ``key>n``, ``key<n``.  ``!=`` and
``notin`` also match objects without the key, as in Kubernetes.  A bad
selector raises :class:`~clustergateway.errors.BadRequest`, which the API
layer renders as the apiserver's 400.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping

import attrs

from clustergateway import errors

__all__ = ["LabelSelector", "Requirement", "parse_selector"]

_NAME = r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)"
_KEY_RE = re.compile(
    rf"^(([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*)/)?{_NAME}$"
)
_VALUE_RE = re.compile(rf"^({_NAME})?$")
_TOKEN_RE = re.compile(r"\s*(==|!=|=|!|\(|\)|,|>|<|[^\s=!(),<>]+)")


@attrs.frozen
class Requirement:
    """One requirement: ``operator`` is one of ``exists``, ``!``, ``=``, ``!=``,
    ``in``, ``notin``, ``>``, ``<``."""

    key: str
    operator: str
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        op = self.operator
        if op == "exists":
            return present
        if op == "!":
            return not present
        if op in ("=", "in"):
            return present and value in self.values
        if op in ("!=", "notin"):
            return not present or value not in self.values
        # > and <: both sides integers, else no match (as Kubernetes).
        try:
            have, want = int(value or ""), int(next(iter(self.values)))
        except ValueError:
            return False
        return have > want if op == ">" else have < want


@attrs.frozen
class LabelSelector:
    """All requirements must hold (AND); the empty selector matches everything."""

    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(r.matches(labels) for r in self.requirements)

    def without_key(self, key: str) -> LabelSelector:
        """The selector minus every requirement on ``key``."""
        return LabelSelector(tuple(r for r in self.requirements if r.key != key))

    @property
    def empty(self) -> bool:
        return not self.requirements


def _tokens(text: str) -> Iterator[str]:
    pos = 0
    while pos < len(text):
        match = _TOKEN_RE.match(text, pos)
        if match is None or match.end() == pos:
            if text[pos:].strip() == "":
                return
            raise _bad(text, "unexpected character")
        pos = match.end()
        yield match.group(1)


def _bad(text: str, why: str) -> errors.BadRequest:
    return errors.BadRequest(f"unable to parse requirement: {why} in label selector {text!r}")


def _check_key(text: str, key: str) -> str:
    if len(key) > 316 or not _KEY_RE.match(key) or len(key.rpartition("/")[2]) > 63:
        raise _bad(text, f"invalid label key {key!r}")
    return key


def _check_value(text: str, value: str) -> str:
    if len(value) > 63 or not _VALUE_RE.match(value):
        raise _bad(text, f"invalid label value {value!r}")
    return value


def parse_selector(text: str | None) -> LabelSelector:
    """Parse a ``labelSelector`` query value (``None``/empty → match everything)."""
    if not text or not text.strip():
        return LabelSelector()
    tokens = list(_tokens(text))
    requirements: list[Requirement] = []
    i = 0

    def take() -> str:
        nonlocal i
        if i >= len(tokens):
            raise _bad(text, "unexpected end")
        i += 1
        return tokens[i - 1]

    def peek() -> str | None:
        return tokens[i] if i < len(tokens) else None

    while True:
        token = take()
        if token == "!":
            requirements.append(Requirement(_check_key(text, take()), "!"))
        else:
            key = _check_key(text, token)
            op = peek()
            if op is None or op == ",":
                requirements.append(Requirement(key, "exists"))
            elif op in ("=", "==", "!="):
                take()
                nxt = peek()
                value = "" if nxt in (None, ",") else take()
                operator = "!=" if op == "!=" else "="
                requirements.append(
                    Requirement(key, operator, frozenset({_check_value(text, value)}))
                )
            elif op in (">", "<"):
                take()
                value = take()
                if not re.fullmatch(r"-?[0-9]+", value):
                    raise _bad(text, f"for {op} the value must be an integer, got {value!r}")
                requirements.append(Requirement(key, op, frozenset({value})))
            elif op in ("in", "notin"):
                take()
                if take() != "(":
                    raise _bad(text, f"expected '(' after {op}")
                values: set[str] = set()
                expect_value = True
                while True:
                    tok = take()
                    if tok == ")":
                        if expect_value and values:
                            values.add("")  # "a,)" has a trailing empty value
                        break
                    if tok == ",":
                        if expect_value:
                            values.add("")
                        expect_value = True
                        continue
                    if not expect_value:
                        raise _bad(text, "expected ',' or ')'")
                    values.add(_check_value(text, tok))
                    expect_value = False
                if not values:
                    raise _bad(text, f"for {op!r}, the set of values can't be empty")
                requirements.append(Requirement(key, op, frozenset(values)))
            else:
                raise _bad(text, f"unexpected {op!r} after key {key!r}")
        sep = peek()
        if sep is None:
            break
        if take() != ",":
            raise _bad(text, "expected ','")
    return LabelSelector(tuple(requirements))
