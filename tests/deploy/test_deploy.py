"""deploy/: each overlay rendered by ``kubectl kustomize`` and checked as a cluster admin needs.

Every rendered object is validated offline against the Kubernetes API's JSON schemas
(``kubernetes-validate``, strict: an unknown field or a wrong type fails) for the oldest and
newest Kubernetes that the project's kubectl binaries cover. Then what the objects mean:
replicas, workers against the CPU request, probes, the pod's security, the PDB, the
aggregator's trust (insecureSkipTLSVerify only in dev-insecure), the patch Job's flags and
the exact RBAC the gateway's code needs.
"""

from __future__ import annotations

import copy
import math
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from tests.fixtures.tools import kubectl_binary

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
OVERLAYS = ["standalone-hub", "ocm", "dev-insecure"]
KUBERNETES_VERSIONS = ["1.29", "1.33"]
VERSION = next(
    line.split('"')[1]
    for line in (ROOT / "pyproject.toml").read_text().splitlines()
    if line.startswith("version = ")
)
NS = "vela-system"
SA = ("ServiceAccount", NS, "cluster-gateway")

_rendered: dict[str, list[dict[str, Any]]] = {}


def render(overlay: str | Path) -> list[dict[str, Any]]:
    """``kubectl kustomize`` of an overlay (by name, or a directory), as objects."""
    key = str(overlay)
    if key not in _rendered:
        path = overlay if isinstance(overlay, Path) else DEPLOY / "overlays" / overlay
        done = subprocess.run(
            [kubectl_binary("1.33"), "kustomize", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        _rendered[key] = [o for o in yaml.safe_load_all(done.stdout) if o]
    return copy.deepcopy(_rendered[key])


def one(objects: Iterable[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind and name in (None, o["metadata"]["name"])]
    assert len(found) == 1, f"{len(found)} {kind} {name or ''}"
    return found[0]


def validate(obj: dict[str, Any], version: str) -> None:
    kubernetes_validate.validate(obj, version, strict=True)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_rendered_object_validates_strictly(overlay: str, version: str) -> None:
    """Each object of the overlay is valid for that Kubernetes version, no unknown field."""
    objects = render(overlay)
    assert len(objects) >= 10
    for obj in objects:
        validate(obj, version)


@pytest.mark.parametrize(
    ("path", "value", "problem"),
    [
        (["spec", "template", "spec", "containers", 0, "securityContext"], "x", "wrong type"),
        (["spec", "replicas"], "2", "wrong type"),
        (["spec", "template", "spec", "containers", 0, "readOnlyRootFilesytem"], True, "unknown"),
        (["spec", "strategy", "rollingUpdate", "maxSurgeCount"], 1, "unknown"),
    ],
)
def test_the_validator_rejects_unknown_fields_and_wrong_types(
    path: list[Any], value: Any, problem: str
) -> None:
    """The check above is not vacuous: a misspelt field or a wrong type in the Deployment
    fails validation."""
    deployment = one(render("standalone-hub"), "Deployment")
    node = deployment
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(deployment, "1.33")


def test_the_validator_rejects_an_unknown_apiservice_field() -> None:
    """An APIService with a misspelt caBundle fails (the aggregation API's schema is there)."""
    apiservice = one(render("standalone-hub"), "APIService")
    apiservice["spec"]["caBundel"] = "Cg=="
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(apiservice, "1.33")


def container_of(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (container,) = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    return container


def flag(args: list[str], name: str) -> str | None:
    values = [a.split("=", 1)[1] for a in args if a.startswith(f"--{name}=")]
    assert len(values) <= 1, args
    return values[0] if values else None


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_deployment_is_highly_available_and_locked_down(overlay: str) -> None:
    """2 replicas spread over nodes, kept 1 by the PDB; workers = CPU request; probes on
    /livez and /readyz; non-root, read-only root, no escalation, no capabilities, seccomp;
    a preStop sleep (the image has sleep) inside the grace period; the image make builds."""
    objects = render(overlay)
    deployment = one(objects, "Deployment")
    spec = deployment["spec"]
    pod = spec["template"]["spec"]
    container = container_of(objects)
    assert spec["replicas"] == 2
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    (term,) = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert (
        term["podAffinityTerm"]["labelSelector"]["matchLabels"] == spec["selector"]["matchLabels"]
    )
    pdb = one(objects, "PodDisruptionBudget")
    assert pdb["spec"]["selector"] == spec["selector"]
    assert 0 < pdb["spec"]["minAvailable"] < spec["replicas"]

    assert container["image"] == f"cluster-gateway:{VERSION}"
    assert container["command"] == ["/apiserver"]
    cpu = container["resources"]["requests"]["cpu"]
    cores = int(cpu[:-1]) / 1000 if cpu.endswith("m") else float(cpu)
    assert flag(container["args"], "workers") == str(max(1, math.ceil(cores)))
    assert "memory" in container["resources"]["limits"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["scheme"] == "HTTPS"
        assert container[probe]["httpGet"]["port"] == container["ports"][0]["name"]

    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532  # the image's user
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    sleep = container["lifecycle"]["preStop"]["exec"]["command"]
    assert sleep[0] == "sleep" and 0 < int(sleep[1]) < pod["terminationGracePeriodSeconds"]
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert "/tmp" in mounts  # the kubernetes package's temporary files (tests/image)

    service = one(objects, "Service")
    assert service["spec"]["selector"] == spec["selector"]["matchLabels"]
    assert service["spec"]["ports"][0]["targetPort"] == container["ports"][0]["name"]


@pytest.mark.parametrize("overlay", ["standalone-hub", "ocm"])
def test_the_aggregator_verifies_the_gateway_with_the_serving_secrets_ca(overlay: str) -> None:
    """No insecureSkipTLSVerify; the patch Job runs /patch with the Go image's flags, from the
    Secret the Deployment serves with, key ca.crt; the Job may read only that Secret and
    change only that APIService."""
    objects = render(overlay)
    apiservice = one(objects, "APIService")
    assert "insecureSkipTLSVerify" not in apiservice["spec"]
    service = one(objects, "Service")
    assert apiservice["spec"]["service"] == {
        "name": service["metadata"]["name"],
        "namespace": NS,
        "port": service["spec"]["ports"][0]["port"],
    }
    container = container_of(objects)
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    cert_dir = Path(flag(container["args"], "tls-cert-file") or "").parent
    (mount,) = [m for m in container["volumeMounts"] if Path(m["mountPath"]) == cert_dir]
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    secret_name = volume["secret"]["secretName"]

    job = one(objects, "Job", "cluster-gateway-patch")
    (patch,) = job["spec"]["template"]["spec"]["containers"]
    assert patch["command"] == ["/patch"]
    assert patch["image"] == container["image"]
    assert patch["args"] == [
        f"--target-APIService={apiservice['metadata']['name']}",
        f"--secret-name={secret_name}",
        f"--secret-namespace={NS}",
        "--secret-ca-bundle-key=ca.crt",
    ]
    sa = job["spec"]["template"]["spec"]["serviceAccountName"]
    assert rules_of(objects, ("ServiceAccount", NS, sa)) == {
        (NS, "", "secrets", secret_name, "get"),
        ("*", "apiregistration.k8s.io", "apiservices", apiservice["metadata"]["name"], "get"),
        ("*", "apiregistration.k8s.io", "apiservices", apiservice["metadata"]["name"], "update"),
    }


def test_only_the_dev_overlay_skips_tls_verification() -> None:
    """dev-insecure alone sets insecureSkipTLSVerify (no caBundle, no patch Job, a self-signed
    pair in an emptyDir); no other file under deploy/ says it."""
    objects = render("dev-insecure")
    apiservice = one(objects, "APIService")
    assert apiservice["spec"]["insecureSkipTLSVerify"] is True
    assert "caBundle" not in apiservice["spec"]
    assert not [o for o in objects if o["kind"] == "Job"]
    args = container_of(objects)["args"]
    assert flag(args, "cert-dir") and not flag(args, "tls-cert-file")
    saying = [
        p.relative_to(DEPLOY)
        for p in DEPLOY.rglob("*.yaml")
        if "insecureSkipTLSVerify" in p.read_text()
    ]
    assert saying == [Path("overlays/dev-insecure/kustomization.yaml")]


# The built-in roles the base binds, as the API server defines them (bootstrap policy).
BUILTIN = {
    ("Role", "kube-system", "extension-apiserver-authentication-reader"): {
        ("kube-system", "", "configmaps", "extension-apiserver-authentication", "get"),
        ("kube-system", "", "configmaps", "extension-apiserver-authentication", "list"),
        ("kube-system", "", "configmaps", "extension-apiserver-authentication", "watch"),
    },
    ("ClusterRole", None, "system:auth-delegator"): {
        ("*", "authentication.k8s.io", "tokenreviews", "", "create"),
        ("*", "authorization.k8s.io", "subjectaccessreviews", "", "create"),
    },
}

# What the gateway's code calls at the hub (the comment in deploy/base/rbac.yaml names where).
GATEWAY_NEEDS = {
    (NS, "", "secrets", "", "get"),
    (NS, "", "secrets", "", "list"),
    (NS, "", "secrets", "", "watch"),
    (NS, "", "secrets", "", "patch"),
    ("kube-system", "", "configmaps", "extension-apiserver-authentication", "get"),
    ("*", "authentication.k8s.io", "tokenreviews", "", "create"),
    ("*", "authorization.k8s.io", "subjectaccessreviews", "", "create"),
}
OCM_NEEDS = {
    ("*", "cluster.open-cluster-management.io", "managedclusters", "", "list"),
    ("*", "cluster.open-cluster-management.io", "managedclusters", "", "watch"),
}


def rules_of(
    objects: list[dict[str, Any]], subject: tuple[str, str, str]
) -> set[tuple[str, str, str, str, str]]:
    """(namespace or *, group, resource, name or '', verb) granted to ``subject``."""
    roles: dict[tuple[str, str | None, str], set[tuple[str, str, str, str, str]]] = {}
    for role in objects:
        if role["kind"] in ("Role", "ClusterRole"):
            where = role["metadata"].get("namespace", "*")
            roles[(role["kind"], role["metadata"].get("namespace"), role["metadata"]["name"])] = {
                (where, group, resource, name, verb)
                for rule in role["rules"]
                for group in rule["apiGroups"]
                for resource in rule["resources"]
                for name in rule.get("resourceNames", [""])
                for verb in rule["verbs"]
            }
    granted: set[tuple[str, str, str, str, str]] = set()
    for binding in objects:
        if binding["kind"] not in ("RoleBinding", "ClusterRoleBinding"):
            continue
        subjects = {(s["kind"], s["namespace"], s["name"]) for s in binding["subjects"]}
        if subject not in subjects:
            continue
        ref = binding["roleRef"]
        at = binding["metadata"].get("namespace") if ref["kind"] == "Role" else None
        key = (ref["kind"], at, ref["name"])
        rules = roles.get(key, BUILTIN.get(key))
        assert rules is not None, f"{binding['metadata']['name']} binds unknown {key}"
        if binding["kind"] == "RoleBinding":  # a ClusterRole bound in one namespace
            rules = {(binding["metadata"]["namespace"], *r[1:]) for r in rules}
        granted |= rules
    return granted


@pytest.mark.parametrize(("overlay", "needs"), [("standalone-hub", set()), ("ocm", OCM_NEEDS)])
def test_gateway_rbac_is_exactly_what_its_code_calls(overlay: str, needs: set[Any]) -> None:
    """The gateway's ServiceAccount can do what hubclient, the Secret and ManagedCluster
    sources, the health writer and auth/ call, and nothing else (the built-in reader role's
    list/watch of its one ConfigMap aside). Without OCM it is told not to look for
    ManagedClusters; with OCM it runs --ocm-integration."""
    objects = render(overlay)
    extra_of_builtin = {
        ("kube-system", "", "configmaps", "extension-apiserver-authentication", "list"),
        ("kube-system", "", "configmaps", "extension-apiserver-authentication", "watch"),
    }
    assert rules_of(objects, SA) - extra_of_builtin == GATEWAY_NEEDS | needs
    args = container_of(objects)["args"]
    if needs:
        assert "--ocm-integration" in args
    else:
        assert flag(args, "feature-gates") == "OCMClusterCache=false"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policy_admits_only_the_hub_apiserver_on_9443(overlay: str) -> None:
    """Ingress only, to the gateway's pods, TCP 9443, from one address range."""
    objects = render(overlay)
    policy = one(objects, "NetworkPolicy")
    deployment = one(objects, "Deployment")
    assert policy["spec"]["podSelector"] == deployment["spec"]["selector"]
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    (rule,) = policy["spec"]["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 9443}]
    assert rule["from"] == [{"ipBlock": {"cidr": "0.0.0.0/0"}}]


def test_the_readmes_edits_reach_every_overlay(tmp_path: Path) -> None:
    """The README's two edits (steps 1 and 2: the image's registry, the hub apiserver's
    range), run in a copy of deploy/, reach each overlay's Deployment, Job and
    NetworkPolicy, and the addon-manager's Deployment."""
    shutil.copytree(DEPLOY, tmp_path / "deploy")
    readme = (ROOT / "README.md").read_text()
    edits = [line.strip() for line in readme.splitlines() if line.strip().startswith("sed -i")]
    assert len(edits) == 2, edits
    for edit in edits:
        command = edit.replace("CONTROL_PLANE_CIDR", "10.0.0.0/24")
        command = command.replace("REGISTRY", "registry.example:5000")
        subprocess.run(["bash", "-c", command], cwd=tmp_path, check=True, timeout=30)
    for overlay in OVERLAYS:
        objects = render(tmp_path / "deploy/overlays" / overlay)
        policy = one(objects, "NetworkPolicy")
        assert policy["spec"]["ingress"][0]["from"] == [{"ipBlock": {"cidr": "10.0.0.0/24"}}]
        pods = [
            o["spec"]["template"]["spec"] for o in objects if o["kind"] in ("Deployment", "Job")
        ]
        assert {c["image"] for pod in pods for c in pod["containers"]} == {
            f"registry.example:5000/cluster-gateway:{VERSION}"
        }
    manager = one(render(tmp_path / "deploy/addon-manager"), "Deployment")
    assert {c["image"] for c in manager["spec"]["template"]["spec"]["containers"]} == {
        f"registry.example:5000/cluster-gateway:{VERSION}"
    }


def test_serving_secret_script_makes_a_pair_the_aggregator_accepts() -> None:
    """deploy/serving-secret.sh prints a valid kubernetes.io/tls Secret with ca.crt; the
    certificate is for the Service's DNS names, for server auth, and signed by ca.crt."""
    done = subprocess.run(
        [str(DEPLOY / "serving-secret.sh")], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    secret = yaml.safe_load(done.stdout)
    validate(secret, "1.33")
    assert secret["type"] == "kubernetes.io/tls"
    assert secret["metadata"] == {"name": "cluster-gateway-tls", "namespace": NS}
    import base64

    data = {k: base64.b64decode(v) for k, v in secret["data"].items()}
    ca = x509.load_pem_x509_certificate(data["ca.crt"])
    cert = x509.load_pem_x509_certificate(data["tls.crt"])
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "cluster-gateway.vela-system.svc" in names.get_values_for_type(x509.DNSName)
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in usage
    cert.verify_directly_issued_by(ca)
    assert b"PRIVATE KEY" in data["tls.key"]
