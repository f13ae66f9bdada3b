"""``Dynamic`` credentials: the client-go exec plugin, run as a child process, cached.

A ``Dynamic`` cluster Secret holds a client-go ``ExecConfig`` (data key
``exec``; spec §2.4).  :class:`ExecCredentialProvider` runs its ``command``
(looked up on the gateway's ``PATH``) with ``args`` and the gateway's
environment plus ``env`` and ``KUBERNETES_EXEC_INFO`` (what client-go sets;
plugins such as ``gke-gcloud-auth-plugin`` read it), via
``reactor.spawnProcess`` — never blocking the reactor — with stdin closed, a
time limit (the plugin is killed when it is over) and caps on what it may
print.  Its stdout is the ``ExecCredential``; its stderr is logged (capped),
the stdout never is.

Fixes of the Go code (quirk 7): the credential is cached per
(cluster, exec config) — a changed Secret runs the new plugin at once — until
one minute before ``status.expirationTimestamp``, and for ``no_expiry_ttl``
seconds when the plugin gives no expiry (Go re-ran it on every request);
concurrent requests for the same cluster wait for one run.  Failures are not
cached: the next request runs the plugin again.

Every failure is a 503 ``Status``: ``cluster <name>: failed to issue
credential from external command: <cause>``, the causes worded as client-go's
(spec §2.4) or, where Go has none (timeout, a signal, oversized output),
in the same style.  No message or log line contains what the plugin printed
on stdout.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import attrs
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from clustergateway.errors import ServiceUnavailable
from clustergateway.proxy.credentials import ResolvedCredential, StaticCredentials
from clustergateway.registry.model import ClusterGateway

__all__ = [
    "ExecConfig",
    "ExecCredential",
    "ExecCredentialProvider",
    "ExecError",
    "ExecSettings",
    "exec_environment",
    "parse_exec_config",
    "parse_exec_output",
]

API_VERSIONS = ("client.authentication.k8s.io/v1", "client.authentication.k8s.io/v1beta1")
_ERROR_PREFIX = "failed to issue credential from external command"


class ExecError(Exception):
    """Why the plugin gave no credential; the message is safe to show a caller."""


@attrs.frozen
class ExecSettings:
    """Limits of exec plugin runs.

    ``timeout``: seconds a run may take before it is killed.
    ``no_expiry_ttl``: seconds a credential without ``expirationTimestamp``
    is reused (0: run for every request, as Go).  ``expiry_margin``: a
    credential is renewed this long before it expires (client-go: 1 min).
    ``stdout_limit``/``stderr_limit``: bytes kept of each stream (a plugin
    printing more stdout is killed; extra stderr is dropped).
    """

    timeout: float = 30.0
    no_expiry_ttl: float = 10.0
    expiry_margin: float = 60.0
    stdout_limit: int = 1024 * 1024
    stderr_limit: int = 4096


@attrs.frozen
class ExecConfig:
    """The parts of a client-go ``ExecConfig`` the gateway uses."""

    api_version: str
    command: str
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()


def parse_exec_config(text: str | None) -> ExecConfig:
    """Parse the ``exec`` JSON (already validated by the registry; checked again here)."""
    if not text:
        raise ExecError("exec config not provided")
    try:
        config = json.loads(text)
    except ValueError as e:
        raise ExecError(f"failed to decode exec config JSON from secret data: {e}") from None
    if not isinstance(config, dict):
        raise ExecError("failed to decode exec config JSON from secret data: not an object")
    api_version = config.get("apiVersion")
    if api_version not in API_VERSIONS:
        shown = json.dumps(api_version)[:80] if isinstance(api_version, str) else '""'
        raise ExecError(f"exec plugin: invalid apiVersion {shown}")
    command = config.get("command")
    if not isinstance(command, str) or not command:
        raise ExecError('missing "command" property on exec config object')
    args = config.get("args") or []
    env = config.get("env") or []
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise ExecError('exec config: "args" must be a list of strings')
    if not isinstance(env, list) or not all(
        isinstance(e, dict) and isinstance(e.get("name"), str) and isinstance(e.get("value"), str)
        for e in env
    ):
        raise ExecError('exec config: "env" must be a list of {"name", "value"} strings')
    return ExecConfig(
        api_version, command, tuple(args), tuple((e["name"], e["value"]) for e in env)
    )


def exec_environment(base: Mapping[str, str], config: ExecConfig) -> dict[str, str]:
    """The plugin's environment: the gateway's, then ``env`` (later wins), then
    ``KUBERNETES_EXEC_INFO`` (non-interactive, as client-go sends it)."""
    env = dict(base)
    env.update(config.env)
    env["KUBERNETES_EXEC_INFO"] = json.dumps(
        {
            "kind": "ExecCredential",
            "apiVersion": config.api_version,
            "spec": {"interactive": False},
        },
        separators=(",", ":"),
    )
    return env


@attrs.frozen
class ExecCredential:
    """What the plugin issued; ``expires_at`` is Unix time, None without expiry."""

    credential: ResolvedCredential
    expires_at: float | None = None


def _timestamp(value: Any) -> float:
    if not isinstance(value, str):
        raise ExecError("decoding stdout: status.expirationTimestamp is not a string")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ExecError(
            "decoding stdout: status.expirationTimestamp is not an RFC 3339 time"
        ) from None
    if parsed.tzinfo is None:
        raise ExecError("decoding stdout: status.expirationTimestamp has no time zone")
    return parsed.timestamp()


def _pem(status: Mapping[str, Any], key: str) -> bytes:
    value = status.get(key)
    if value is None:
        return b""
    if not isinstance(value, str):
        raise ExecError(f"decoding stdout: status.{key} is not a string")
    return value.encode()


def parse_exec_output(stdout: bytes, api_version: str) -> ExecCredential:
    """Decode the plugin's stdout (an ``ExecCredential``); messages never quote it."""
    try:
        document = json.loads(stdout)
    except UnicodeDecodeError:
        raise ExecError("decoding stdout: not UTF-8") from None
    except ValueError as e:
        raise ExecError(f"decoding stdout: {e}") from None
    if not isinstance(document, dict):
        raise ExecError("decoding stdout: not a JSON object")
    got = document.get("apiVersion")
    if got != api_version:
        shown = got[:80] if isinstance(got, str) else ""
        raise ExecError(
            f"exec plugin is configured to use API version {api_version}, "
            f"plugin returned version {shown}"
        )
    kind = document.get("kind")
    if kind not in (None, "", "ExecCredential"):
        shown = kind[:40] if isinstance(kind, str) else type(kind).__name__
        raise ExecError(f"decoding stdout: kind is {shown!r}, want ExecCredential")
    status = document.get("status")
    if status is None:
        raise ExecError("exec plugin didn't return a status field")
    if not isinstance(status, dict):
        raise ExecError("decoding stdout: status is not an object")
    token = status.get("token")
    if token is not None and not isinstance(token, str):
        raise ExecError("decoding stdout: status.token is not a string")
    cert, key = _pem(status, "clientCertificateData"), _pem(status, "clientKeyData")
    expires_at = None
    if status.get("expirationTimestamp") is not None:
        expires_at = _timestamp(status["expirationTimestamp"])
    if token:
        # Token wins over a certificate pair (client-go's order).
        if any(c in token for c in "\r\n\0") or not token.isascii():
            raise ExecError("exec plugin returned a token that cannot be sent in a header")
        return ExecCredential(
            ResolvedCredential(authorization=f"Bearer {token}".encode()), expires_at
        )
    if cert and key:
        return ExecCredential(
            ResolvedCredential(client_certificate=cert, client_key=key), expires_at
        )
    if cert or key:
        raise ExecError("exec plugin returned only certificate or key, not both")
    raise ExecError("exec plugin didn't return a token or cert/key pair")


