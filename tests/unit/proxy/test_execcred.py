"""Dynamic credentials: exec config and ExecCredential parsing (client-go's messages), the
plugin's environment, and the provider's runs, sharing, caching, limits and errors on a
fake process reactor (no real child process: the e2e tests run real plugins)."""

from __future__ import annotations

import json
from typing import Any

import attrs
import pytest
from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import capturedLogs
from twisted.python.failure import Failure

from clustergateway.errors import ServiceUnavailable
from clustergateway.proxy.credentials import ResolvedCredential
from clustergateway.proxy.execcred import (
    ExecConfig,
    ExecCredentialProvider,
    ExecError,
    ExecSettings,
    exec_environment,
    parse_exec_config,
    parse_exec_output,
)
from clustergateway.registry.model import ClusterGateway, CredentialSpec, EndpointSpec

V1 = "client.authentication.k8s.io/v1"
V1BETA1 = "client.authentication.k8s.io/v1beta1"
NOW = 1_800_000_000.0  # 2027-01-15T08:00:00Z


def config_json(**changes: Any) -> str:
    config: dict[str, Any] = {"apiVersion": V1, "command": "issue-token", "args": ["--x"]}
    config.update(changes)
    return json.dumps(config, sort_keys=True)


def cluster(name: str = "c1", exec_config: str | None = None) -> ClusterGateway:
    return ClusterGateway(
        name,
        EndpointSpec(address="https://10.0.0.1:6443", insecure=True),
        CredentialSpec("Dynamic", exec_config=exec_config or config_json()),
    )


def iso(seconds: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def credential_json(
    token: str | None = "tok-1", expires: float | None = None, api_version: str = V1, **status: Any
) -> bytes:
    body: dict[str, Any] = dict(status)
    if token is not None:
        body["token"] = token
    if expires is not None:
        body["expirationTimestamp"] = iso(expires)
    return json.dumps(
        {"apiVersion": api_version, "kind": "ExecCredential", "status": body}
    ).encode()


# -- pure parsing ------------------------------------------------------------------


def test_parse_exec_config() -> None:
    """command, args and env (v1 and v1beta1) become an ExecConfig; other fields are ignored."""
    parsed = parse_exec_config(
        json.dumps(
            {
                "apiVersion": V1BETA1,
                "command": "aws",
                "args": ["eks", "get-token"],
                "env": [{"name": "AWS_PROFILE", "value": "prod"}],
                "installHint": "ignored",
                "provideClusterInfo": True,
            }
        )
    )
    assert parsed == ExecConfig(V1BETA1, "aws", ("eks", "get-token"), (("AWS_PROFILE", "prod"),))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (None, "exec config not provided"),
        ("{", "failed to decode exec config JSON from secret data: "),
        ("[]", "failed to decode exec config JSON from secret data: not an object"),
        (config_json(apiVersion="v9"), 'exec plugin: invalid apiVersion "v9"'),
        (config_json(command=""), 'missing "command" property on exec config object'),
        (config_json(args="x"), '"args" must be a list of strings'),
        (config_json(env=[{"name": "A"}]), '"env" must be a list'),
    ],
)
def test_parse_exec_config_errors(text: str | None, message: str) -> None:
    """Exec config errors keep client-go's wording (spec §2.4)."""
    with pytest.raises(ExecError) as info:
        parse_exec_config(text)
    assert message in str(info.value)


def test_parse_exec_output_token_cert_and_expiry() -> None:
    """A token becomes a bearer header (and wins over a certificate pair); a pair alone
    becomes the client certificate; the expiry is Unix time."""
    issued = parse_exec_output(
        credential_json("abc", NOW, clientCertificateData="C", clientKeyData="K"), V1
    )
    assert issued.credential == ResolvedCredential(authorization=b"Bearer abc")
    assert issued.expires_at == NOW
    pair = parse_exec_output(
        credential_json(None, api_version=V1BETA1, clientCertificateData="C", clientKeyData="K"),
        V1BETA1,
    )
    assert pair.credential.tls_identity() == (b"C", b"K") and pair.expires_at is None
    no_kind = json.dumps({"apiVersion": V1, "status": {"token": "t"}}).encode()
    assert parse_exec_output(no_kind, V1).credential.authorization == b"Bearer t"
    offset = json.dumps(
        {
            "apiVersion": V1,
            "status": {"token": "t", "expirationTimestamp": "2027-01-15T09:00:00+01:00"},
        }
    ).encode()
    assert parse_exec_output(offset, V1).expires_at == NOW


