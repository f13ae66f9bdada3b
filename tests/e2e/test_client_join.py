"""``cluster-gateway join``/``detach`` at the simulated hub, then kubectl through the gateway.

The hub is ``sim`` (the Secret goes to its ``vela-system``); the cluster that
joins is a second simulated cluster; the gateway reads the hub's Secrets.  For
each credential kind of the joining kubeconfig — token, client certificate
(data and files), exec plugin (``Dynamic``), and a ``proxy-url`` — the Secret
the subcommand writes is picked up by the gateway and kubectl reaches the
cluster through it with a kubeconfig from ``cluster-gateway kubeconfig``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import attrs
import pytest
import pytest_twisted
import yaml

from clustergateway.testing import SimulatedCluster
from tests.fixtures.clients import cluster_gateway, configmap, start_second_sim
from tests.fixtures.egress import RunningProxy, write_exec_plugin
from tests.fixtures.gateway import RunningGateway, wait_until
from tests.fixtures.simulator import run_kubectl
from tests.fixtures.tools import kubectl_binary

pytestmark = pytest.mark.e2e

CREDENTIAL_LABEL = "cluster.core.oam.dev/cluster-credential-type"


@attrs.define(eq=False)
class JoinSetup:
    """The hub (``sim``) with its kubeconfig, the gateway reading it, the joining cluster."""

    hub: SimulatedCluster
    hub_kubeconfig: Path
    gateway: RunningGateway
    member: SimulatedCluster
    workdir: Path

    def secret(self, name: str) -> dict[str, Any] | None:
        found: dict[str, Any] | None = self.hub.store.get("secrets", "vela-system", name)
        return found

    def member_kubeconfig(self, user: str = "token", **changes: Any) -> Path:
        """The member's kubeconfig (``user`` token or cert), with ``changes`` applied to its
        ``cluster`` (key → value, None deletes) and ``user`` (``user_entry=…`` replaces)."""
        path = self.member.write_kubeconfig(self.workdir / f"member-{user}.kubeconfig", user)
        config = yaml.safe_load(path.read_text())
        replacement = changes.pop("user_entry", None)
        if replacement is not None:
            config["users"][0]["user"] = replacement
        cluster = config["clusters"][0]["cluster"]
        for key, value in changes.items():
            if value is None:
                cluster.pop(key, None)
            else:
                cluster[key] = value
        path.write_text(yaml.safe_dump(config))
        return path

    async def join(self, kubeconfig: Path, *args: str) -> Any:
        return await cluster_gateway(
            "join",
            str(kubeconfig),
            "--hub-kubeconfig",
            str(self.hub_kubeconfig),
            *args,
            home=self.workdir,
        )

    async def detach(self, *args: str) -> Any:
        return await cluster_gateway(
            "detach", "--kubeconfig", str(self.hub_kubeconfig), *args, home=self.workdir
        )

    async def kubectl_through_gateway(self, name: str, *args: str) -> Any:
        """kubectl 1.33 with the kubeconfig ``cluster-gateway kubeconfig --cluster NAME`` writes."""
        out = self.workdir / f"via-{name}.kubeconfig"
        generated = await cluster_gateway(
            "kubeconfig",
            "--kubeconfig",
            str(self.gateway.kubeconfig),
            "--cluster",
            name,
            "-o",
            str(out),
            home=self.workdir,
        )
        assert generated.returncode == 0, generated.stderr
        return await run_kubectl(kubectl_binary("1.33"), out, *args)


@pytest_twisted.async_yield_fixture
async def setup(
    tmp_path: Path,
    sim: SimulatedCluster,
    gateway_factory: Callable[..., Awaitable[RunningGateway]],
) -> AsyncIterator[JoinSetup]:
    member = await start_second_sim(tmp_path)
    member.store.put(configmap("only-in-member"))
    try:
        gateway = await gateway_factory(mode="hub", hub=sim)
        await wait_until(lambda: gateway.registry.synced)
        hub_kubeconfig = sim.write_kubeconfig(tmp_path / "hub.kubeconfig")
        yield JoinSetup(sim, hub_kubeconfig, gateway, member, tmp_path)
    finally:
        await member.stop()


async def _joined_and_reached(setup: JoinSetup, kubeconfig: Path, kind: str) -> None:
    result = await setup.join(kubeconfig, "--name", "member", "--label", "env=test")
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    assert result.stdout == f"cluster member ({kind}): secret vela-system/member created\n"
    secret = setup.secret("member")
    assert secret is not None
    assert secret["metadata"]["labels"] == {"env": "test", CREDENTIAL_LABEL: kind}
    await wait_until(lambda: setup.gateway.registry.entry("member") is not None, timeout=10)
    entry = setup.gateway.registry.entry("member")
    assert entry is not None and entry.error is None, entry
    got = await setup.kubectl_through_gateway("member", "get", "cm", "-o", "name")
    assert got.returncode == 0, got.stderr
    assert "configmap/only-in-member" in got.stdout.decode().split()


@pytest_twisted.ensureDeferred
async def test_join_token(setup: JoinSetup) -> None:
    """A token user with CA data: ServiceAccountToken; kubectl reaches the member."""
    await _joined_and_reached(setup, setup.member_kubeconfig("token"), "ServiceAccountToken")


@pytest_twisted.ensureDeferred
async def test_join_client_certificate_data(setup: JoinSetup) -> None:
    """A client-certificate-data user: X509Certificate; kubectl reaches the member."""
    await _joined_and_reached(setup, setup.member_kubeconfig("cert"), "X509Certificate")


@pytest_twisted.ensureDeferred
async def test_join_client_certificate_and_ca_files(setup: JoinSetup) -> None:
    """Certificate, key and CA referenced as files: their content is in the Secret."""
    member = setup.member
    kubeconfig = setup.member_kubeconfig(
        "token",
        user_entry={
            "client-certificate": str(member.client_cert_path),
            "client-key": str(member.client_key_path),
        },
        **{"certificate-authority-data": None, "certificate-authority": str(member.ca_path)},
    )
    await _joined_and_reached(setup, kubeconfig, "X509Certificate")


@pytest_twisted.ensureDeferred
async def test_join_exec_plugin_is_dynamic(setup: JoinSetup) -> None:
    """An exec user: Dynamic; the gateway runs the plugin and kubectl reaches the member."""
    plugin = write_exec_plugin(setup.workdir / "plugin", token=setup.member.token)
    kubeconfig = setup.member_kubeconfig(
        "token",
        user_entry={
            "exec": {
                "apiVersion": "client.authentication.k8s.io/v1",
                "command": str(plugin),
                "args": ["--for", "member"],
                "interactiveMode": "Never",
            }
        },
    )
    await _joined_and_reached(setup, kubeconfig, "Dynamic")
    assert Path(str(plugin) + ".runs").exists()


@pytest_twisted.ensureDeferred
async def test_join_with_proxy_url(
    setup: JoinSetup, tinyproxy: Callable[..., Awaitable[RunningProxy]]
) -> None:
    """The kubeconfig's ``proxy-url`` goes into the Secret and the gateway dials through it."""
    proxy = await tinyproxy(connect_ports=[setup.member.port])
    kubeconfig = setup.member_kubeconfig("token", **{"proxy-url": proxy.url()})
    await _joined_and_reached(setup, kubeconfig, "ServiceAccountToken")
    assert f"127.0.0.1:{setup.member.port}" in proxy.connects()


