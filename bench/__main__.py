"""``python -m bench``: run the scenarios side by side, print the tables, save JSON + plots.

    python -m bench                      # everything, ~5 minutes
    python -m bench --quick              # ~1 minute smoke run (short runs, 200 watches)
    python -m bench --only crud,small_get --duration 10
    python -m bench.report bench/results/2026-11-25.json   # re-print a saved run

Results go to ``bench/results/<date>.json`` (``<date>-quick`` for ``--quick``),
with ``<stem>.md`` (the tables) and ``<stem>-*.png`` beside it.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import importlib
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import attrs

from bench.context import MIB, Context, Settings
from bench.topology import LOAD_CORE, PROXY_CORE, Topology

SCENARIOS = (
    "crud",
    "small_get",
    "watches",
    "streams",
    "stalled",
    "isolation",
    "drain",
    "konnectivity",
)
REPO = Path(__file__).resolve().parent.parent


def _version(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    text = (done.stdout + done.stderr).decode(errors="replace").strip()
    return text.splitlines()[0] if text else "?"


def source_fingerprint() -> str:
    """A hash of the gateway's source files as they are on disk (committed or not).

    Each scenario starts a fresh gateway, which imports what is on disk then:
    comparing the fingerprint before and after the run tells whether every
    row measured the same code.
    """
    digest = hashlib.sha1()
    for path in sorted((REPO / "src" / "clustergateway").rglob("*.py")):
        digest.update(str(path.relative_to(REPO)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def _meta() -> dict[str, Any]:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    kubectl = "?"
    try:
        done = subprocess.run(
            ["kubectl", "version", "--client", "-o", "json"], capture_output=True, timeout=20
        )
        kubectl = "kubectl " + json.loads(done.stdout)["clientVersion"]["gitVersion"]
    except (OSError, ValueError, KeyError, subprocess.TimeoutExpired):
        pass
    commit = _version(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
    dirty = _version(["git", "-C", str(REPO), "status", "--porcelain", "--", "src"])
    import twisted

    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "twisted": twisted.__version__,
        "kubectl": kubectl,
        "nginx": _version(["nginx", "-v"]).replace("nginx version: ", ""),
        "wrk": _version(["wrk", "--version"]).split(" [")[0].replace("debian/", ""),
        "go": _version(["go", "version"]).replace("go version ", ""),
        "git_commit": commit + (" (src has uncommitted changes)" if dirty not in ("", "?") else ""),
        "cores": {"server_under_test": PROXY_CORE, "load_and_upstreams": LOAD_CORE},
        "nofile_limit": list(resource.getrlimit(resource.RLIMIT_NOFILE)),
    }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="~1 minute smoke run")
    parser.add_argument("--only", help=f"comma-separated subset of {','.join(SCENARIOS)}")
    parser.add_argument("--duration", type=float, help="seconds per measured wrk run")
    parser.add_argument("--watches", type=int, help="idle watches (default 10000)")
    parser.add_argument("--crud-rounds", type=int, help="create/update/delete rounds (100)")
    parser.add_argument("--splice-mib", type=int, help="MiB per splice transfer (512)")
    parser.add_argument(
        "--profile",
        dest="profile",
        action="store_true",
        default=None,
        help="py-spy the gateway under wrk -c16 (default on, off with --quick)",
    )
    parser.add_argument("--no-profile", dest="profile", action="store_false")
    parser.add_argument("--no-plots", action="store_true")
    parser.add_argument(
        "--upstream-http1",
        action="store_true",
        help="nginx offers HTTP/1.1 only (default: h2 too, as an apiserver)",
    )
    parser.add_argument(
        "--gateway-arg",
        action="append",
        default=[],
        help="extra flag for every gateway started, e.g. --gateway-arg=--access-log",
    )
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    parser.add_argument("--name", help="file stem (default: the date, -quick for --quick)")
    parser.add_argument("--keep-workdir", action="store_true")
    return parser


def _settings(options: argparse.Namespace) -> Settings:
    settings = Settings.quick_settings() if options.quick else Settings()
    changes: dict[str, Any] = {}
    if options.duration:
        changes["duration"] = options.duration
    if options.watches:
        changes["watches"] = options.watches
    if options.crud_rounds:
        changes["crud_rounds"] = options.crud_rounds
    if options.splice_mib:
        changes["splice_bytes"] = options.splice_mib * MIB
    if options.profile is not None:
        changes["profile"] = options.profile
    return attrs.evolve(settings, **changes)


def main(argv: list[str] | None = None) -> int:
    options = _parser().parse_args(argv)
    selected = SCENARIOS
    if options.only:
        selected = tuple(s.strip() for s in options.only.split(",") if s.strip())
        unknown = set(selected) - set(SCENARIOS)
        if unknown:
            raise SystemExit(f"python -m bench: unknown scenario(s) {sorted(unknown)}")
    if (os.cpu_count() or 1) < 2:
        raise SystemExit("python -m bench: needs 2 CPUs (server under test on 0, load on 1)")
    settings = _settings(options)
    # The runner is a load client too (CRUD, splice and stall clients): core 1.
    os.sched_setaffinity(0, {int(LOAD_CORE)})
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    today = datetime.date.today().isoformat()
    stem = options.name or (f"{today}-quick" if options.quick else today)
    options.out.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="cg-bench-"))
    # nginx workers drop root for nobody: they must be able to reach the bodies.
    workdir.chmod(0o755)
    modules = {name: importlib.import_module(f"bench.scenarios.{name}") for name in selected}
    upstreams = {u for m in modules.values() for u in m.UPSTREAMS}
    if settings.profile:
        upstreams.add("nginx")
    results: dict[str, Any] = {
        "meta": _meta(),
        "settings": settings.as_dict(),
        "scenarios": {},
        "errors": {},
    }
    results["meta"]["loadavg_before"] = [round(x, 2) for x in os.getloadavg()]
    results["meta"]["source_before"] = source_fingerprint()
    started = time.monotonic()
    topo = Topology(
        workdir / "run",
        upstream_h2=not options.upstream_http1,
        gateway_args=tuple(options.gateway_arg),
    )
    results["meta"]["gateway_args"] = list(options.gateway_arg)
    ctx = Context(topo, settings, workdir)
    try:
        with topo:
            if "nginx" in upstreams:
                topo.nginx = topo.start_nginx("nginx", LOAD_CORE)
            if "nginx-direct" in upstreams:
                topo.nginx_direct = topo.start_nginx("nginx-direct", PROXY_CORE)
            if "simulator" in upstreams:
                topo.start_simulator()
            if "sink" in upstreams:
                topo.start_sink()
            for name, module in modules.items():
                ctx.log(f"scenario {name}")
                t0 = time.monotonic()
                try:
                    data = module.run(ctx)
                    data["seconds"] = round(time.monotonic() - t0, 1)
                    data["loadavg_after"] = ctx.loadavg()
                    results["scenarios"][name] = data
                except Exception as e:  # noqa: BLE001 - one failed scenario must not lose the rest
                    ctx.log(f"scenario {name} failed: {e}")
                    traceback.print_exc()
                    results["errors"][name] = f"{type(e).__name__}: {str(e)[:500]}"
            if settings.profile:
                from bench.profile import profile_gateway

                for key, suffix, h2 in (("profile", "", False), ("profile_h2", "-h2", True)):
                    try:
                        results[key] = profile_gateway(
                            ctx,
                            options.out / f"{stem}-gateway-profile{suffix}.speedscope.json",
                            h2=h2,
                        )
                    except Exception as e:  # noqa: BLE001
                        results["errors"][key] = f"{type(e).__name__}: {str(e)[:500]}"
    finally:
        if not options.keep_workdir:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"work directory kept: {workdir}", file=sys.stderr)
    results["meta"]["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    results["meta"]["seconds"] = round(time.monotonic() - started, 1)
    results["meta"]["source_after"] = source_fingerprint()
    from bench.report import markdown, plots, update_readme

    json_path = options.out / f"{stem}.json"
    json_path.write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n")
    text = markdown(results)
    (options.out / f"{stem}.md").write_text(text)
    written = [] if options.no_plots else plots(results, options.out, stem)
    sys.stdout.write(text)
    default_out = options.out.resolve() == (REPO / "bench" / "results").resolve()
    if default_out and not options.quick and not options.only:
        update_readme(REPO / "bench" / "README.md", results, stem)
    print(f"\nwrote {json_path}" + "".join(f", {p.name}" for p in written), file=sys.stderr)
    return 1 if results["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