@pytest.mark.parametrize(
    ("stdout", "message"),
    [
        (b"not json", "decoding stdout: Expecting value"),
        (b"\xff\xfe", "decoding stdout: "),
        (b"[1]", "decoding stdout: not a JSON object"),
        (
            credential_json(api_version=V1BETA1),
            f"exec plugin is configured to use API version {V1}, plugin returned version {V1BETA1}",
        ),
        (
            json.dumps(
                {"apiVersion": V1, "kind": "Pod", "status": {"token": "secret-tok"}}
            ).encode(),
            "decoding stdout: kind is 'Pod', want ExecCredential",
        ),
        (json.dumps({"apiVersion": V1}).encode(), "exec plugin didn't return a status field"),
        (credential_json(None), "exec plugin didn't return a token or cert/key pair"),
        (
            credential_json(None, clientCertificateData="C"),
            "exec plugin returned only certificate or key, not both",
        ),
        (
            credential_json("secret-tok", expirationTimestamp="tomorrow"),
            "decoding stdout: status.expirationTimestamp is not an RFC 3339 time",
        ),
        (credential_json("secret\r\ntok"), "exec plugin returned a token that cannot be sent"),
        (
            json.dumps({"apiVersion": V1, "status": {"token": 5}}).encode(),
            "decoding stdout: status.token is not a string",
        ),
    ],
)
def test_parse_exec_output_errors(stdout: bytes, message: str) -> None:
    """Output errors keep client-go's wording and never quote the output (a token)."""
    with pytest.raises(ExecError) as info:
        parse_exec_output(stdout, V1)
    assert str(info.value).startswith(message)
    assert "secret" not in str(info.value)


def test_exec_environment() -> None:
    """The plugin sees the gateway's environment, then ``env`` on top, then
    KUBERNETES_EXEC_INFO as client-go sets it (non-interactive)."""
    config = ExecConfig(V1, "p", (), (("HOME", "/plugin"), ("EXTRA", "1")))
    env = exec_environment({"PATH": "/bin", "HOME": "/root"}, config)
    assert env["PATH"] == "/bin" and env["HOME"] == "/plugin" and env["EXTRA"] == "1"
    assert json.loads(env["KUBERNETES_EXEC_INFO"]) == {
        "kind": "ExecCredential",
        "apiVersion": V1,
        "spec": {"interactive": False},
    }


# -- the provider on a fake process reactor ---------------------------------------------


@attrs.define
class FakeProcess:
    protocol: Any
    executable: str
    args: list[str]
    env: dict[str, str]
    child_fds: dict[int, str]
    signals: list[str] = attrs.field(factory=list)
    stdin_closed: bool = False

    # the IProcessTransport surface the plugin runner uses
    def closeStdin(self) -> None:
        self.stdin_closed = True

    def signalProcess(self, signal: str) -> None:
        self.signals.append(signal)
        self.end(Failure(ProcessTerminated(signal=9)))

    def finish(self, stdout: bytes = b"", stderr: bytes = b"", code: int = 0) -> None:
        if stderr:
            self.protocol.errReceived(stderr)
        if stdout:
            self.protocol.outReceived(stdout)
        self.end(Failure(ProcessDone(0)) if code == 0 else Failure(ProcessTerminated(code)))

    def end(self, reason: Failure) -> None:
        self.protocol.processEnded(reason)


class ProcessReactor(MemoryReactorClock):
    """A MemoryReactorClock that records spawnProcess calls instead of forking."""

    def __init__(self) -> None:
        super().__init__()
        self.processes: list[FakeProcess] = []
        self.advance(NOW)

    def spawnProcess(
        self,
        protocol: Any,
        executable: str,
        args: Any,
        env: Any = None,
        path: Any = None,
        uid: Any = None,
        gid: Any = None,
        usePTY: Any = False,
        childFDs: Any = None,
    ) -> FakeProcess:
        process = FakeProcess(protocol, executable, list(args), dict(env), dict(childFDs))
        self.processes.append(process)
        protocol.makeConnection(process)
        return process


@attrs.define
class Recorder:
    runs: list[tuple[str, bool]] = attrs.field(factory=list)

    def exec_credential(self, cluster: str, ok: bool) -> None:
        self.runs.append((cluster, ok))


@pytest.fixture
def plugin_path(tmp_path: Any) -> str:
    path = tmp_path / "bin" / "issue-token"
    path.parent.mkdir()
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return str(path)