def _one_line(result: Any, command: str) -> str:
    lines = result.stderr.splitlines()
    assert result.returncode == 1, result
    assert len(lines) == 1 and lines[0].startswith(f"cluster-gateway {command}: "), lines
    return str(lines[0])


@pytest_twisted.ensureDeferred
async def test_force_detach_and_refusals(setup: JoinSetup) -> None:
    """An existing Secret is replaced only with --force and only if it is a cluster Secret;
    a hub that refuses the write, a kubeconfig without a usable credential or context, the
    name ``local``: one line, exit 1, nothing written; detach removes the cluster."""
    kubeconfig = setup.member_kubeconfig("token")
    assert (await setup.join(kubeconfig, "--name", "member")).returncode == 0
    before = setup.secret("member")
    assert before is not None

    again = await setup.join(kubeconfig, "--name", "member", "--label", "v=2")
    assert "already exists at the hub; pass --force" in _one_line(again, "join")
    assert setup.secret("member") == before
    forced = await setup.join(kubeconfig, "--name", "member", "--label", "v=2", "--force")
    assert forced.returncode == 0 and forced.stdout.endswith("replaced\n"), forced.stderr
    replaced = setup.secret("member")
    assert replaced is not None and replaced["metadata"]["labels"]["v"] == "2"

    setup.hub.store.put(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "plain", "namespace": "vela-system"},
            "data": {"password": "c2VjcmV0"},
        }
    )
    plain = await setup.join(kubeconfig, "--name", "plain", "--force")
    assert "is not a cluster Secret" in _one_line(plain, "join")
    assert "not a cluster Secret" in _one_line(await setup.detach("plain"), "detach")
    assert setup.secret("plain") is not None

    setup.hub.faults.deny.add(("*", "create", "secrets"))
    refused = await setup.join(kubeconfig, "--name", "refused")
    assert "creating secret vela-system/refused: the hub answered 403" in _one_line(refused, "join")
    setup.hub.faults.deny.clear()
    assert setup.secret("refused") is None

    basic = setup.member_kubeconfig("token", user_entry={"username": "u", "password": "hunter2"})
    cases = [
        (await setup.join(basic, "--name", "basic"), "no credential the gateway can use"),
        (await setup.join(kubeconfig, "--name", "x", "--context", "nope"), 'context "nope"'),
        (await setup.join(kubeconfig, "--name", "local"), "names the hub itself"),
    ]
    for result, expected in cases:
        line = _one_line(result, "join")
        assert expected in line
        assert "hunter2" not in line and setup.member.token not in line
    assert setup.secret("basic") is None and setup.secret("x") is None

    await wait_until(lambda: setup.gateway.registry.entry("member") is not None, timeout=10)
    detached = await setup.detach("member")
    assert (detached.returncode, detached.stdout) == (
        0,
        "cluster member: secret vela-system/member deleted\n",
    ), detached.stderr
    assert setup.secret("member") is None
    await wait_until(lambda: setup.gateway.registry.entry("member") is None, timeout=10)
    missing = await setup.detach("member")
    assert "secret vela-system/member does not exist at the hub" in _one_line(missing, "detach")


@pytest_twisted.ensureDeferred
async def test_print_for_a_secrets_directory(
    setup: JoinSetup, gateway_factory: Callable[..., Awaitable[RunningGateway]]
) -> None:
    """``--print`` writes nothing to the hub; its YAML, dropped into a gateway's
    ``--secrets-dir``, makes the cluster reachable."""
    printed = await setup.join(setup.member_kubeconfig("cert"), "--name", "member", "--print")
    assert printed.returncode == 0, printed.stderr
    assert setup.secret("member") is None
    local = await gateway_factory(mode="dir")
    assert local.secrets_dir is not None
    (local.secrets_dir / "member.yaml").write_text(printed.stdout)
    await wait_until(lambda: local.registry.entry("member") is not None, timeout=10)
    entry = local.registry.entry("member")
    assert entry is not None and entry.error is None
    got = await run_kubectl(
        kubectl_binary("1.33"), local.proxy_kubeconfig("member"), "get", "cm", "-o", "name"
    )
    assert "configmap/only-in-member" in got.stdout.decode().split(), got.stderr
