"""``python -m bench.soak``: hostile input, then minutes of mixed load; is the gateway flat?

One gateway process (standalone, as ``make bench`` starts it) in front of the
simulated cluster.  First a burst of hostile requests
(:mod:`clustergateway.testing.hostile`, 10,000 by default, over HTTP/1.1 and
HTTP/2), then ``--minutes`` of mixed load:

* CRUD: ConfigMaps created, read, updated and deleted over keep-alive HTTP/1.1;
* watches opening and closing: ``--watches`` held at once, each for 1–5 s;
* exec sessions: the real ``kubectl`` (``exec demo -- echo``) every 5 s;
* a trickle of hostile requests (5 a second).

Every 10 s the gateway's RSS, open descriptors and TCP connections to the
simulated cluster are sampled; the last sample is taken after the load stops
and the gateway had 15 s to settle.  Flat is the target.  Writes
``bench/results/<date>-soak.json``, ``.md`` and ``.png``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import random
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.procs import rss_kib
from bench.topology import Target, Topology
from clustergateway.testing.hostile import (
    h2_cases,
    h2_status,
    http1_cases,
    http1_head,
    proxy_targets,
)

REPO = Path(__file__).resolve().parent.parent
API = "/apis/cluster.core.oam.dev/v1alpha1/clustergateways"


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def upstream_sockets(pid: int, port: int) -> int:
    """TCP connections of process ``pid`` whose remote port is ``port`` (the cluster's)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    count = 0
    for table in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            remote_port = int(fields[2].rsplit(":", 1)[1], 16)
            if remote_port == port and fields[9] in inodes and fields[3] == "01":
                count += 1
    return count


class Load:
    """The mixed load's workers; each loops until ``stop`` is set and counts what it did."""

    def __init__(self, target: Target, kubeconfig: Path, kubectl: str) -> None:
        self.target = target
        self.kubeconfig = kubeconfig
        self.kubectl = kubectl
        self.stop = threading.Event()
        self.counts: dict[str, int] = {}
        self.errors: dict[str, int] = {}
        self.lock = threading.Lock()

    def count(self, what: str, ok: bool = True) -> None:
        with self.lock:
            table = self.counts if ok else self.errors
            table[what] = table.get(what, 0) + 1

    def crud(self, worker: int) -> None:
        conn = self.target.connection(timeout=30)
        path = f"{self.target.prefix}/api/v1/namespaces/default/configmaps"
        i = 0
        while not self.stop.is_set():
            name = f"soak-{worker}-{i % 50}"
            i += 1
            body = json.dumps({"metadata": {"name": name}, "data": {"i": str(i)}})
            steps: list[tuple[str, str, str | None]] = [
                ("POST", path, body),
                ("GET", f"{path}/{name}", None),
                ("PUT", f"{path}/{name}", body),
                ("DELETE", f"{path}/{name}", None),
            ]
            for method, url, payload in steps:
                try:
                    headers = {"Content-Type": "application/json"} if payload else {}
                    conn.request(method, url, body=payload, headers=headers)
                    response = conn.getresponse()
                    response.read()
                    self.count("crud", response.status < 500)
                except (OSError, ConnectionError, Exception):  # noqa: BLE001 - count, reconnect
                    self.count("crud", False)
                    conn.close()
                    conn = self.target.connection(timeout=30)

    def watch(self, worker: int) -> None:
        rng = random.Random(worker)
        context = self.target.ssl_context()
        path = f"{self.target.prefix}/api/v1/namespaces/default/configmaps?watch=true"
        while not self.stop.is_set():
            try:
                with socket.create_connection((self.target.host, self.target.port), 10) as raw:
                    sock: Any = raw
                    if context is not None:
                        sock = context.wrap_socket(raw, server_hostname=self.target.host)
                    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: gw\r\n\r\n".encode())
                    sock.settimeout(1)
                    head = b""
                    deadline = time.monotonic() + rng.uniform(1, 5)
                    while time.monotonic() < deadline and not self.stop.is_set():
                        try:
                            head += sock.recv(65536)
                        except TimeoutError:
                            pass
                    ok = head.startswith(b"HTTP/1.1 200")
                    self.count("watch" if ok else f"watch answered {head[:20]!r}", ok)
            except (OSError, ssl.SSLError) as e:
                self.count(f"watch: {type(e).__name__}", False)

    def exec(self, _worker: int) -> None:
        while not self.stop.wait(5):
            done = subprocess.run(
                [
                    self.kubectl,
                    "--kubeconfig",
                    str(self.kubeconfig),
                    "exec",
                    "demo",
                    "--",
                    "echo",
                    "soak",
                ],
                capture_output=True,
                timeout=60,
            )
            ok = done.returncode == 0 and done.stdout == b"soak\n"
            reason = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["?"]
            self.count("exec" if ok else f"exec: {reason[0][:120]}", ok)

    def hostile(self, _worker: int) -> None:
        rng = random.Random(7)
        targets = proxy_targets(
            self.target.prefix, f"{API}/unreachable/proxy", f"{API}/nope/proxy", "hostile"
        )
        cases = http1_cases(rng, targets, 10**9)
        while not self.stop.wait(0.2):
            ok = send_http1(self.target, next(cases))
            self.count("hostile", ok)


def send_http1(target: Target, request: bytes) -> bool:
    """Send one request; False only for the gateway's own 500."""
    return not http1_head(target.port, str(target.ca), request).startswith(b"HTTP/1.1 500")


def send_h2(target: Target, headers: list[tuple[bytes, bytes]]) -> bool:
    return h2_status(target.port, str(target.ca), headers) != b"500"


def hostile_burst(target: Target, root_prefix: str, total: int, seed: int = 1) -> dict[str, int]:
    """``total`` hostile requests, four in five over HTTP/1.1, 16 at a time."""
    rng = random.Random(seed)
    # Namespace "hostile": the cases' DELETEs must not remove the load's pod.
    targets = proxy_targets(root_prefix, f"{API}/unreachable/proxy", f"{API}/nope/proxy", "hostile")
    h2_total = total // 5
    with ThreadPoolExecutor(16) as pool:
        ok1 = sum(
            pool.map(lambda r: send_http1(target, r), http1_cases(rng, targets, total - h2_total))
        )
        ok2 = sum(pool.map(lambda h: send_h2(target, h), h2_cases(rng, targets, h2_total)))
    return {"requests": total, "own_500": total - ok1 - ok2}


def sample(pid: int, port: int, t0: float, phase: str) -> dict[str, Any]:
    return {
        "t": round(time.monotonic() - t0, 1),
        "phase": phase,
        "rss_kib": rss_kib(pid),
        "fds": fds(pid),
        "upstream_sockets": upstream_sockets(pid, port),
    }


def run(minutes: float, hostile: int, watches: int, workdir: Path) -> dict[str, Any]:
    kubectl = shutil.which("kubectl.1.33") or _versioned_kubectl("1.33") or "kubectl"
    topo = Topology(workdir / "run")
    with topo:
        topo.start_simulator()
        sim_port = topo.ports["simulator"]
        with topo.gateway() as targets:
            target = targets["simulator"]
            pid = target.process.pid
            kubeconfig = workdir / "gateway.kubeconfig"
            kubeconfig.write_text(
                json.dumps(
                    {
                        "apiVersion": "v1",
                        "kind": "Config",
                        "clusters": [
                            {
                                "name": "gw",
                                "cluster": {
                                    "server": target.base,
                                    "certificate-authority": str(target.ca),
                                },
                            }
                        ],
                        "users": [{"name": "u", "user": {"token": "soak"}}],
                        "contexts": [{"name": "gw", "context": {"cluster": "gw", "user": "u"}}],
                        "current-context": "gw",
                    }
                )
            )
            load = Load(target, kubeconfig, kubectl)
            t0 = time.monotonic()
            samples = []
            # Warm every path once, then the baseline.
            subprocess.run(
                [kubectl, "--kubeconfig", str(kubeconfig), "exec", "demo", "--", "echo", "warm"],
                capture_output=True,
                timeout=60,
            )
            hostile_burst(target, target.prefix, 200, seed=99)
            time.sleep(2)
            samples.append(sample(pid, sim_port, t0, "baseline"))
            burst = hostile_burst(target, target.prefix, hostile)
            time.sleep(5)
            samples.append(sample(pid, sim_port, t0, "after hostile burst"))
            workers: list[tuple[Callable[[int], None], int]] = [
                (load.crud, 4),
                (load.watch, watches),
                (load.exec, 1),
                (load.hostile, 1),
            ]
            threads = [
                threading.Thread(target=fn, args=(i,), daemon=True)
                for fn, n in workers
                for i in range(n)
            ]
            for thread in threads:
                thread.start()
            end = time.monotonic() + minutes * 60
            while time.monotonic() < end:
                time.sleep(min(10, max(0, end - time.monotonic())))
                samples.append(sample(pid, sim_port, t0, "mixed load"))
            load.stop.set()
            for thread in threads:
                thread.join(30)
            time.sleep(15)
            samples.append(sample(pid, sim_port, t0, "settled"))
    base = samples[0]
    return {
        "minutes": minutes,
        "watches_held": watches,
        "hostile_burst": burst,
        "counts": load.counts,
        "errors": load.errors,
        "samples": samples,
        "growth_after_hostile_kib": samples[1]["rss_kib"] - base["rss_kib"],
        "growth_settled_kib": samples[-1]["rss_kib"] - base["rss_kib"],
        "fds_baseline_vs_settled": [base["fds"], samples[-1]["fds"]],
    }


def _versioned_kubectl(version: str) -> str | None:
    real = shutil.which("kubectl")
    if real is None:
        return None
    candidate = Path(os.path.realpath(real)).parent / f"kubectl.{version}"
    return str(candidate) if candidate.exists() else None


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = results["samples"]
    ts = [s["t"] for s in samples]
    fig, axes = plt.subplots(3, 1, figsize=(8, 8), sharex=True)
    series = (
        ("rss_kib", "RSS (MiB)", 1 / 1024),
        ("fds", "open descriptors", 1),
        ("upstream_sockets", "connections to the cluster", 1),
    )
    for ax, (key, label, scale) in zip(axes, series, strict=True):
        ax.plot(ts, [s[key] * scale for s in samples], marker="o", color="#e1812c")
        ax.set_ylabel(label)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    axes[0].set_title(
        f"Gateway under {results['minutes']:g} min of mixed load "
        f"after {results['hostile_burst']['requests']:,} hostile requests"
    )
    axes[-1].set_xlabel("seconds")
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def markdown(results: dict[str, Any]) -> str:
    lines = [
        f"# Soak: {results['minutes']:g} minutes, {results['meta']['date']}, "
        f"commit {results['meta']['commit']}",
        "",
        "| t (s) | phase | RSS (MiB) | descriptors | connections to the cluster |",
        "|---|---|---|---|---|",
    ]
    for s in results["samples"]:
        lines.append(
            f"| {s['t']} | {s['phase']} | {s['rss_kib'] / 1024:.1f} | {s['fds']} "
            f"| {s['upstream_sockets']} |"
        )
    lines += [
        "",
        f"Hostile burst: {results['hostile_burst']['requests']:,} requests, "
        f"{results['hostile_burst']['own_500']} answered with the gateway's own 500; "
        f"RSS {results['growth_after_hostile_kib'] / 1024:+.1f} MiB after it, "
        f"{results['growth_settled_kib'] / 1024:+.1f} MiB at the end; descriptors "
        f"{results['fds_baseline_vs_settled'][0]} → {results['fds_baseline_vs_settled'][1]}.",
        f"Done: {results['counts']}; failed: {results['errors'] or 'none'}.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--hostile", type=int, default=10_000)
    parser.add_argument("--watches", type=int, default=50)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    options = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="cg-soak-"))
    workdir.chmod(0o755)
    try:
        results = run(options.minutes, options.hostile, options.watches, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    results["meta"] = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": commit,
    }
    stem = f"{datetime.date.today().isoformat()}-soak"
    options.out.mkdir(parents=True, exist_ok=True)
    (options.out / f"{stem}.json").write_text(json.dumps(results, indent=1) + "\n")
    text = markdown(results)
    (options.out / f"{stem}.md").write_text(text)
    plot(results, options.out / f"{stem}.png")
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
