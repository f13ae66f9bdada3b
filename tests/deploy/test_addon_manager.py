"""deploy/addon-manager: rendered and validated like the gateway's overlays, and its RBAC
checked against what the addon-manager's code actually asks the hub.

The addon-manager is built by its own ``build_service`` (leader election on, as deployed)
on a ``MemoryReactorClock`` against an in-memory hub that records every request: it wins
the Lease, watches, installs the Go samples, probes a cluster, repairs drift on a second
pass and releases the Lease on stop. Each request becomes (namespace, group, resource,
name, verb) and must be granted to the Deployment's ServiceAccount; each grant must be
used by some request, or be a rule of a role the installer hands to the gateway (the hub
lets it create those only if it holds them). A new hub call in the code fails here until
deploy/addon-manager/rbac.yaml grants it.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import pytest
from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock

from clustergateway.addon.names import LEASE_NAME
from clustergateway.addon.tap import AddonManagerConfig, build_service
from clustergateway.testing.kinds import DEFAULT_TYPES
from clustergateway.testing.memoryhub import StoreHubClient
from clustergateway.testing.store import ObjectStore
from tests.deploy.test_deploy import (
    DEPLOY,
    KUBERNETES_VERSIONS,
    VERSION,
    flag,
    one,
    render,
    rules_of,
    validate,
)
from tests.fixtures.addon_samples import SAMPLE_CGC, SAMPLE_CMA, load

MANAGER = DEPLOY / "addon-manager"
MANAGER_NS = "open-cluster-management-addon"
SA = ("ServiceAccount", MANAGER_NS, "cluster-gateway-addon-manager")
GATEWAY_GROUP_PATH = "/apis/cluster.core.oam.dev/"

Need = tuple[str, str, str, str, str]


@attrs.define
class RecordingHub:
    """The in-memory hub, recording ``(method, path)`` of every request; the gateway's
    aggregated API (``cluster.core.oam.dev``) answers as a gateway would."""

    hub: StoreHubClient
    requests: list[tuple[str, str]] = attrs.field(factory=list)
    health: dict[str, dict[str, Any]] = attrs.field(factory=dict)

    async def get_json(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        self.requests.append(("GET", path))
        if path.startswith(GATEWAY_GROUP_PATH):
            cluster = path.split("/")[-2]
            return self.health.setdefault(
                cluster, {"metadata": {"name": cluster}, "status": {"healthy": False}}
            )
        return await self.hub.get_json(path, params)

    async def get_bytes(
        self, path: str, params: Mapping[str, Any] | None = None, timeout: float | None = None
    ) -> tuple[int, bytes]:
        self.requests.append(("GET", path))
        return 200, b"ok"

    async def post_json(self, path: str, body: Any, params: Any = None) -> Any:
        self.requests.append(("POST", path))
        return await self.hub.post_json(path, body, params)

    async def put_json(self, path: str, body: Any, params: Any = None) -> Any:
        self.requests.append(("PUT", path))
        if path.startswith(GATEWAY_GROUP_PATH):
            self.health[path.split("/")[-2]] = body
            return body
        return await self.hub.put_json(path, body, params)

    async def patch_json(self, path: str, body: Any, params: Any = None) -> Any:
        self.requests.append(("PATCH", path))
        raise AssertionError("the in-memory hub has no PATCH; record it, then implement it")

    async def delete_json(self, path: str, params: Any = None) -> Any:
        self.requests.append(("DELETE", path))
        return await self.hub.delete_json(path, params)

    def watch(self, path: str, params: Any, on_event: Any) -> Deferred[None]:
        self.requests.append(("WATCH", path))
        return Deferred()  # open until cancelled, like a quiet watch


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _hub_with_samples() -> ObjectStore:
    """Go's sample ClusterManagementAddOn and configuration (ClusterProxy egress, so the
    proxy Secrets are read too), and cluster c1 whose ManagedServiceAccount token exists."""
    store = ObjectStore(DEFAULT_TYPES)
    for ns in ("kube-system", MANAGER_NS, "c1"):
        store.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    store.put(load(SAMPLE_CMA))
    store.put(load(SAMPLE_CGC))
    for name, key in (("proxy-server-ca", "ca.crt"), ("proxy-client", "tls.crt")):
        store.put(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": name, "namespace": MANAGER_NS},
                "data": {key: _b64(name.encode())},
            }
        )
    store.put(
        {
            "apiVersion": "addon.open-cluster-management.io/v1alpha1",
            "kind": "ManagedClusterAddOn",
            "metadata": {"name": "cluster-gateway", "namespace": "c1"},
        }
    )
    store.put(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "cluster-gateway", "namespace": "c1"},
            "data": {"token": _b64(b"tok"), "ca.crt": _b64(b"ca")},
        }
    )
    return store


def _drift(store: ObjectStore) -> None:
    """What makes the second pass write: every installed object lost its owner, the
    token rotated, the serving pair lost its key, the configuration has a new image."""
    for rtype in store.types:
        for item in store.items(rtype):
            meta = item["metadata"]
            owners = meta.get("ownerReferences") or []
            if any(r.get("kind") == "ClusterManagementAddOn" for r in owners):
                meta["ownerReferences"] = []
                store.put(item)
    token = store.get("secrets", "c1", "cluster-gateway")
    assert token is not None
    token["data"]["token"] = _b64(b"rotated")
    store.put(token)
    for secret in store.items("secrets"):
        if secret["metadata"]["name"] == "cluster-gateway-tls-cert":
            del secret["data"]["tls.key"]
            store.put(secret)
    cgc = store.get("clustergatewayconfigurations", None, "cluster-gateway")
    assert cgc is not None
    cgc["spec"]["image"] = "oamdev/cluster-gateway:v1.9.0"
    store.put(cgc)


def record_addon_manager() -> tuple[list[tuple[str, str]], ObjectStore]:
    """Run the whole addon-manager in memory through a lead, two passes, a probe and stop."""
    store = _hub_with_samples()
    hub = RecordingHub(StoreHubClient(store))
    clock = MemoryReactorClock()
    config = AddonManagerConfig(
        namespace=MANAGER_NS,
        metrics_bind_address="0",
        health_probe_bind_address="0",
        leader_elect=True,
        identity="replica-1",
    )
    manager = build_service(clock, config, hub=hub)  # type: ignore[arg-type]
    manager.startService()
    clock.pump([1.0] * 40)  # leads, watches, installs, probes, renews
    assert manager.elector is not None and manager.elector.leading
    assert manager.runner.passes >= 1 and manager.prober.probes >= 1
    _drift(store)
    manager.runner.kick()
    clock.pump([1.0] * 5)
    stopped = manager.stopService()
    clock.pump([0.0, 0.0])
    assert stopped.called
    return hub.requests, store


def need_of(method: str, path: str) -> Need | None:
    """(namespace or *, group, resource[/subresource], name or '', verb); None for discovery."""
    parts = [p for p in path.split("?")[0].split("/") if p]
    group, rest = ("", parts[2:]) if parts[0] == "api" else (parts[1], parts[3:])
    if not rest:
        return None  # /apis/<group>/<version>: discovery, open to every authenticated user
    namespace = "*"
    if rest[0] == "namespaces" and len(rest) >= 3:
        namespace, rest = rest[1], rest[2:]
    resource, name = rest[0], (rest[1] if len(rest) > 1 else "")
    if len(rest) > 2:
        resource += "/" + rest[2]
    verb = {
        "GET": "get" if name else "list",
        "WATCH": "watch",
        "POST": "create",
        "PUT": "update",
        "PATCH": "patch",
        "DELETE": "delete",
    }[method]
    return (namespace, group, resource, name, verb)


def covers(grant: Need, need: Need) -> bool:
    """Whether an RBAC grant allows the request (namespace, resourceNames, ``*`` verbs)."""
    g_ns, g_group, g_resource, g_name, g_verb = grant
    ns, group, resource, name, verb = need
    return (
        g_ns in ("*", ns)
        and (g_group, g_resource) == (group, resource)
        and g_name in ("", name)
        and g_verb in ("*", verb)
    )


@pytest.fixture(scope="module")
def recorded() -> tuple[set[Need], ObjectStore]:
    requests, store = record_addon_manager()
    needs = {n for n in (need_of(m, p) for m, p in requests) if n is not None}
    return needs, store


# -- rendered and validated like the overlays -----------------------------------------------


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_rendered_object_validates_strictly(version: str) -> None:
    """Each object of deploy/addon-manager is valid for that Kubernetes, no unknown field."""
    objects = render(MANAGER)
    assert {o["kind"] for o in objects} == {
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Deployment",
    }
    for obj in objects:
        validate(obj, version)


def test_deployment_runs_the_addon_manager_with_gos_flags() -> None:
    """The image's /addon-manager entry, Go chart's --leader-elect=true and ports, probes
    on the health port, the ServiceAccount the RBAC is bound to, a locked-down pod."""
    objects = render(MANAGER)
    deployment = one(objects, "Deployment", "cluster-gateway-addon-manager")
    assert deployment["metadata"]["namespace"] == MANAGER_NS
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == SA[2]
    (container,) = pod["containers"]
    assert container["image"] == f"cluster-gateway:{VERSION}"
    assert container["command"] == ["/addon-manager"]
    args = container["args"]
    assert flag(args, "leader-elect") == "true"
    assert flag(args, "metrics-bind-address") == ":48080"
    assert flag(args, "health-probe-bind-address") == ":48081"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"metrics": 48080, "health": 48081}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}


def test_the_flags_parse_as_the_addon_manager_reads_them(monkeypatch: pytest.MonkeyPatch) -> None:
    """The Deployment's arguments are accepted by the addon-manager's own Options, with
    NAMESPACE as the pod's env gives it."""
    from clustergateway.addon.tap import Options

    container = one(render(MANAGER), "Deployment")["spec"]["template"]["spec"]["containers"][0]
    (env,) = container["env"]
    assert env == {
        "name": "NAMESPACE",
        "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
    }
    monkeypatch.setenv("NAMESPACE", MANAGER_NS)
    options = Options()  # type: ignore[no-untyped-call]
    options.parseOptions(container["args"])
    assert options.config.leader_elect is True
    assert options.config.namespace == MANAGER_NS