def provider(
    reactor: ProcessReactor, plugin_path: str, **settings: Any
) -> tuple[ExecCredentialProvider, Recorder]:
    from pathlib import Path

    metrics = Recorder()
    env = {"PATH": str(Path(plugin_path).parent), "GATEWAY_VAR": "1"}
    return ExecCredentialProvider(reactor, env, ExecSettings(**settings), metrics), metrics


def result_of(d: Deferred[Any]) -> Any:
    results: list[Any] = []
    d.addBoth(results.append)
    assert results, "not fired"
    return results[0]


def test_one_run_for_concurrent_requests(plugin_path: str) -> None:
    """Twenty requests while the plugin runs share its one run; the process gets the
    command from PATH, its args, the merged environment and a closed stdin."""
    reactor = ProcessReactor()
    creds, metrics = provider(reactor, plugin_path)
    pending = [creds.credential_for(cluster()) for _ in range(20)]
    assert len(reactor.processes) == 1 and not any(d.called for d in pending)
    process = reactor.processes[0]
    assert (process.executable, process.args) == (plugin_path, ["issue-token", "--x"])
    assert process.env["GATEWAY_VAR"] == "1" and "KUBERNETES_EXEC_INFO" in process.env
    assert process.stdin_closed and process.child_fds == {0: "w", 1: "r", 2: "r"}
    process.finish(credential_json("tok-1", NOW + 3600))
    assert {result_of(d) for d in pending} == {ResolvedCredential(authorization=b"Bearer tok-1")}
    assert metrics.runs == [("c1", True)]


def test_cached_until_a_minute_before_expiry(plugin_path: str) -> None:
    """The credential is reused until one minute before expirationTimestamp, then renewed."""
    reactor = ProcessReactor()
    creds, _ = provider(reactor, plugin_path)
    creds.credential_for(cluster())
    reactor.processes[0].finish(credential_json("tok-1", NOW + 600))
    reactor.advance(539)
    assert result_of(creds.credential_for(cluster())).authorization == b"Bearer tok-1"
    assert len(reactor.processes) == 1
    reactor.advance(1)
    d = creds.credential_for(cluster())
    assert len(reactor.processes) == 2
    reactor.processes[1].finish(credential_json("tok-2", NOW + 1200))
    assert result_of(d).authorization == b"Bearer tok-2"


def test_no_expiry_cached_for_the_configured_time(plugin_path: str) -> None:
    """Without expirationTimestamp the credential is reused for ``no_expiry_ttl`` seconds
    (Go ran the plugin for every request); 0 means every request runs it."""
    reactor = ProcessReactor()
    creds, _ = provider(reactor, plugin_path, no_expiry_ttl=5.0)
    creds.credential_for(cluster())
    reactor.processes[0].finish(credential_json("tok-1"))
    reactor.advance(4.9)
    creds.credential_for(cluster())
    assert len(reactor.processes) == 1
    reactor.advance(0.1)
    creds.credential_for(cluster())
    assert len(reactor.processes) == 2

    uncached, _ = provider(reactor, plugin_path, no_expiry_ttl=0)
    uncached.credential_for(cluster())
    reactor.processes[-1].finish(credential_json("tok"))
    uncached.credential_for(cluster())
    assert len(reactor.processes) == 4


def test_cache_is_per_cluster_and_exec_config(plugin_path: str) -> None:
    """Another cluster, or a changed exec config for the same cluster, runs the plugin
    again (Go keyed its cache by cluster name only)."""
    reactor = ProcessReactor()
    creds, _ = provider(reactor, plugin_path)
    creds.credential_for(cluster())
    reactor.processes[0].finish(credential_json("tok-1", NOW + 3600))
    creds.credential_for(cluster("c2"))
    assert len(reactor.processes) == 2
    changed = cluster(exec_config=config_json(args=["--role", "admin"]))
    d = creds.credential_for(changed)
    assert len(reactor.processes) == 3 and reactor.processes[2].args[1:] == ["--role", "admin"]
    reactor.processes[2].finish(credential_json("tok-admin", NOW + 3600))
    assert result_of(d).authorization == b"Bearer tok-admin"
    creds.forget("c1")
    creds.credential_for(changed)
    assert len(reactor.processes) == 4


def status_error(d: Deferred[Any]) -> ServiceUnavailable:
    result = result_of(d)
    assert isinstance(result, Failure) and result.check(ServiceUnavailable), result
    error: ServiceUnavailable = result.value
    assert error.code == 503 and error.details == {"name": "c1", "kind": "clustergateways"}
    return error


