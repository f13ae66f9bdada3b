"""Feature gates (``--feature-gates``): the four gates of the Go gateway.

Parsing follows ``k8s.io/component-base/featuregate``: ``A=true,B=false``,
spaces around items ignored, empty items (a trailing comma) skipped, values
parsed like Go's ``strconv.ParseBool``.  An unknown gate or a bad value is an
error that names it, so the start stops with one line saying which.

The Go binary registers its gates beside every gate of the generic Kubernetes
apiserver, and real installs set some of those (the vela-core chart passes
``APIPriorityAndFairness=false``).  They have nothing to switch here, so they
are accepted (with a valid boolean) and handed back by :meth:`FeatureGates.parse_command_line`
for one warning line; any other unknown name still stops the start.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs

__all__ = [
    "FeatureGateError",
    "FeatureGates",
    "GATE_NAMES",
    "KUBERNETES_GATE_NAMES",
    "parse_go_bool",
]

_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})

#: Gate name → attribute of :class:`FeatureGates`.
GATE_NAMES: Mapping[str, str] = {
    "HealthinessCheck": "healthiness_check",
    "SecretCache": "secret_cache",
    "ClientIdentityPenetration": "client_identity_penetration",
    "OCMClusterCache": "ocm_cluster_cache",
}

#: Gates of the generic Kubernetes apiserver (``k8s.io/apiserver/pkg/features``,
#: releases 1.22 to 1.31, the range the Go gateway's releases were built with)
#: and of ``k8s.io/component-base`` that a Go gateway's ``--feature-gates``
#: accepts.  They switch nothing here.
KUBERNETES_GATE_NAMES: frozenset[str] = frozenset(
    {
        "APIListChunking",
        "APIPriorityAndFairness",
        "APIResponseCompression",
        "APIServerIdentity",
        "APIServerTracing",
        "APIServingWithRoutine",
        "AdmissionWebhookMatchConditions",
        "AdvancedAuditing",
        "AggregatedDiscoveryEndpoint",
        "AllAlpha",
        "AllBeta",
        "AnonymousAuthConfigurableEndpoints",
        "AuthorizeWithSelectors",
        "CRDValidationRatcheting",
        "ComponentSLIs",
        "ConcurrentWatchObjectDecode",
        "ConsistentListFromCache",
        "ContextualLogging",
        "CoordinatedLeaderElection",
        "CustomResourceValidationExpressions",
        "DryRun",
        "EfficientWatchResumption",
        "InPlacePodVerticalScaling",
        "KMSv1",
        "KMSv2",
        "KMSv2KDF",
        "LoggingAlphaOptions",
        "LoggingBetaOptions",
        "OpenAPIEnums",
        "OpenAPIV3",
        "RemainingItemCount",
        "RemoveSelfLink",
        "ResilientWatchCacheInitialization",
        "RetryGenerateName",
        "SelectorIndex",
        "SeparateCacheWatchRPC",
        "ServerSideApply",
        "ServerSideFieldValidation",
        "StorageVersionAPI",
        "StorageVersionHash",
        "StrictCostEnforcementForVAP",
        "StrictCostEnforcementForWebhooks",
        "StructuredAuthenticationConfiguration",
        "StructuredAuthorizationConfiguration",
        "UnauthenticatedHTTP2DOSMitigation",
        "ValidatingAdmissionPolicy",
        "WarningHeaders",
        "WatchBookmark",
        "WatchCacheInitializationPostStartHook",
        "WatchFromStorageWithoutResourceVersion",
        "WatchList",
        "ZeroLimitedNominalConcurrencyShares",
    }
)


class FeatureGateError(ValueError):
    """A ``--feature-gates`` value that cannot be applied; the message names the item."""


def parse_go_bool(text: str) -> bool:
    """Go's ``strconv.ParseBool``: the exact spellings it accepts, else ``ValueError``.

    Used for the gate values and for the ``healthy`` status annotation, so a
    Secret that the Go gateway accepts is accepted here too.
    """
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"invalid boolean {text!r}")


@attrs.frozen
class FeatureGates:
    """The gates and their Go defaults (Alpha gates off, Beta gates on).

    - ``HealthinessCheck``: refuse proxied requests to unhealthy clusters (503).
      (In Go it only filled ``status`` from the health annotations; here
      ``status`` always shows the health, so what is written is what is read.)
    - ``SecretCache``: kept for compatibility; the registry always caches.
    - ``ClientIdentityPenetration``: parse the per-cluster proxy-config annotation.
    - ``OCMClusterCache``: watch OCM ManagedClusters when the hub serves them.
    """

    healthiness_check: bool = False
    secret_cache: bool = True
    client_identity_penetration: bool = False
    ocm_cluster_cache: bool = True

    @classmethod
    def parse(cls, text: str, base: FeatureGates | None = None) -> FeatureGates:
        """Apply ``text`` (``A=true,B=false,``) on top of ``base`` (default: the defaults).

        Only this gateway's gates; raises :class:`FeatureGateError` naming the
        offending item.
        """
        return cls._parse(text, base, kubernetes=False)[0]

    @classmethod
    def parse_command_line(cls, text: str) -> tuple[FeatureGates, tuple[str, ...]]:
        """``--feature-gates`` as the Go binary takes it: the gates, and the
        generic Kubernetes items (``APIPriorityAndFairness=false``) accepted and ignored."""
        return cls._parse(text, None, kubernetes=True)

    @classmethod
    def _parse(
        cls, text: str, base: FeatureGates | None, *, kubernetes: bool
    ) -> tuple[FeatureGates, tuple[str, ...]]:
        changes: dict[str, bool] = {}
        ignored: list[str] = []
        for raw in text.split(","):
            item = raw.strip()
            if not item:
                continue
            name, sep, value = item.partition("=")
            name, value = name.strip(), value.strip()
            if not sep:
                raise FeatureGateError(f"missing bool value for feature gate {name}")
            attribute = GATE_NAMES.get(name)
            generic = kubernetes and name in KUBERNETES_GATE_NAMES
            if attribute is None and not generic:
                known = ", ".join(sorted(GATE_NAMES))
                raise FeatureGateError(f"unrecognized feature gate: {name} (known: {known})")
            try:
                enabled = parse_go_bool(value)
            except ValueError:
                raise FeatureGateError(
                    f"invalid value of feature gate {name}={value}: want true or false"
                ) from None
            if attribute is None:
                ignored.append(f"{name}={value}")
            else:
                changes[attribute] = enabled
        return attrs.evolve(base or cls(), **changes), tuple(ignored)

    def enabled(self, name: str) -> bool:
        """The state of gate ``name`` (its Go spelling); ``KeyError`` if unknown."""
        return bool(getattr(self, GATE_NAMES[name]))

    def as_dict(self) -> dict[str, bool]:
        """Gate name → state, e.g. for a startup log line."""
        return {name: bool(getattr(self, attribute)) for name, attribute in GATE_NAMES.items()}