# -- RBAC: what the code calls ------------------------------------------------------------


def test_recording_saw_every_part_of_the_addon_manager(recorded: tuple[set[Need], Any]) -> None:
    """The run is not vacuous: the Lease, the watches, the installer's creates and updates,
    the prober's health and proxy calls and the status writes are all in it."""
    needs, _ = recorded
    verbs = {(group, resource, verb) for _, group, resource, _, verb in needs}
    for expected in [
        ("coordination.k8s.io", "leases", "create"),
        ("coordination.k8s.io", "leases", "update"),
        ("apps", "deployments", "watch"),
        ("apps", "deployments", "create"),
        ("apps", "deployments", "update"),
        ("rbac.authorization.k8s.io", "clusterroles", "update"),
        ("", "secrets", "update"),
        ("cluster.core.oam.dev", "clustergateways/health", "update"),
        ("cluster.core.oam.dev", "clustergateways/proxy", "get"),
        ("addon.open-cluster-management.io", "managedclusteraddons/status", "update"),
        ("proxy.open-cluster-management.io", "clustergatewayconfigurations/status", "update"),
        ("authentication.open-cluster-management.io", "managedserviceaccounts", "create"),
    ]:
        assert expected in verbs, expected


def test_rbac_grants_every_request_the_code_makes(recorded: tuple[set[Need], Any]) -> None:
    """Every (namespace, group, resource, name, verb) the addon-manager asked the hub for
    is granted to its ServiceAccount by deploy/addon-manager."""
    needs, _ = recorded
    granted = rules_of(render(MANAGER), SA)
    missing = sorted(n for n in needs if not any(covers(g, n) for g in granted))
    assert missing == [], "not granted to the addon-manager: " + repr(missing)