def test_failures_are_503_and_not_cached(plugin_path: str) -> None:
    """A failing plugin fails every waiting request with a 503 naming the cluster and
    client-go's cause; the next request runs the plugin again."""
    reactor = ProcessReactor()
    creds, metrics = provider(reactor, plugin_path)
    first, second = creds.credential_for(cluster()), creds.credential_for(cluster())
    reactor.processes[0].finish(b"", b"boom: no profile", code=3)
    for d in (first, second):
        assert status_error(d).message == (
            "cluster c1: failed to issue credential from external command: "
            f"exec: executable {plugin_path} failed with exit code 3"
        )
    assert metrics.runs == [("c1", False)]
    creds.credential_for(cluster())
    assert len(reactor.processes) == 2


def test_timeout_kills_the_plugin(plugin_path: str) -> None:
    """A plugin still running after ``timeout`` is killed and the requests get a 503."""
    reactor = ProcessReactor()
    creds, _ = provider(reactor, plugin_path, timeout=5.0)
    d = creds.credential_for(cluster())
    reactor.advance(4.9)
    assert not d.called
    reactor.advance(0.1)
    assert reactor.processes[0].signals == ["KILL"]
    assert status_error(d).message.endswith(
        f"exec: executable {plugin_path} did not finish within 5s and was killed"
    )


def test_output_limits_and_signals(plugin_path: str) -> None:
    """Too much stdout kills the plugin; death by a signal is named."""
    reactor = ProcessReactor()
    creds, _ = provider(reactor, plugin_path, stdout_limit=10)
    d = creds.credential_for(cluster())
    reactor.processes[0].protocol.outReceived(b"x" * 11)
    assert "wrote more than 10 bytes to stdout and was killed" in status_error(d).message
    d = creds.credential_for(cluster())
    reactor.processes[1].end(Failure(ProcessTerminated(signal=15)))
    assert status_error(d).message.endswith("was killed by signal 15")


def test_not_found_and_bad_output(plugin_path: str) -> None:
    """A command not on PATH and output that is no credential are 503s with client-go's words."""
    reactor = ProcessReactor()
    creds, _ = provider(reactor, plugin_path)
    missing = cluster(exec_config=config_json(command="no-such-plugin"))
    assert status_error(creds.credential_for(missing)).message == (
        "cluster c1: failed to issue credential from external command: "
        "exec: executable no-such-plugin not found"
    )
    d = creds.credential_for(cluster())
    reactor.processes[0].finish(credential_json(None))
    assert status_error(d).message.endswith("exec plugin didn't return a token or cert/key pair")


def test_stderr_logged_capped_stdout_never(plugin_path: str) -> None:
    """stderr is logged (capped) with the failure; the stdout credential never is."""
    reactor = ProcessReactor()
    creds, _ = provider(reactor, plugin_path, stderr_limit=20)
    with capturedLogs() as events:
        d = creds.credential_for(cluster())
        process = reactor.processes[0]
        process.protocol.outReceived(b'{"status":{"token":"SECRET-TOKEN"}}')
        process.finish(b"", b"E" * 100, code=1)
    status_error(d)
    from twisted.logger import formatEvent

    texts = [formatEvent(e) for e in events]
    assert any("E" * 20 + " [...]" in t for t in texts), texts
    assert not any("E" * 21 in t for t in texts)
    assert not any("SECRET-TOKEN" in t for t in texts)


def test_static_credentials_pass_through(plugin_path: str) -> None:
    """Token and certificate clusters resolve without any process."""
    reactor = ProcessReactor()
    creds, _ = provider(reactor, plugin_path)
    token_cluster = ClusterGateway(
        "t", EndpointSpec(address="https://a"), CredentialSpec("ServiceAccountToken", token="abc")
    )
    assert result_of(creds.credential_for(token_cluster)).authorization == b"Bearer abc"
    unknown = attrs.evolve(token_cluster, credential=CredentialSpec("Kerberos"))
    assert result_of(creds.credential_for(unknown)).check(ServiceUnavailable)
    assert not reactor.processes


def test_cancelled_request_does_not_cancel_the_run(plugin_path: str) -> None:
    """A request that goes away stops waiting; the run continues for the others and the cache."""
    reactor = ProcessReactor()
    creds, _ = provider(reactor, plugin_path)
    gone, staying = creds.credential_for(cluster()), creds.credential_for(cluster())
    gone.cancel()
    gone.addErrback(lambda _f: None)
    reactor.processes[0].finish(credential_json("tok-1", NOW + 3600))
    assert result_of(staying).authorization == b"Bearer tok-1"
    assert result_of(creds.credential_for(cluster())).authorization == b"Bearer tok-1"
    assert len(reactor.processes) == 1
