"""The resource types the simulated cluster serves, and how requests name them.

A :class:`ResourceType` is the static description discovery publishes and the
store keys objects by; :class:`ResourceTypes` resolves the many ways a caller
names one (``configmaps``, ``ConfigMap``, ``v1/ConfigMap``,
``managedclusters.cluster.open-cluster-management.io``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import attrs

__all__ = [
    "ADDON_MANAGER_TYPES",
    "CRUD_VERBS",
    "DEFAULT_TYPES",
    "ResourceType",
    "ResourceTypes",
    "Subresource",
]

CRUD_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@attrs.frozen
class Subresource:
    """A subresource as discovery lists it (``pods/exec``)."""

    name: str
    kind: str
    verbs: tuple[str, ...]
    group: str = ""
    version: str = "v1"


@attrs.frozen
class ResourceType:
    """One served resource: where it lives in the URL space and what it supports."""

    group: str
    version: str
    resource: str
    kind: str
    namespaced: bool
    verbs: tuple[str, ...] = CRUD_VERBS
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: tuple[Subresource, ...] = ()
    #: Fields a fieldSelector may use besides metadata.name / metadata.namespace.
    selectable_fields: tuple[str, ...] = ()
    #: Served from the object store (False: a create-only review API).
    stored: bool = True
    #: ``metadata.generation`` is kept (1 at create, +1 when anything but metadata or
    #: status changes), as kube-apiserver does for Deployments and custom resources.
    generation: bool = False

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_resource(self) -> str:
        """``configmaps`` or ``managedclusters.cluster.open-cluster-management.io``."""
        return f"{self.resource}.{self.group}" if self.group else self.resource

    def subresource(self, name: str) -> Subresource | None:
        return next((s for s in self.subresources if s.name == name), None)


@attrs.frozen
class ResourceTypes:
    """An immutable set of resource types with lookups by the names callers use."""

    types: tuple[ResourceType, ...]

    def __iter__(self) -> Iterator[ResourceType]:
        return iter(self.types)

    def find(self, group: str, version: str, resource: str) -> ResourceType | None:
        """The type served at ``/apis/<group>/<version>/<resource>``."""
        for t in self.types:
            if t.group == group and t.version == version and t.resource == resource:
                return t
        return None

    def for_kind(self, api_version: str, kind: str) -> ResourceType | None:
        """The type whose objects carry ``apiVersion``/``kind``."""
        for t in self.types:
            if t.api_version == api_version and t.kind == kind:
                return t
        return None

    def resolve(self, name: str) -> ResourceType:
        """Resolve ``configmaps``, ``ConfigMap``, ``v1/ConfigMap``, ``cm`` or ``res.group``."""
        if "/" in name:
            api_version, _, kind = name.rpartition("/")
            found = self.for_kind(api_version, kind)
            if found:
                return found
        for t in self.types:
            if name in (t.resource, t.kind, t.singular, t.group_resource, *t.short_names):
                return t
        raise KeyError(f"unknown resource type {name!r}")

    def groups(self) -> list[tuple[str, list[str]]]:
        """``[(group, [versions])]`` in first-seen order; the core group is ``""``."""
        seen: dict[str, list[str]] = {}
        for t in self.types:
            versions = seen.setdefault(t.group, [])
            if t.version not in versions:
                versions.append(t.version)
        return list(seen.items())

    def in_group_version(self, group: str, version: str) -> list[ResourceType]:
        return [t for t in self.types if t.group == group and t.version == version]

    def with_types(self, extra: Iterable[ResourceType]) -> ResourceTypes:
        return ResourceTypes((*self.types, *extra))


def _core(name: str, kind: str, verbs: tuple[str, ...] = ("get", "patch", "update")) -> Subresource:
    return Subresource(name, kind, verbs)


def _review(group: str, resource: str, kind: str) -> ResourceType:
    """A create-only, cluster-scoped review API (answered, never stored)."""
    return ResourceType(
        group, "v1", resource, kind, namespaced=False, verbs=("create",), stored=False
    )


_POD_SUBRESOURCES = (
    _core("attach", "PodAttachOptions", ("create", "get")),
    _core("binding", "Binding", ("create",)),
    _core("ephemeralcontainers", "Pod"),
    _core("eviction", "Eviction", ("create",)),
    _core("exec", "PodExecOptions", ("create", "get")),
    _core("log", "Pod", ("get",)),
    _core("portforward", "PodPortForwardOptions", ("create", "get")),
    _core("proxy", "PodProxyOptions", ("create", "delete", "get", "patch", "update")),
    _core("status", "Pod"),
)

_OCM = "cluster.open-cluster-management.io"
_ADDON = "addon.open-cluster-management.io"
_MSA = "authentication.open-cluster-management.io"
_PROXY = "proxy.open-cluster-management.io"
_RBAC = "rbac.authorization.k8s.io"


def _with_status(
    group: str,
    version: str,
    resource: str,
    kind: str,
    *,
    namespaced: bool,
    short_names: tuple[str, ...] = (),
    categories: tuple[str, ...] = (),
) -> ResourceType:
    """A stored kind with a ``status`` subresource and ``metadata.generation``."""
    return ResourceType(
        group,
        version,
        resource,
        kind,
        namespaced=namespaced,
        short_names=short_names,
        categories=categories,
        subresources=(Subresource("status", kind, ("get", "patch", "update"), group, version),),
        generation=True,
    )


def _rbac(resource: str, kind: str, *, namespaced: bool) -> ResourceType:
    return ResourceType(_RBAC, "v1", resource, kind, namespaced=namespaced)


#: What the OCM addon-manager reads and writes on the hub (stored and served, no
#: controller behind them, no policy enforced): its configuration and addon kinds,
#: ManagedServiceAccounts, and the workload, Service, RBAC and Lease objects.
ADDON_MANAGER_TYPES = (
    ResourceType(
        "", "v1", "serviceaccounts", "ServiceAccount", namespaced=True, short_names=("sa",)
    ),
    ResourceType(
        "", "v1", "services", "Service", namespaced=True, short_names=("svc",), categories=("all",)
    ),
    _with_status(
        "apps",
        "v1",
        "deployments",
        "Deployment",
        namespaced=True,
        short_names=("deploy",),
        categories=("all",),
    ),
    _rbac("roles", "Role", namespaced=True),
    _rbac("rolebindings", "RoleBinding", namespaced=True),
    _rbac("clusterroles", "ClusterRole", namespaced=False),
    _rbac("clusterrolebindings", "ClusterRoleBinding", namespaced=False),
    ResourceType("coordination.k8s.io", "v1", "leases", "Lease", namespaced=True),
    _with_status(
        _ADDON,
        "v1alpha1",
        "clustermanagementaddons",
        "ClusterManagementAddOn",
        namespaced=False,
        short_names=("cma",),
    ),
    _with_status(
        _ADDON,
        "v1alpha1",
        "managedclusteraddons",
        "ManagedClusterAddOn",
        namespaced=True,
        short_names=("mca",),
    ),
    _with_status(
        _MSA,
        "v1alpha1",
        "managedserviceaccounts",
        "ManagedServiceAccount",
        namespaced=True,
        short_names=("msa",),
    ),
    _with_status(
        _PROXY,
        "v1alpha1",
        "clustergatewayconfigurations",
        "ClusterGatewayConfiguration",
        namespaced=False,
    ),
)

DEFAULT_TYPES = ResourceTypes(
    (
        ResourceType(
            "",
            "v1",
            "namespaces",
            "Namespace",
            namespaced=False,
            verbs=("create", "delete", "get", "list", "patch", "update", "watch"),
            short_names=("ns",),
            subresources=(
                _core("finalize", "Namespace", ("update",)),
                _core("status", "Namespace"),
            ),
            selectable_fields=("status.phase",),
        ),
        ResourceType("", "v1", "configmaps", "ConfigMap", namespaced=True, short_names=("cm",)),
        ResourceType("", "v1", "secrets", "Secret", namespaced=True, selectable_fields=("type",)),
        ResourceType(
            "",
            "v1",
            "pods",
            "Pod",
            namespaced=True,
            short_names=("po",),
            categories=("all",),
            subresources=_POD_SUBRESOURCES,
            selectable_fields=(
                "spec.nodeName",
                "spec.restartPolicy",
                "spec.schedulerName",
                "spec.serviceAccountName",
                "status.phase",
                "status.podIP",
            ),
        ),
        ResourceType(
            _OCM,
            "v1",
            "managedclusters",
            "ManagedCluster",
            namespaced=False,
            short_names=("mcl", "mcls"),
            subresources=(
                Subresource("status", "ManagedCluster", ("get", "patch", "update"), _OCM),
            ),
        ),
        ResourceType(
            "apiregistration.k8s.io",
            "v1",
            "apiservices",
            "APIService",
            namespaced=False,
            categories=("api-extensions",),
            subresources=(
                Subresource(
                    "status", "APIService", ("get", "patch", "update"), "apiregistration.k8s.io"
                ),
            ),
        ),
        *ADDON_MANAGER_TYPES,
        _review("authentication.k8s.io", "selfsubjectreviews", "SelfSubjectReview"),
        _review("authentication.k8s.io", "tokenreviews", "TokenReview"),
        _review("authorization.k8s.io", "selfsubjectaccessreviews", "SelfSubjectAccessReview"),
        _review("authorization.k8s.io", "subjectaccessreviews", "SubjectAccessReview"),
    )
)
