"""As whom a proxied request reaches the managed cluster (spec §4.1–§4.3).

By default the cluster sees the Secret's own credential.  With
``?impersonate=true`` on the proxy URL, or the ``ClientIdentityPenetration``
feature gate, the gateway impersonates the caller instead — unless a
ClientIdentityExchanger rule says otherwise.  Rules come from the cluster's
annotation (first match wins), then from the ``--cluster-gateway-proxy-config``
file (first match wins), then the fallback: the caller's own user, groups,
extras and — unlike the Go gateway (quirk 14) — uid.

Everything here except :class:`IdentityResolver` is pure.  Configurations are
validated completely when loaded: an ``ExternalIdentityExchanger``, an
unknown type, a rule without ``source``, an unknown field (a typo such as
``usr:`` would otherwise turn a rule into match-everyone) and a regular
expression that does not compile are errors naming the rule (quirk 13), never
a crash at request time or a silent match.

Decisions taken where the Go code is silent or wrong:

- The per-cluster annotation is honoured for ``?impersonate=true`` even with
  the gate off (quirk 14): it is the cluster owner's policy, and the global
  rules already apply in that case.
- ``userPattern``/``groupPattern``/``clusterPattern`` keep Go's unanchored
  search semantics (``re.search``), so existing configurations keep matching.
- A cluster whose annotation is invalid answers 503 naming the cluster and the
  rule for requests that need an identity decision; the Go code ignored it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import attrs
import yaml
from twisted.logger import Logger
from twisted.web.iweb import IRequest

from clustergateway.auth.headerkeys import escape_extra_key
from clustergateway.auth.user import UserInfo, _extra, _tuple
from clustergateway.errors import BadRequest, ServiceUnavailable
from clustergateway.registry.model import ClusterGateway

__all__ = [
    "ANNOTATION",
    "PRIVILEGED",
    "STATIC_MAPPING",
    "EXTERNAL",
    "ExchangeRule",
    "IdentityDecision",
    "IdentityResolver",
    "Impersonation",
    "ProxyConfig",
    "ProxyConfigError",
    "RuleSource",
    "decide_identity",
    "impersonation_requested",
]

#: The per-cluster configuration annotation on the cluster Secret.
ANNOTATION = "cluster.core.oam.dev/cluster-gateway-proxy-configuration"

PRIVILEGED = "PrivilegedIdentityExchanger"
STATIC_MAPPING = "StaticMappingIdentityExchanger"
EXTERNAL = "ExternalIdentityExchanger"

_RULE_KEYS = frozenset({"name", "type", "source", "target", "url"})
_SOURCE_KEYS = {
    "user": "user",
    "group": "group",
    "uid": "uid",
    "cluster": "cluster",
    "userPattern": "user_pattern",
    "groupPattern": "group_pattern",
    "clusterPattern": "cluster_pattern",
}
_TARGET_KEYS = frozenset({"user", "groups", "uid"})
_CONTROL = re.compile(r"[\r\n\x00]")


class ProxyConfigError(ValueError):
    """A ClusterGatewayProxyConfiguration that cannot be used; the message names the rule."""


def _no_control_chars(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    values: Iterable[str]
    if isinstance(value, str):
        values = (value,)
    elif attribute.name == "extra":
        values = [k for k, _ in value] + [v for _, vs in value for v in vs]  # type: ignore[attr-defined]
    else:
        values = value  # type: ignore[assignment]
    for text in values:
        if _CONTROL.search(text):
            raise ValueError(f"impersonation {attribute.name} contains a control character")


@attrs.frozen
class Impersonation:
    """The identity a request takes at the managed cluster (``Impersonate-*`` headers).

    ``extra`` is a sorted tuple of ``(key, values)`` like :class:`UserInfo`'s;
    build it from a dict freely.  Values with CR, LF or NUL are refused so no
    identity can smuggle a header.
    """

    user: str = attrs.field(validator=_no_control_chars)
    groups: tuple[str, ...] = attrs.field(default=(), converter=_tuple, validator=_no_control_chars)
    uid: str = attrs.field(default="", validator=_no_control_chars)
    extra: tuple[tuple[str, tuple[str, ...]], ...] = attrs.field(
        default=(), converter=_extra, validator=_no_control_chars
    )

    @classmethod
    def of_user(cls, user: UserInfo) -> Impersonation:
        """Impersonate the caller exactly: name, groups, uid and every extra."""
        return cls(user.name, user.groups, user.uid, user.extra)

    def headers(self) -> list[tuple[bytes, bytes]]:
        """The request headers, in client-go's order.

        ``Impersonate-User`` is always present (possibly empty, as client-go
        sends it whenever any field is set); one ``Impersonate-Group`` per
        group, one ``Impersonate-Extra-<escaped key>`` per extra value.
        """
        out = [(b"Impersonate-User", self.user.encode())]
        if self.uid:
            out.append((b"Impersonate-Uid", self.uid.encode()))
        out.extend((b"Impersonate-Group", group.encode()) for group in self.groups)
        for key, values in self.extra:
            name = b"Impersonate-Extra-" + escape_extra_key(key).encode("ascii")
            out.extend((name, value.encode()) for value in values)
        return out

    def describe(self) -> dict[str, Any]:
        """A JSON-ready summary for logs and audit (names only, never a credential)."""
        out: dict[str, Any] = {"user": self.user, "groups": list(self.groups)}
        if self.uid:
            out["uid"] = self.uid
        if self.extra:
            out["extra"] = {k: list(v) for k, v in self.extra}
        return out


def _compile(pattern: str, field: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise ProxyConfigError(
            f"source.{field}: invalid regular expression {pattern!r}: {exc}"
        ) from None


@attrs.frozen
class RuleSource:
    """Which callers a rule applies to; every field that is set must hold (AND).

    ``user``/``uid``/``cluster`` are exact; ``group`` must be one of the
    caller's groups; the patterns are unanchored searches (Go ``regexp.Match``)
    and ``group_pattern`` needs one matching group.  No field set matches
    everyone.
    """

    user: str | None = None
    group: str | None = None
    uid: str | None = None
    cluster: str | None = None
    user_pattern: re.Pattern[str] | None = None
    group_pattern: re.Pattern[str] | None = None
    cluster_pattern: re.Pattern[str] | None = None

    @classmethod
    def from_dict(cls, data: object) -> RuleSource:
        if not isinstance(data, Mapping):
            raise ProxyConfigError("source must be a mapping")
        values: dict[str, Any] = {}
        for key, value in data.items():
            field = _SOURCE_KEYS.get(key)
            if field is None:
                known = ", ".join(_SOURCE_KEYS)
                raise ProxyConfigError(f"unknown source field {key!r} (known: {known})")
            if value is None:
                continue
            if not isinstance(value, str):
                raise ProxyConfigError(f"source.{key} must be a string")
            values[field] = _compile(value, key) if field.endswith("_pattern") else value
        return cls(**values)

    def matches(self, user: UserInfo, cluster: str) -> bool:
        if self.user is not None and self.user != user.name:
            return False
        if self.group is not None and self.group not in user.groups:
            return False
        if self.uid is not None and self.uid != user.uid:
            return False
        if self.cluster is not None and self.cluster != cluster:
            return False
        if self.user_pattern is not None and not self.user_pattern.search(user.name):
            return False
        if self.group_pattern is not None and not any(
            self.group_pattern.search(group) for group in user.groups
        ):
            return False
        return self.cluster_pattern is None or bool(self.cluster_pattern.search(cluster))


def _target(data: object) -> Impersonation:
    if not isinstance(data, Mapping):
        raise ProxyConfigError(f"{STATIC_MAPPING} needs a target mapping with a user")
    unknown = set(data) - _TARGET_KEYS
    if unknown:
        raise ProxyConfigError(
            f"unknown target field(s) {sorted(unknown)} (known: user, groups, uid)"
        )
    user, uid, groups = data.get("user"), data.get("uid") or "", data.get("groups") or []
    if not isinstance(user, str) or not user:
        raise ProxyConfigError(f"{STATIC_MAPPING} needs target.user (a non-empty string)")
    if not isinstance(uid, str):
        raise ProxyConfigError("target.uid must be a string")
    if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
        raise ProxyConfigError("target.groups must be a list of strings")
    try:
        return Impersonation(user, groups, uid)
    except ValueError as exc:
        raise ProxyConfigError(f"target: {exc}") from None


@attrs.frozen
class ExchangeRule:
    """One ClientIdentityExchanger rule.

    ``target`` is set for :data:`STATIC_MAPPING` and None for
    :data:`PRIVILEGED` (which sends the Secret's own credential, no
    impersonation).
    """

    name: str
    type: str
    source: RuleSource
    target: Impersonation | None = None

    @classmethod
    def from_dict(cls, data: object, index: int, cluster: str | None = None) -> ExchangeRule:
        """Validate one rule; ``cluster`` pins ``source.cluster`` (per-cluster rules).

        Errors name the rule as ``rule #<index> "<name>"``.
        """
        name = data.get("name") if isinstance(data, Mapping) else None
        label = f"rule #{index}" + (f" {name!r}" if isinstance(name, str) and name else "")
        try:
            return cls._parse(data, index, cluster)
        except ProxyConfigError as exc:
            raise ProxyConfigError(f"{label}: {exc}") from None

    @classmethod
    def _parse(cls, data: object, index: int, cluster: str | None) -> ExchangeRule:
        if not isinstance(data, Mapping):
            raise ProxyConfigError("a rule must be a mapping")
        unknown = set(data) - _RULE_KEYS
        if unknown:
            raise ProxyConfigError(
                f"unknown field(s) {sorted(unknown)} (known: name, type, source, target, url)"
            )
        name = data.get("name") or f"#{index}"
        if not isinstance(name, str):
            raise ProxyConfigError("name must be a string")
        kind = data.get("type")
        if kind == EXTERNAL:
            raise ProxyConfigError(f"{EXTERNAL} is not implemented")
        if kind not in (PRIVILEGED, STATIC_MAPPING):
            raise ProxyConfigError(
                f"unknown exchanger type: {kind} (known: {PRIVILEGED}, {STATIC_MAPPING})"
            )
        if data.get("source") is None:
            raise ProxyConfigError("no source: a rule without source would never match")
        source = RuleSource.from_dict(data["source"])
        if cluster is not None:
            source = attrs.evolve(source, cluster=cluster)
        target = _target(data.get("target")) if kind == STATIC_MAPPING else None
        return cls(name, kind, source, target)


@attrs.frozen
class ProxyConfig:
    """A validated ``ClusterGatewayProxyConfiguration``: rules in priority order."""

    rules: tuple[ExchangeRule, ...] = ()

    @classmethod
    def parse(cls, document: object, *, cluster: str | None = None) -> ProxyConfig:
        """Validate a parsed document (mapping), or YAML/JSON text.

        ``cluster`` is set for a per-cluster annotation: every rule's
        ``source.cluster`` becomes that name, as in the Go gateway.
        """
        if isinstance(document, bytes | str):
            try:
                document = yaml.safe_load(document)
            except yaml.YAMLError as exc:
                raise ProxyConfigError(f"not valid YAML or JSON: {exc}") from None
        if document is None:
            return cls()
        if not isinstance(document, Mapping):
            raise ProxyConfigError("the configuration must be a mapping")
        spec = document.get("spec") or {}
        exchanger = spec.get("clientIdentityExchanger") if isinstance(spec, Mapping) else None
        if exchanger is None:
            return cls()
        rules = exchanger.get("rules") if isinstance(exchanger, Mapping) else None
        if rules is None:
            return cls()
        if not isinstance(rules, Sequence) or isinstance(rules, str):
            raise ProxyConfigError("spec.clientIdentityExchanger.rules must be a list")
        return cls(tuple(ExchangeRule.from_dict(r, i, cluster) for i, r in enumerate(rules)))

    @classmethod
    def load(cls, path: str | Path) -> ProxyConfig:
        """Read and validate a ``--cluster-gateway-proxy-config`` file.

        Raises :class:`ProxyConfigError` naming the file and the problem.
        """
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise ProxyConfigError(f"{path}: {exc.strerror or exc}") from None
        try:
            return cls.parse(text)
        except ProxyConfigError as exc:
            raise ProxyConfigError(f"{path}: {exc}") from None

    def first_match(self, user: UserInfo, cluster: str) -> ExchangeRule | None:
        for rule in self.rules:
            if rule.source.matches(user, cluster):
                return rule
        return None


@attrs.frozen
class IdentityDecision:
    """The identity chosen for one request, and why (for logs and audit).

    ``origin`` is ``credential`` (no impersonation requested), ``cluster`` or
    ``global`` (a rule matched; ``rule`` names it) or ``caller`` (fallback).
    """

    impersonation: Impersonation | None
    origin: Literal["credential", "cluster", "global", "caller"]
    rule: str = ""

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"origin": self.origin}
        if self.rule:
            out["rule"] = self.rule
        if self.impersonation is not None:
            out["impersonate"] = self.impersonation.describe()
        return out


def _outcome(rule: ExchangeRule, origin: Literal["cluster", "global"]) -> IdentityDecision:
    return IdentityDecision(rule.target, origin, rule.name)


def decide_identity(
    user: UserInfo,
    cluster: str,
    *,
    impersonate: bool,
    cluster_config: ProxyConfig | None,
    global_config: ProxyConfig | None,
) -> IdentityDecision:
    """Spec §4.2: per-cluster rules, then global rules, then the caller.

    ``impersonate`` is ``?impersonate=true`` or the gate; without it the
    Secret's credential is used and no rule is consulted.
    """
    if not impersonate:
        return IdentityDecision(None, "credential")
    if cluster_config is not None:
        rule = cluster_config.first_match(user, cluster)
        if rule is not None:
            return _outcome(rule, "cluster")
    if global_config is not None:
        rule = global_config.first_match(user, cluster)
        if rule is not None:
            return _outcome(rule, "global")
    return IdentityDecision(Impersonation.of_user(user), "caller")


def impersonation_requested(values: Sequence[bytes] | None) -> bool:
    """``?impersonate=...`` as the Go query decoder reads a bool.

    Absent → False; the first value ``false``/``0`` (any case) → False;
    anything else, even empty, → True.
    """
    if not values:
        return False
    return values[0].lower() not in (b"false", b"0")


@attrs.define
class IdentityResolver:
    """Applies the identity rules to requests; built once in ``tap``.

    ``penetration`` is the ``ClientIdentityPenetration`` gate.  Per-cluster
    configurations are parsed once per annotation text and cached by cluster
    name (the Secret changes rarely; requests are many).  The last decision
    for a request is kept on it as ``request.cg_identity`` for the audit log.
    """

    global_config: ProxyConfig | None = None
    penetration: bool = False
    _parsed: dict[str, tuple[object, ProxyConfig | ProxyConfigError]] = attrs.field(
        factory=dict, init=False
    )
    _log = Logger()

    def cluster_config(self, cluster: ClusterGateway) -> ProxyConfig | None:
        """The cluster's validated rules, or None without an annotation.

        Raises :class:`ProxyConfigError` (cached) when the annotation is invalid.
        """
        raw: object = cluster.annotations.get(ANNOTATION)
        if raw is None:
            raw = cluster.proxy_config
        if raw is None:
            self._parsed.pop(cluster.name, None)
            return None
        cached = self._parsed.get(cluster.name)
        if cached is None or cached[0] != raw:
            result: ProxyConfig | ProxyConfigError
            try:
                result = ProxyConfig.parse(raw, cluster=cluster.name)
            except ProxyConfigError as exc:
                result = exc
                self._log.warn(
                    "Cluster {cluster} has an invalid {annotation}: {error}",
                    cluster=cluster.name,
                    annotation=ANNOTATION,
                    error=str(exc),
                )
            cached = (raw, result)
            self._parsed[cluster.name] = cached
        if isinstance(cached[1], ProxyConfigError):
            raise cached[1]
        return cached[1]

    def decide(
        self, cluster: ClusterGateway, user: UserInfo, impersonate: bool
    ) -> IdentityDecision:
        """The decision for ``user`` calling ``cluster``; Status errors for bad input."""
        impersonate = impersonate or self.penetration
        cluster_config = None
        if impersonate:
            try:
                cluster_config = self.cluster_config(cluster)
            except ProxyConfigError as exc:
                raise ServiceUnavailable(
                    f"cluster {cluster.name!r} has an invalid {ANNOTATION} annotation: {exc}",
                    {"name": cluster.name, "kind": "clustergateways"},
                ) from None
        try:
            decision = decide_identity(
                user,
                cluster.name,
                impersonate=impersonate,
                cluster_config=cluster_config,
                global_config=self.global_config,
            )
        except ValueError as exc:
            raise BadRequest(f"cannot impersonate the caller: {exc}") from None
        if decision.rule:
            where = f"from cluster `{cluster.name}`" if decision.origin == "cluster" else ""
            self._log.debug(
                "identity exchanged with rule `{rule}` in the proxy config {where}",
                rule=decision.rule,
                where=where or "from global config",
            )
        return decision

    def identity_for(
        self, cluster: ClusterGateway, user: UserInfo, request: IRequest
    ) -> Impersonation | None:
        """The proxy's hook: None = the Secret's credential, else the headers to add."""
        values = request.args.get(b"impersonate") if request.args else None
        decision = self.decide(cluster, user, impersonation_requested(values))
        request.cg_identity = decision  # type: ignore[attr-defined]
        return decision.impersonation
