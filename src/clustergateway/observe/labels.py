"""Bounded metric label values from raw request data.

Every label value a metric gets must come from a set whose size the operator
controls: a label fed from the URL would let any caller create unbounded
series (and memory) with made-up names.  So:

- ``cluster`` is the cluster's name only if the registry knows it; any other
  name folds into :data:`UNKNOWN_CLUSTER` (``<unknown>``, which no Secret can
  be called: names are DNS-1123).
- ``resource`` is the target resource parsed from the proxied sub-path the way
  Kubernetes' ``RequestInfoFactory`` does (the Go gateway does the same; the
  parsing is ``auth.subpath``'s, shared with the subpath authorizer), kept
  only when it is a built-in Kubernetes resource of its API group; custom
  resources and unknown groups fold into :data:`OTHER` (``<other>``).
  Subresources fold into their resource (``pods/log`` counts as ``pods``), as
  in Go; exec/attach/port-forward/proxy are told apart by the ``connect`` verb.
  Non-resource paths (``/healthz``, ``/version``, ``/apis``) give ``""`` as in Go.
- ``verb`` is the Kubernetes verb of the *target* request (Go records the hub's
  verb, which never says ``list`` or ``watch``): ``get``, ``list``, ``watch``,
  ``create``, ``update``, ``patch``, ``delete``, ``deletecollection``,
  ``connect`` (pods/exec, attach, portforward, proxy; services/nodes proxy),
  ``proxy`` (the legacy ``/api/v1/proxy/...`` prefix); for non-resource paths
  the lower-cased method (``get``, ``head``, ``post``, ...).  Anything else is
  :data:`OTHER`.
- ``code`` is the decimal status code, for 100..599 only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

__all__ = [
    "KNOWN_RESOURCES",
    "OTHER",
    "RESOURCE_LABELS",
    "TargetRequestInfo",
    "UNKNOWN_CLUSTER",
    "VERBS",
    "cluster_label",
    "code_label",
    "request_labels",
    "resource_label",
    "verb_label",
]

#: The ``cluster`` label of every name the registry does not know.
UNKNOWN_CLUSTER = "<unknown>"
#: The ``resource``/``verb`` label of values outside the known sets.
OTHER = "<other>"

#: Built-in Kubernetes resources by API group (``""`` is the core group),
#: plus ``metrics.k8s.io`` (metrics-server) which nearly every cluster serves.
KNOWN_RESOURCES: Mapping[str, frozenset[str]] = {
    "": frozenset(
        "bindings componentstatuses configmaps endpoints events limitranges namespaces "
        "nodes persistentvolumeclaims persistentvolumes pods podtemplates "
        "replicationcontrollers resourcequotas secrets serviceaccounts services".split()
    ),
    "admissionregistration.k8s.io": frozenset(
        "mutatingwebhookconfigurations validatingwebhookconfigurations "
        "validatingadmissionpolicies validatingadmissionpolicybindings "
        "mutatingadmissionpolicies mutatingadmissionpolicybindings".split()
    ),
    "apiextensions.k8s.io": frozenset({"customresourcedefinitions"}),
    "apiregistration.k8s.io": frozenset({"apiservices"}),
    "apps": frozenset(
        "controllerrevisions daemonsets deployments replicasets statefulsets".split()
    ),
    "authentication.k8s.io": frozenset({"tokenreviews", "selfsubjectreviews"}),
    "authorization.k8s.io": frozenset(
        "localsubjectaccessreviews selfsubjectaccessreviews selfsubjectrulesreviews "
        "subjectaccessreviews".split()
    ),
    "autoscaling": frozenset({"horizontalpodautoscalers"}),
    "batch": frozenset({"cronjobs", "jobs"}),
    "certificates.k8s.io": frozenset({"certificatesigningrequests", "clustertrustbundles"}),
    "coordination.k8s.io": frozenset({"leases", "leasecandidates"}),
    "discovery.k8s.io": frozenset({"endpointslices"}),
    "events.k8s.io": frozenset({"events"}),
    "extensions": frozenset("daemonsets deployments ingresses networkpolicies replicasets".split()),
    "flowcontrol.apiserver.k8s.io": frozenset({"flowschemas", "prioritylevelconfigurations"}),
    "internal.apiserver.k8s.io": frozenset({"storageversions"}),
    "metrics.k8s.io": frozenset({"nodes", "pods"}),
    "networking.k8s.io": frozenset(
        "ingressclasses ingresses ipaddresses networkpolicies servicecidrs".split()
    ),
    "node.k8s.io": frozenset({"runtimeclasses"}),
    "policy": frozenset({"poddisruptionbudgets"}),
    "rbac.authorization.k8s.io": frozenset(
        "clusterrolebindings clusterroles rolebindings roles".split()
    ),
    "resource.k8s.io": frozenset(
        "deviceclasses resourceclaims resourceclaimtemplates resourceslices".split()
    ),
    "scheduling.k8s.io": frozenset({"priorityclasses"}),
    "storage.k8s.io": frozenset(
        "csidrivers csinodes csistoragecapacities storageclasses volumeattachments "
        "volumeattributesclasses".split()
    ),
    "storagemigration.k8s.io": frozenset({"storageversionmigrations"}),
}

#: Every value the ``resource`` label can take.
RESOURCE_LABELS: frozenset[str] = frozenset({"", OTHER}.union(*KNOWN_RESOURCES.values()))

#: Every value the ``verb`` label can take.
VERBS: frozenset[str] = frozenset(
    {
        "get",
        "list",
        "watch",
        "create",
        "update",
        "patch",
        "delete",
        "deletecollection",
        "connect",
        "proxy",
        # non-resource requests: the lower-cased method
        "head",
        "post",
        "put",
        "options",
        OTHER,
    }
)

#: Subresources served by a Connecter in Kubernetes (streamed or upgraded).
_CONNECT_SUBRESOURCES: Mapping[str, frozenset[str]] = {
    "pods": frozenset({"exec", "attach", "portforward", "proxy"}),
    "services": frozenset({"proxy"}),
    "nodes": frozenset({"proxy"}),
}
_CODE_LABELS = tuple(str(code) for code in range(600))


def code_label(code: int) -> str:
    """The ``code`` label: ``"404"`` for 404; codes outside 100..599 give ``OTHER``."""
    if 100 <= code < 600:
        return _CODE_LABELS[code]
    return OTHER


def cluster_label(name: str, is_known: Callable[[str], bool]) -> str:
    """``name`` if the registry knows it, else :data:`UNKNOWN_CLUSTER`."""
    return name if name and is_known(name) else UNKNOWN_CLUSTER


def resource_label(resource: str) -> str:
    """Fold an already-parsed resource name into the bounded set (no group check)."""
    return resource if resource in RESOURCE_LABELS else OTHER


def verb_label(verb: str) -> str:
    """Fold an already-computed verb into the bounded set."""
    return verb if verb in VERBS else OTHER


class TargetRequestInfo(Protocol):
    """What :func:`request_labels` reads of a parsed request
    (``clustergateway.auth.subpath.RequestInfo`` fits)."""

    @property
    def is_resource_request(self) -> bool: ...
    @property
    def verb(self) -> str: ...
    @property
    def api_group(self) -> str: ...
    @property
    def resource(self) -> str: ...
    @property
    def subresource(self) -> str: ...


def request_labels(info: TargetRequestInfo) -> tuple[str, str]:
    """``(resource, verb)`` labels of a proxied request, from its parsed target.

    Parse the target once with ``auth.subpath.target_request_info(method,
    subpath, query)`` (Kubernetes' ``RequestInfoFactory``, also used to
    authorize the subpath) and fold the result here into the bounded sets.
    """
    verb = info.verb
    if not info.is_resource_request:
        return ("", verb if verb in VERBS else OTHER)
    resource = info.resource
    if info.subresource and info.subresource in _CONNECT_SUBRESOURCES.get(resource, ()):
        verb = "connect"
    elif verb not in VERBS:
        verb = OTHER
    known = KNOWN_RESOURCES.get(info.api_group)
    if known is None or resource not in known:
        resource = OTHER
    return (resource, verb)
