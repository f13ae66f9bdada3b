"""Scenario: SIGTERM with many open watches and exec sessions — how the gateway drains.

A fresh gateway (``--shutdown-delay-duration=1s --shutdown-grace-period=10s``) in
front of the simulated cluster; ``watches`` (1,000; ``--quick`` 200) HTTP/1.1
watches through it, each its own TLS connection (asyncio), and 10 ``kubectl exec``
sessions running ``sh -c 'sleep 3; echo done'``.  Once every watch has its head
and the sessions run, the gateway gets SIGTERM.  Reported: seconds from SIGTERM
to exit and the exit status; per watch whether it ended cleanly (the terminating
chunk) or was cut (EOF without it); per exec session its exit status and output.
"""

from __future__ import annotations

import asyncio
import signal
import ssl
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import yaml

from bench.context import Context

__all__ = ["NAME", "UPSTREAMS", "run"]

NAME = "drain"
UPSTREAMS = ("simulator",)
EXECS = 10
WATCH = "/api/v1/namespaces/default/configmaps?watch=1"


async def _watch(port: int, context: ssl.SSLContext, path: str, state: dict[str, Any]) -> None:
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
    except OSError:
        state["failed"] += 1
        return
    writer.write(f"GET {path} HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer b\r\n\r\n".encode())
    data = b""
    headed = False
    try:
        while True:
            chunk = await reader.read(65536)
            if not chunk:
                break
            data = (data + chunk)[-64:] if headed else data + chunk
            if not headed and b"\r\n\r\n" in data:
                headed = True
                state["heads"] += 1
            if data.endswith(b"\r\n0\r\n\r\n"):
                state["clean"] += 1
                return
        state["cut"] += 1
    except OSError:
        state["cut"] += 1
    finally:
        writer.close()


async def _watches(port: int, ca: str, path: str, count: int, state: dict[str, Any]) -> None:
    context = ssl.create_default_context(cafile=ca)
    context.set_alpn_protocols(["http/1.1"])
    tasks = []
    for _ in range(count):
        tasks.append(asyncio.ensure_future(_watch(port, context, path, state)))
        await asyncio.sleep(0.002)  # a gentle ramp
    await asyncio.gather(*tasks)


def _kubeconfig(path: Path, server: str, ca: str) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "g", "cluster": {"server": server, "certificate-authority": ca}}],
        "users": [{"name": "u", "user": {"token": "bench"}}],
        "contexts": [{"name": "g", "context": {"cluster": "g", "user": "u"}}],
        "current-context": "g",
    }
    path.write_text(yaml.safe_dump(config))
    return path


def run(ctx: Context) -> dict[str, Any]:
    topo = ctx.topo
    count = 200 if ctx.settings.quick else min(ctx.settings.watches, 1000)
    delay, grace = 1.0, 10.0
    state: dict[str, Any] = {"heads": 0, "clean": 0, "cut": 0, "failed": 0}
    args = (f"--shutdown-delay-duration={delay:g}s", f"--shutdown-grace-period={grace:g}s")
    with topo.gateway(extra_args=args) as gateways:
        target = gateways["simulator"]
        proc = target.process
        ca = str(target.ca)
        thread = threading.Thread(
            target=lambda: asyncio.run(
                _watches(target.port, ca, target.prefix + WATCH, count, state)
            ),
            daemon=True,
        )
        thread.start()
        deadline = time.monotonic() + 120
        while state["heads"] + state["failed"] < count and time.monotonic() < deadline:
            time.sleep(0.1)
        ctx.log(f"drain: {state['heads']} watches open, starting {EXECS} exec sessions")
        kubeconfig = _kubeconfig(ctx.workdir / "drain.kubeconfig", target.base, ca)
        execs = [
            subprocess.Popen(
                ["kubectl", "--kubeconfig", str(kubeconfig), "exec", "demo", "--"]
                + ["sh", "-c", "sleep 3; echo done"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            for _ in range(EXECS)
        ]
        time.sleep(1.5)  # the sessions are up (each sleeps 3 s)
        signalled = time.monotonic()
        proc.popen.send_signal(signal.SIGTERM)
        code = proc.popen.wait(delay + grace + 60)
        exited = time.monotonic() - signalled
        thread.join(60)
        outcomes = []
        for process in execs:
            out, _err = process.communicate(timeout=60)
            outcomes.append((process.returncode, out.decode().strip()))
    exec_ok = sum(1 for rc, out in outcomes if rc == 0 and out == "done")
    results = {
        "watches": count,
        "watch_heads": state["heads"],
        "watches_clean": state["clean"],
        "watches_cut": state["cut"],
        "watches_failed": state["failed"],
        "execs": EXECS,
        "execs_finished_ok": exec_ok,
        "exit_code": code,
        "seconds_to_exit": round(exited, 2),
        "shutdown_delay": delay,
        "shutdown_grace": grace,
    }
    ctx.log(f"  drain: {results}")
    return results