def test_rbac_grants_nothing_the_code_does_not_use(recorded: tuple[set[Need], ObjectStore]) -> None:
    """Each grant is used by a request, or is a rule of a role the installer gave the
    gateway (held so that the hub lets it create that role or binding)."""
    needs, store = recorded
    handed_on: set[tuple[str, str, str]] = set()
    for kind in ("roles", "clusterroles"):
        for role in store.items(kind):
            if role["metadata"]["name"].startswith("cluster-gateway-addon-manager"):
                continue
            for rule in role.get("rules") or []:
                for group in rule["apiGroups"]:
                    for resource in rule["resources"]:
                        for verb in rule["verbs"]:
                            handed_on.add((group, resource, verb))
    handed_on |= {  # the built-in Role the installer binds in kube-system
        ("", "configmaps", verb) for verb in ("get", "list", "watch")
    }
    granted = rules_of(render(MANAGER), SA)
    unused = sorted(
        g
        for g in granted
        if not any(covers(g, n) for n in needs) and (g[1], g[2], g[4]) not in handed_on
    )
    assert unused == [], "granted but never used: " + repr(unused)


def test_lease_rights_are_limited_to_the_managers_namespace_and_lease() -> None:
    """Leader election is granted in the manager's namespace only; get/update only on the
    Lease it uses (create cannot be limited by name)."""
    granted = rules_of(render(MANAGER), SA)
    leases = {g for g in granted if g[2] == "leases"}
    assert leases == {
        (MANAGER_NS, "coordination.k8s.io", "leases", "", "create"),
        (MANAGER_NS, "coordination.k8s.io", "leases", LEASE_NAME, "get"),
        (MANAGER_NS, "coordination.k8s.io", "leases", LEASE_NAME, "update"),
    }


def test_the_readme_points_at_the_addon_manager() -> None:
    """README's deploy section says how to apply deploy/addon-manager."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert "kubectl apply -k deploy/addon-manager" in readme


def test_rbac_lets_the_installer_create_the_gateways_roles(
    recorded: tuple[set[Need], ObjectStore],
) -> None:
    """The hub refuses a Role, ClusterRole or binding that grants more than its creator
    holds (no escalate, no bind here): every rule the installer gave the gateway, and the
    built-in kube-system reader it binds, is held by the addon-manager itself."""
    _, store = recorded
    granted = rules_of(render(MANAGER), SA)
    handed: list[Need] = []
    for kind in ("roles", "clusterroles"):
        for role in store.items(kind):
            namespace = role["metadata"].get("namespace") or "*"
            for rule in role.get("rules") or []:
                for group in rule["apiGroups"]:
                    for resource in rule["resources"]:
                        for verb in rule["verbs"]:
                            handed.append((namespace, group, resource, "", verb))
    assert len(handed) > 10
    handed += [
        ("kube-system", "", "configmaps", "extension-apiserver-authentication", verb)
        for verb in ("get", "list", "watch")
    ]
    not_held = sorted(n for n in handed if not any(covers(g, n) and g[4] == n[4] for g in granted))
    assert not_held == [], "handed to the gateway but not held: " + repr(not_held)