def _clip(data: bytes, limit: int) -> str:
    text = data[:limit].decode("utf-8", "replace").strip()
    return text + (" [...]" if len(data) > limit else "")


class _PluginProcess(ProcessProtocol):
    """Collects one plugin run's output; ``done`` fires when it ended, ``reason`` says how."""

    def __init__(self, settings: ExecSettings) -> None:
        self.settings = settings
        self.stdout: list[bytes] = []
        self.stdout_size = 0
        self.stderr = b""
        self.stderr_dropped = False
        self.too_much_stdout = False
        self.reason: Failure | None = None
        self.done: Deferred[None] = Deferred()

    def connectionMade(self) -> None:  # noqa: N802
        transport: Any = self.transport
        transport.closeStdin()

    def outReceived(self, data: bytes) -> None:  # noqa: N802
        if self.too_much_stdout:
            return
        self.stdout_size += len(data)
        if self.stdout_size > self.settings.stdout_limit:
            self.too_much_stdout = True
            self.stdout = []
            self.kill()
            return
        self.stdout.append(data)

    def errReceived(self, data: bytes) -> None:  # noqa: N802
        room = self.settings.stderr_limit + 1 - len(self.stderr)
        if room > 0:
            self.stderr += data[:room]

    def kill(self) -> None:
        transport: Any = self.transport
        try:
            transport.signalProcess("KILL")
        except Exception:  # already gone
            pass

    def processEnded(self, reason: Failure) -> None:  # noqa: N802
        self.reason = reason
        self.done.callback(None)


