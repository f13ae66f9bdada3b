"""Label and field selectors, parsed and matched like the apiserver does.

Pure functions: a selector string becomes a tuple of requirements once, then
matches many objects.  Syntax errors raise :class:`SelectorError`, which the
server turns into a 400 ``Status``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import attrs

__all__ = [
    "FieldRequirement",
    "LabelRequirement",
    "SelectorError",
    "field_value",
    "matches_fields",
    "matches_labels",
    "parse_field_selector",
    "parse_label_selector",
]

_KEY = re.compile(
    r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)
_VALUE = re.compile(r"^(([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?)$")


class SelectorError(ValueError):
    """A selector string that does not parse."""


@attrs.frozen
class LabelRequirement:
    """One clause of a label selector: ``key <op> values``."""

    key: str
    operator: str  # "=", "!=", "in", "notin", "exists", "!exists", "gt", "lt"
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        op = self.operator
        if op == "exists":
            return present
        if op == "!exists":
            return not present
        if op in ("=", "in"):
            return present and value in self.values
        if op in ("!=", "notin"):
            return not present or value not in self.values
        if op in ("gt", "lt"):
            try:
                have = int(value)  # type: ignore[arg-type]
            except (TypeError, ValueError):
                return False
            want = int(self.values[0])
            return have > want if op == "gt" else have < want
        raise AssertionError(op)


@attrs.frozen
class FieldRequirement:
    """One clause of a field selector: ``field = value`` or ``field != value``."""

    field: str
    operator: str  # "=" or "!="
    value: str


def _split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside parentheses."""
    parts: list[str] = []
    depth = 0
    current: list[str] = []
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise SelectorError(f"unbalanced parentheses in {text!r}")
        if ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    if depth != 0:
        raise SelectorError(f"unbalanced parentheses in {text!r}")
    parts.append("".join(current))
    return parts


def _check_key(key: str, selector: str) -> str:
    if not _KEY.match(key) or len(key.rsplit("/", 1)[-1]) > 63:
        raise SelectorError(f"invalid label key {key!r} in selector {selector!r}")
    return key


def _check_value(value: str, selector: str) -> str:
    if len(value) > 63 or not _VALUE.match(value):
        raise SelectorError(f"invalid label value {value!r} in selector {selector!r}")
    return value


_SET_CLAUSE = re.compile(r"^\s*(\S+)\s+(in|notin)\s*\((.*)\)\s*$")
_CMP_CLAUSE = re.compile(r"^\s*([^=!<>\s]+)\s*(==|=|!=|<|>)\s*(.*?)\s*$")


def parse_label_selector(selector: str) -> tuple[LabelRequirement, ...]:
    """Parse ``a=b,c!=d,e in (f,g),!h,i`` into requirements (empty string: everything)."""
    if not selector.strip():
        return ()
    requirements: list[LabelRequirement] = []
    for clause in _split_top_level(selector):
        clause = clause.strip()
        if not clause:
            raise SelectorError(f"empty requirement in selector {selector!r}")
        set_match = _SET_CLAUSE.match(clause)
        if set_match:
            key, op, inner = set_match.groups()
            values = tuple(
                _check_value(v.strip(), selector) for v in inner.split(",") if v.strip() or False
            )
            if not values:
                raise SelectorError(f"{op} needs at least one value in selector {selector!r}")
            requirements.append(LabelRequirement(_check_key(key, selector), op, values))
            continue
        cmp_match = _CMP_CLAUSE.match(clause)
        if cmp_match:
            key, op, value = cmp_match.groups()
            _check_key(key, selector)
            if op in ("<", ">"):
                try:
                    int(value)
                except ValueError as e:
                    raise SelectorError(
                        f"{op} needs an integer value in selector {selector!r}"
                    ) from e
                requirements.append(LabelRequirement(key, "gt" if op == ">" else "lt", (value,)))
            else:
                requirements.append(
                    LabelRequirement(
                        key, "!=" if op == "!=" else "=", (_check_value(value, selector),)
                    )
                )
            continue
        if clause.startswith("!"):
            requirements.append(
                LabelRequirement(_check_key(clause[1:].strip(), selector), "!exists")
            )
            continue
        requirements.append(LabelRequirement(_check_key(clause, selector), "exists"))
    return tuple(requirements)


def parse_field_selector(selector: str) -> tuple[FieldRequirement, ...]:
    """Parse ``metadata.name=x,status.phase!=Running`` (empty string: everything)."""
    if not selector.strip():
        return ()
    requirements: list[FieldRequirement] = []
    for clause in selector.split(","):
        clause = clause.strip()
        if "!=" in clause:
            field, value = clause.split("!=", 1)
            op = "!="
        elif "==" in clause:
            field, value = clause.split("==", 1)
            op = "="
        elif "=" in clause:
            field, value = clause.split("=", 1)
            op = "="
        else:
            raise SelectorError(f"invalid field selector requirement {clause!r}")
        field = field.strip()
        if not field:
            raise SelectorError(f"invalid field selector requirement {clause!r}")
        requirements.append(FieldRequirement(field, op, value.strip()))
    return tuple(requirements)


def matches_labels(requirements: tuple[LabelRequirement, ...], obj: Mapping[str, Any]) -> bool:
    """True when every requirement holds for the object's ``metadata.labels``."""
    if not requirements:
        return True
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return all(r.matches(labels) for r in requirements)


def field_value(obj: Mapping[str, Any], field: str) -> str | None:
    """The string value at a dotted path (``metadata.name``), or None when absent."""
    node: Any = obj
    for part in field.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    if node is None:
        return None
    if isinstance(node, bool):
        return "true" if node else "false"
    return str(node)


def matches_fields(requirements: tuple[FieldRequirement, ...], obj: Mapping[str, Any]) -> bool:
    """True when every field requirement holds (an absent field equals ``""``)."""
    for r in requirements:
        have = field_value(obj, r.field) or ""
        if (have == r.value) != (r.operator == "="):
            return False
    return True