@attrs.define(eq=False)
class _Run:
    """One plugin run that any number of requests wait for."""

    waiters: list[Deferred[ResolvedCredential]] = attrs.field(factory=list)

    def wait(self) -> Deferred[ResolvedCredential]:
        d: Deferred[ResolvedCredential] = Deferred()
        self.waiters.append(d)
        return d

    def settle(self, result: ResolvedCredential | BaseException) -> None:
        waiters, self.waiters = self.waiters, []
        for d in waiters:
            if d.called:
                continue  # cancelled by its request
            if isinstance(result, BaseException):
                d.errback(result)
            else:
                d.callback(result)


@attrs.frozen
class _Cached:
    exec_config: str
    credential: ResolvedCredential
    fresh_until: float


@attrs.define
class ExecCredentialProvider:
    """A :class:`~clustergateway.proxy.credentials.CredentialProvider` that also runs
    exec plugins; static credentials (token, certificate) pass straight through.

    ``environ`` is the gateway's environment (``os.environ`` in ``tap``): the
    ``PATH`` the command is looked up on and the base of the plugin's
    environment.  ``metrics`` (optional) gets ``exec_credential(cluster, ok)``
    per run.
    """

    reactor: Any  # IReactorProcess and IReactorTime
    environ: Mapping[str, str] = attrs.field(factory=lambda: dict(os.environ))
    settings: ExecSettings = attrs.field(factory=ExecSettings)
    metrics: Any = None
    _cache: dict[str, _Cached] = attrs.field(factory=dict, init=False)
    _runs: dict[tuple[str, str], _Run] = attrs.field(factory=dict, init=False)
    _static: StaticCredentials = attrs.field(factory=StaticCredentials, init=False)
    _log = Logger()

    def credential_for(self, cluster: ClusterGateway) -> Deferred[ResolvedCredential]:
        spec = cluster.credential
        if spec is None or spec.type != "Dynamic":
            try:
                return succeed(self._static.resolve(cluster))
            except ServiceUnavailable as e:
                return fail(e)
        exec_config = spec.exec_config or ""
        cached = self._cache.get(cluster.name)
        if cached is not None:
            if cached.exec_config == exec_config and self.reactor.seconds() < cached.fresh_until:
                return succeed(cached.credential)
            del self._cache[cluster.name]
        key = (cluster.name, exec_config)
        run = self._runs.get(key)
        if run is None:
            run = self._runs[key] = _Run()
            waiter = run.wait()
            self._start(cluster.name, exec_config, run)
            return waiter
        return run.wait()

    def forget(self, cluster: str) -> None:
        """Drop a cluster's cached credential (its Secret was deleted, say)."""
        self._cache.pop(cluster, None)

    def _start(self, cluster: str, exec_config: str, run: _Run) -> None:
        d = Deferred.fromCoroutine(self._issue(cluster, exec_config))

        def finished(result: ExecCredential | Failure) -> None:
            self._runs.pop((cluster, exec_config), None)
            ok = not isinstance(result, Failure)
            if self.metrics is not None:
                self.metrics.exec_credential(cluster, ok)
            if isinstance(result, Failure):
                if isinstance(result.value, ExecError):
                    cause = str(result.value)
                else:
                    self._log.failure(
                        "Exec plugin of cluster {cluster}: unexpected error",
                        result,
                        cluster=cluster,
                    )
                    cause = "internal error while running the exec plugin"
                run.settle(
                    ServiceUnavailable(
                        f"cluster {cluster}: {_ERROR_PREFIX}: {cause}",
                        {"name": cluster, "kind": "clustergateways"},
                    )
                )
                return
            self._remember(cluster, exec_config, result)
            run.settle(result.credential)

        d.addBoth(finished)

    def _remember(self, cluster: str, exec_config: str, issued: ExecCredential) -> None:
        now = self.reactor.seconds()
        if issued.expires_at is None:
            fresh_until = now + self.settings.no_expiry_ttl
        else:
            fresh_until = issued.expires_at - self.settings.expiry_margin
        if fresh_until > now:
            self._cache[cluster] = _Cached(exec_config, issued.credential, fresh_until)

    async def _issue(self, cluster: str, exec_config: str) -> ExecCredential:
        config = parse_exec_config(exec_config)
        stdout = await self._run_plugin(cluster, config)
        return parse_exec_output(stdout, config.api_version)

    def _run_plugin(self, cluster: str, config: ExecConfig) -> Deferred[bytes]:
        path = shutil.which(config.command, path=self.environ.get("PATH", os.defpath))
        if path is None:
            raise ExecError(f"exec: executable {config.command} not found")
        process = _PluginProcess(self.settings)
        try:
            self.reactor.spawnProcess(
                process,
                path,
                [config.command, *config.args],
                env=exec_environment(self.environ, config),
                childFDs={0: "w", 1: "r", 2: "r"},
            )
        except OSError as e:
            raise ExecError(f"exec: executable {path} could not be started: {e.strerror}") from None
        timed_out: list[bool] = []

        def time_out() -> None:
            timed_out.append(True)
            process.kill()

        timer: Any = self.reactor.callLater(self.settings.timeout, time_out)

        def ended(_: None) -> bytes:
            if timer.active():
                timer.cancel()
            stderr = _clip(process.stderr, self.settings.stderr_limit)
            assert process.reason is not None
            error = self._outcome(path, process.reason, process, bool(timed_out))
            if stderr:
                level = self._log.warn if error is not None else self._log.debug
                level(
                    "Exec plugin {path} of cluster {cluster} wrote to stderr: {stderr}",
                    path=path,
                    cluster=cluster,
                    stderr=stderr,
                )
            if error is not None:
                self._log.warn(
                    "Exec plugin of cluster {cluster} failed: {error}",
                    cluster=cluster,
                    error=str(error),
                )
                raise error
            return b"".join(process.stdout)

        return process.done.addCallback(ended)

    def _outcome(
        self, path: str, reason: Failure, process: _PluginProcess, timed_out: bool
    ) -> ExecError | None:
        if timed_out:
            return ExecError(
                f"exec: executable {path} did not finish within "
                f"{self.settings.timeout:g}s and was killed"
            )
        if process.too_much_stdout:
            return ExecError(
                f"exec: executable {path} wrote more than {self.settings.stdout_limit} bytes "
                "to stdout and was killed"
            )
        if isinstance(reason.value, ProcessDone):
            return None
        value = reason.value
        if isinstance(value, ProcessTerminated):
            if value.exitCode is not None:
                return ExecError(f"exec: executable {path} failed with exit code {value.exitCode}")
            if value.signal is not None:
                return ExecError(f"exec: executable {path} was killed by signal {value.signal}")
        return ExecError(f"exec: executable {path} failed")
