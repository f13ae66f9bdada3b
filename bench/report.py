"""Turning a run's results into Markdown tables, the targets table and PNG plots.

Everything here reads the results dict only (the same one written as JSON),
so a report can be rebuilt from any saved ``bench/results/<date>.json``:
``python -m bench.report bench/results/<date>.json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["markdown", "plots", "targets_markdown", "targets_table", "update_readme"]

ORDER = ("direct", "kubectl-proxy", "go-proxy", "gateway")
#: The three proxies, in the order of the targets table's columns.
NAMES = ("kubectl-proxy", "go-proxy", "gateway")
LABELS = {
    "direct": "direct",
    "kubectl-proxy": "kubectl proxy",
    "go-proxy": "Go proxy",
    "gateway": "gateway",
}


def _get(data: Any, *keys: Any) -> Any:
    for key in keys:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def _ratio(value: float | None, base: float | None) -> float | None:
    if value is None or not base:
        return None
    return value / base


def _fmt(value: float | None, digits: int = 2, suffix: str = "") -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float) and abs(value) >= 100:
        return f"{value:,.0f}{suffix}"
    return f"{value:,.{digits}f}{suffix}"


def _x(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}×"


def _pcts(latency_us: dict[str, float], keys: tuple[str, ...]) -> str:
    return " / ".join(f"{latency_us[k] / 1000:.3f}" for k in keys)


PROXY, LOAD = "0", "1"


def _errors_note(row: dict[str, Any]) -> str:
    """`` (N failed)`` when wrk counted errors (non-2xx/3xx answers, resets, timeouts)."""
    failed = sum(row.get("errors", {}).values())
    return f" ({failed} failed)" if failed else ""


def _busy(ours: float | None, row: dict[str, Any], core: str) -> str:
    """``ours / all``: our processes' share of a core and every process's (other work)."""
    every = _get(row, "core_busy_all", core)
    text = "n/a" if ours is None else f"{ours:.2f}"
    return text + (f" / {every:.2f}" if every is not None else "")


def _ms(us: float | None) -> float | None:
    return None if us is None else us / 1000


def _h2_shapes(small_get: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The HTTP/2 rows by shape (``"16x1"``, ``"4x32"``); older runs had one 16×1 row."""
    h2 = small_get.get("h2") or {}
    if "connections" in h2:
        return {f"{h2['connections']}x1": h2}
    return {k: v for k, v in h2.items() if isinstance(v, dict)}


def targets_table(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The performance targets with the measured values (None: not measured).

    Each row has the value of ``kubectl proxy``, the Go proxy and the gateway
    from the same run and the gateway's ratio to each; ``met`` is judged on
    the goal's own terms (a ratio, or an absolute bound).
    """
    scen = results.get("scenarios", {})
    rows: list[dict[str, Any]] = []

    def add(
        name: str,
        goal: str,
        values: tuple[float | None, float | None, float | None],
        shown: tuple[str, str, str],
        ok: bool | None,
    ) -> None:
        kp, go, gw = values
        rows.append(
            {
                "target": name,
                "goal": goal,
                "kubectl_proxy": shown[0],
                "go_proxy": shown[1],
                "gateway": shown[2],
                "vs_kubectl_proxy": _ratio(gw, kp),
                "vs_go_proxy": _ratio(gw, go),
                "met": ok,
            }
        )

    def at_least(ratio: float | None, bound: float) -> bool | None:
        return None if ratio is None else ratio >= bound

    sg = scen.get("small_get", {})
    kp, go, gw = (_get(sg, "max_rate", "16", n, "rps") for n in NAMES)
    ok_kp, ok_go = at_least(_ratio(gw, kp), 1.0), at_least(_ratio(gw, go), 0.8)
    add(
        "HTTP/1.1 small GET, 16 connections",
        "≥ 1.0× kubectl proxy, ≥ 0.8× Go",
        (kp, go, gw),
        (_fmt(kp, 0, " req/s"), _fmt(go, 0, " req/s"), _fmt(gw, 0, " req/s")),
        None if ok_kp is None or ok_go is None else ok_kp and ok_go,
    )
    shapes = _h2_shapes(sg)
    for shape, label, bound in (
        ("16x1", "16 connections × 1 stream (kubectl)", 0.8),
        ("4x32", "4 connections × 32 streams (the aggregator)", 1.0),
    ):
        go = _get(shapes, shape, "go-proxy", "rps")
        gw = _get(shapes, shape, "gateway", "rps")
        add(
            f"HTTP/2 small GET, {label}",
            f"≥ {bound:.1f}× Go",
            (None, go, gw),
            ("n/a (HTTP/1.1 only)", _fmt(go, 0, " req/s"), _fmt(gw, 0, " req/s")),
            at_least(_ratio(gw, go), bound),
        )
    kp, go, gw = (_get(sg, "max_rate", "16", n, "cpu_us_per_request") for n in NAMES)
    add(
        "CPU per proxied request (HTTP/1.1, 16 connections)",
        "≤ 45 µs",
        (kp, go, gw),
        (_fmt(kp, 1, " µs"), _fmt(go, 1, " µs"), _fmt(gw, 1, " µs")),
        None if gw is None else gw <= 45,
    )
    d50 = _get(sg, "max_rate", "1", "direct", "latency_us", "p50")
    added = [
        None if p50 is None or d50 is None else (p50 - d50) / 1000
        for p50 in (_get(sg, "max_rate", "1", n, "latency_us", "p50") for n in NAMES)
    ]
    add(
        "Added p50 latency over direct, 1 connection",
        "≤ 0.15 ms",
        (added[0], added[1], added[2]),
        (_fmt(added[0], 3, " ms"), _fmt(added[1], 3, " ms"), _fmt(added[2], 3, " ms")),
        None if added[2] is None else added[2] <= 0.15,
    )
    kp, go, gw = (_get(sg, "fixed_rate", n, "latency_us", "p99") for n in NAMES)
    r = _ratio(gw, kp)
    add(
        "p99 at a fixed rate",
        "≤ 1.5× kubectl proxy",
        (kp, go, gw),
        (_fmt(_ms(kp), 3, " ms"), _fmt(_ms(go), 3, " ms"), _fmt(_ms(gw), 3, " ms")),
        None if r is None else r <= 1.5,
    )
    st = scen.get("streams", {})
    streams = [
        ("GET of 1 MiB bodies", ("large_get", "1m"), "≥ 1.0× kubectl proxy", "kubectl-proxy"),
        ("GET of 64 MiB bodies", ("large_get", "64m"), "≥ 1.0× Go", "go-proxy"),
        ("upgrade splice (down)", ("splice", "down"), "≥ 1.0× Go", "go-proxy"),
        ("upgrade splice (up)", ("splice", "up"), "≥ 1.0× Go", "go-proxy"),
    ]
    for label, keys, goal, base in streams:
        kp, go, gw = (_get(st, *keys, n, "mib_per_s") for n in NAMES)
        add(
            f"Stream: {label}",
            goal,
            (kp, go, gw),
            (_fmt(kp, 0, " MiB/s"), _fmt(go, 0, " MiB/s"), _fmt(gw, 0, " MiB/s")),
            at_least(_ratio(gw, kp if base == "kubectl-proxy" else go), 1.0),
        )
    wt = scen.get("watches", {})
    count = wt.get("count")
    kp, go, gw = (_get(wt, "targets", n, "rss_per_watch_kib") for n in NAMES)
    add(
        f"RSS per idle watch ({count or '?'} watches)",
        "≤ 40 KiB",
        (kp, go, gw),
        (_fmt(kp, 1, " KiB"), _fmt(go, 1, " KiB"), _fmt(gw, 1, " KiB")),
        None if gw is None else gw <= 40,
    )
    sl = scen.get("stalled", {})
    kp, go, gw = (
        None if kib is None else kib / 1024
        for kib in (_get(sl, "targets", n, "growth_kib") for n in NAMES)
    )
    add(
        "RSS growth, stalled client on 300 MiB",
        "≤ 5 MiB",
        (kp, go, gw),
        (_fmt(kp, 2, " MiB"), _fmt(go, 2, " MiB"), _fmt(gw, 2, " MiB")),
        None if gw is None else gw <= 5,
    )
    return rows


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _met(ok: bool | None) -> str:
    return {True: "yes", False: "**no**", None: "n/a"}[ok]


def targets_markdown(results: dict[str, Any]) -> str:
    """The targets table alone (what the README keeps): the gateway's ratio to each peer."""
    return _table(
        [
            "Target",
            "Goal",
            "kubectl proxy",
            "Go proxy",
            "gateway",
            "gateway ÷ kubectl proxy",
            "gateway ÷ Go",
            "Met",
        ],
        [
            [
                r["target"],
                r["goal"],
                r["kubectl_proxy"],
                r["go_proxy"],
                r["gateway"],
                _x(r["vs_kubectl_proxy"]),
                _x(r["vs_go_proxy"]),
                _met(r["met"]),
            ]
            for r in targets_table(results)
        ],
    )


_START, _END = "<!-- latest-targets -->", "<!-- /latest-targets -->"


def update_readme(readme: Path, results: dict[str, Any], stem: str) -> bool:
    """Replace the latest-targets section of ``readme``; False if it has no markers."""
    text = readme.read_text()
    if _START not in text or _END not in text:
        return False
    meta = results.get("meta", {})
    body = (
        f"Run {meta.get('date')} (`results/{stem}.json`, all tables in `results/{stem}.md`), "
        f"gateway at {meta.get('git_commit')}, {meta.get('kubectl')}:\n\n"
        + targets_markdown(results)
    )
    if meta.get("source_before") != meta.get("source_after"):
        body += (
            "\n\nThe gateway's source changed during this run (others were editing the "
            "proxy): scenarios may have measured different code."
        )
    head, rest = text.split(_START, 1)
    _, tail = rest.split(_END, 1)
    readme.write_text(f"{head}{_START}\n{body}\n{_END}{tail}")
    return True


def markdown(results: dict[str, Any]) -> str:
    """The whole report: targets first, then one table per scenario."""
    meta = results.get("meta", {})
    scen = results.get("scenarios", {})
    out = [
        f"Run {meta.get('date', '?')} on {meta.get('cpu', '?')} ({meta.get('cpus', '?')} CPUs), "
        f"gateway at {meta.get('git_commit', '?')}, {meta.get('kubectl', '?')}, "
        f"{meta.get('nginx', '?')}, {meta.get('wrk', '?')}, Go {meta.get('go', '?')} (Go proxy); "
        f"load average before "
        f"{meta.get('loadavg_before')}, after {meta.get('loadavg_after')}. "
        "Cores: the server under test alone on core 0; wrk/clients and upstreams on core 1.",
        "",
    ]
    if meta.get("source_before") != meta.get("source_after"):
        out += [
            f"**The gateway's source changed during this run** (fingerprint "
            f"{meta.get('source_before')} → {meta.get('source_after')}): each scenario starts a "
            "fresh gateway, so rows may have measured different code.",
            "",
        ]
    out += [
        "### Targets (gateway vs kubectl proxy and the Go proxy, same run)",
        "",
        targets_markdown(results),
    ]
    crud = scen.get("crud")
    if crud and "targets" in crud:
        rows = _crud_rows(crud["targets"], ORDER)
        out += [
            "",
            f"### 1. ConfigMap create → update → delete, {crud['rounds']} rounds "
            "(ms: fastest / slowest / mean ± sd)",
            "",
            _table(["Step", *(LABELS[n] for n in ORDER)], rows),
        ]
    sg = scen.get("small_get")
    if sg and sg.get("max_rate"):
        rows = []
        for conns, by_target in sg["max_rate"].items():
            kp = _get(by_target, "kubectl-proxy", "rps")
            go = _get(by_target, "go-proxy", "rps")
            for name in ORDER:
                r = by_target.get(name)
                if not r:
                    continue
                lat = r["latency_us"]
                rows.append(
                    [
                        conns,
                        name,
                        _fmt(r["rps"], 0),
                        _x(_ratio(r["rps"], kp)),
                        _x(_ratio(r["rps"], go)),
                        _pcts(lat, ("p50", "p90", "p99")),
                        _fmt(r["cpu_us_per_request"], 1),
                        _fmt(r["cpu_s_per_1000"], 4),
                        _busy(r["server_cpu_share"], r, PROXY),
                        _busy(r["load_core_busy"], r, LOAD),
                        str(sum(r["errors"].values())),
                    ]
                )
        out += [
            "",
            f"### 2. Small GETs ({sg.get('body_bytes')}-byte ConfigMap from nginx over "
            "TLS; upstream protocol used: "
            + ", ".join(f"{k} {v}" for k, v in sg.get("upstream_protocol", {}).items())
            + ")",
            "",
            "Client side: direct, the Go proxy and the gateway over TLS, kubectl proxy over "
            "plain HTTP.",
            "",
            _table(
                [
                    "Conns",
                    "Target",
                    "req/s",
                    "× kubectl proxy",
                    "× Go proxy",
                    "p50 / p90 / p99 ms",
                    "CPU µs/req",
                    "CPU s/1000 req",
                    "core 0 busy: ours / all",
                    "core 1 busy: ours / all",
                    "errors",
                ],
                rows,
            ),
        ]
        fr = sg.get("fixed_rate", {})
        if fr:
            kp99 = _get(fr, "kubectl-proxy", "latency_us", "p99")
            go99 = _get(fr, "go-proxy", "latency_us", "p99")
            rows = []
            for name in ORDER:
                r = fr.get(name)
                if not r:
                    continue
                lat = r["latency_us"]
                rows.append(
                    [
                        name,
                        _fmt(r["rps"], 0),
                        _pcts(lat, ("p50", "p90", "p99", "p999")),
                        _x(_ratio(lat["p99"], kp99)),
                        _x(_ratio(lat["p99"], go99)),
                        _fmt(r["cpu_us_per_request"], 1),
                        _busy(r["server_cpu_share"], r, PROXY),
                        _busy(r["load_core_busy"], r, LOAD),
                    ]
                )
            out += [
                "",
                f"Fixed rate: {sg.get('fixed_rate_method', '')}.",
                "",
                _table(
                    [
                        "Target",
                        "req/s",
                        "p50 / p90 / p99 / p99.9 ms",
                        "p99 × kubectl proxy",
                        "p99 × Go proxy",
                        "CPU µs/req",
                        "core 0 busy: ours / all",
                        "core 1 busy: ours / all",
                    ],
                    rows,
                ),
            ]
        h2_rows = []
        for shape, by_target in _h2_shapes(sg).items():
            go = _get(by_target, "go-proxy", "rps")
            for name in ORDER:
                r = by_target.get(name)
                if not isinstance(r, dict):
                    continue
                h2_rows.append(
                    [
                        shape.replace("x", " × "),
                        name,
                        _fmt(r["rps"], 0),
                        _x(_ratio(r["rps"], go)),
                        _fmt(r["mean_latency_us"] / 1000, 3),
                        _fmt(r["cpu_us_per_request"], 1),
                        _busy(r.get("server_cpu_share"), r, PROXY),
                        _busy(r.get("load_core_busy"), r, LOAD),
                        _fmt(r["failed"], 0),
                    ]
                )
        if h2_rows:
            out += [
                "",
                "HTTP/2 (h2load; connections × streams in flight on each; `kubectl proxy` "
                "serves HTTP/1.1 only, so it has no row):",
                "",
                _table(
                    [
                        "Shape",
                        "Target",
                        "req/s",
                        "× Go proxy",
                        "mean latency ms",
                        "CPU µs/req",
                        "core 0 busy: ours / all",
                        "core 1 busy: ours / all",
                        "failed",
                    ],
                    h2_rows,
                ),
            ]
    wt = scen.get("watches")
    if wt and wt.get("targets"):
        rows = []
        for name in (*ORDER, "gateway-h2"):
            r = wt["targets"].get(name)
            if not r:
                continue
            ev = r["event_ms"]
            rows.append(
                [
                    name,
                    str(r["live"]),
                    _fmt(r["rss_per_watch_kib"], 1),
                    f"{(r['rss_after_kib'] - r['rss_before_kib']) / 1024:.1f}",
                    _fmt(r["open_seconds"], 1),
                    _fmt(ev["p50"], 1),
                    _fmt(ev["all"], 1),
                    f"{r['events_received']}/{r['live']}",
                    str(r["heads_seen"]),
                ]
            )
        note = ""
        if wt.get("count") != wt.get("requested"):
            note = (
                f" (asked for {wt['requested']}; the open-file hard limit "
                f"{wt['nofile_hard_limit']} allows {wt['count']} at two sockets per watch)"
            )
        out += [
            "",
            f"### 3. {wt.get('count')} idle watches through one process{note}",
            "",
            _table(
                [
                    "Target",
                    "live",
                    "RSS KiB/watch",
                    "RSS delta MiB",
                    "open s",
                    "event p50 ms",
                    "event to all ms",
                    "events",
                    "heads before 1st event",
                ],
                rows,
            ),
        ]
    st = scen.get("streams")
    if st:
        rows = []
        for body, by_target in st.get("large_get", {}).items():
            kp = _get(by_target, "kubectl-proxy", "mib_per_s")
            go = _get(by_target, "go-proxy", "mib_per_s")
            for name in ORDER:
                r = by_target.get(name)
                if r:
                    rows.append(
                        [
                            f"GET {body[:-1]} MiB",
                            name,
                            _fmt(r["mib_per_s"], 0) + _errors_note(r),
                            _x(_ratio(r["mib_per_s"], kp)),
                            _x(_ratio(r["mib_per_s"], go)),
                            _busy(r["server_cpu_share"], r, PROXY),
                            _busy(r["load_core_busy"], r, LOAD),
                        ]
                    )
        for direction, by_target in st.get("splice", {}).items():
            kp = _get(by_target, "kubectl-proxy", "mib_per_s")
            go = _get(by_target, "go-proxy", "mib_per_s")
            for name in ORDER:
                r = by_target.get(name)
                if not r:
                    continue
                if "error" in r:
                    rows.append(
                        [f"splice {direction}", name, "error", "n/a", "n/a", r["error"][:60], ""]
                    )
                    continue
                share = r.get("server_cpu_share")
                rows.append(
                    [
                        f"splice {direction}",
                        name,
                        _fmt(r["mib_per_s"], 0),
                        _x(_ratio(r["mib_per_s"], kp)),
                        _x(_ratio(r["mib_per_s"], go)),
                        _busy(share, r, PROXY),
                        _busy(r.get("load_core_busy"), r, LOAD),
                    ]
                )
        out += [
            "",
            "### 4. Streams (MiB/s)",
            "",
            _table(
                [
                    "Stream",
                    "Target",
                    "MiB/s",
                    "× kubectl proxy",
                    "× Go proxy",
                    "core 0 busy: ours / all",
                    "core 1 busy: ours / all",
                ],
                rows,
            ),
        ]
    sl = scen.get("stalled")
    if sl and sl.get("targets"):
        rows = [
            [
                name,
                _fmt(r["baseline_kib"] / 1024, 1),
                _fmt(r["peak_kib"] / 1024, 1),
                _fmt(r["growth_kib"] / 1024, 2),
                _fmt(r["after_close_kib"] / 1024, 1),
            ]
            for name, r in sl["targets"].items()
        ]
        out += [
            "",
            "### 5. Stalled client on a 300 MiB body (RSS, MiB)",
            "",
            _table(["Target", "before", "peak while stalled", "growth", "after close"], rows),
        ]
    out += _profile_markdown(results.get("profile"))
    out += _profile_markdown(results.get("profile_h2"))
    out += _isolation_markdown(scen.get("isolation")) + _drain_markdown(scen.get("drain"))
    out += _konnectivity_markdown(scen.get("konnectivity"))
    errors = results.get("errors", {})
    if errors:
        out += ["", "### Scenarios that failed", ""]
        out += [f"- {name}: {text}" for name, text in errors.items()]
    return "\n".join(out) + "\n"


def _profile_markdown(pr: dict[str, Any] | None) -> list[str]:
    """A py-spy profile's top functions by self time, and self time by file."""
    out: list[str] = []
    if pr and pr.get("top_self"):
        rows = [
            [
                str(i + 1),
                f"`{r['function']}`",
                r["location"],
                f"{r['self_share']:.1%}",
                f"{r['total_share']:.1%}",
            ]
            for i, r in enumerate(pr["top_self"])
        ]
        out += [
            "",
            f"### Gateway profile under {pr.get('load', 'wrk -c16')} (py-spy, "
            f"{pr.get('seconds')} s, {pr.get('rps_while_profiling')} req/s while profiled; "
            f"{pr.get('file')})",
            "",
            _table(["#", "Function", "Where", "Self", "Total"], rows),
        ]
    failed = sum((pr or {}).get("errors_while_profiling", {}).values()) if pr else 0
    if failed:
        out += [
            "",
            f"**{failed} requests failed while profiling: the profile is not of the normal path.**",
        ]
    if pr and pr.get("self_by_file"):
        out += [
            "",
            "Self time by file: "
            + ", ".join(f"{r['file']} {r['self_share']:.1%}" for r in pr["self_by_file"])
            + ".",
        ]
    return out


def _isolation_markdown(iso: dict[str, Any] | None) -> list[str]:
    if not iso or "runs" not in iso:
        return []
    rows = []
    for name, run in iso["runs"].items():
        good = run["good"]
        rows.append(
            [
                name,
                str(good["requests"]),
                str(good["errors"]),
                _fmt(good["p50_ms"]),
                _fmt(good["p99_ms"]),
            ]
        )
    bad_rows = []
    for name, stats in iso["runs"].get("with-bad", {}).get("bad", {}).items():
        codes = ", ".join(f"{code}: {count}" for code, count in sorted(stats["codes"].items()))
        bad_rows.append(
            [
                name,
                codes,
                _fmt(stats["refused_p50_ms"]),
                _fmt(stats["refused_p99_ms"]),
                _fmt(stats["slowest_s"]),
            ]
        )
    return [
        "",
        f"### Isolation: {iso['clusters']['good']} good clusters, then with "
        f"{', '.join(iso['clusters']['bad'])} ({iso['load_seconds']:g} s of load per run)",
        "",
        _table(["Run", "Good requests", "Errors", "p50 ms", "p99 ms"], rows),
        "",
        f"Good clusters with the bad three vs without: p50 {_x(iso.get('good_p50_ratio'))}, "
        f"p99 {_x(iso.get('good_p99_ratio'))}.",
        "",
        _table(
            ["Bad cluster", "Answers (code: count)", "503 p50 ms", "503 p99 ms", "Slowest s"],
            bad_rows,
        ),
    ]


def _drain_markdown(drain: dict[str, Any] | None) -> list[str]:
    if not drain or "watches" not in drain:
        return []
    row = [
        str(drain["watches"]),
        str(drain["watches_clean"]),
        str(drain["watches_cut"]),
        f"{drain['execs_finished_ok']} / {drain['execs']}",
        str(drain["exit_code"]),
        _fmt(drain["seconds_to_exit"]),
    ]
    return [
        "",
        f"### Drain on SIGTERM (delay {drain['shutdown_delay']:g} s, grace "
        f"{drain['shutdown_grace']:g} s)",
        "",
        _table(
            ["Watches", "Ended cleanly", "Cut", "Exec sessions finished", "Exit", "s to exit"],
            [row],
        ),
    ]


def _crud_rows(by_target: dict[str, Any], targets: Any) -> list[list[str]]:
    """One row per CRUD step: ``fastest / slowest / mean ± sd`` (ms) for each target."""
    rows = []
    for step in ("create", "update", "delete", "flow"):
        row = [step]
        for name in targets:
            s = _get(by_target, name, step)
            row.append(
                "n/a"
                if not s
                else f"{s['fastest']:.2f} / {s['slowest']:.2f} / {s['mean']:.2f} ± {s['sd']:.2f}"
            )
        rows.append(row)
    return rows


def _konnectivity_markdown(kp: dict[str, Any] | None) -> list[str]:
    """The ClusterProxy rows: CRUD and small GETs beside Const, and the tunnel's counters."""
    if not kp or "crud" not in kp:
        return []
    names = (
        ("direct", "direct"),
        ("gateway", "gateway (Const)"),
        ("gateway-konnectivity", "gateway (ClusterProxy)"),
    )
    rows = _crud_rows(kp["crud"], [key for key, _label in names])
    gets = []
    for key, label in names[1:]:
        st = _get(kp, "small_get", key)
        if st:
            gets.append(
                [
                    label,
                    f"{st['p50']:.3f}",
                    f"{st['mean']:.3f} ± {st['sd']:.3f}",
                    f"{st['fastest']:.3f}",
                    f"{st['slowest']:.3f}",
                    _fmt(st.get("gateway_cpu_us_per_request"), 1),
                ]
            )
    tunnel = kp.get("tunnel", {})
    return [
        "",
        f"### 8. ClusterProxy through the konnectivity stand-in, {kp['rounds']} CRUD rounds "
        "(ms: fastest / slowest / mean ± sd)",
        "",
        _table(["Step", *(label for _key, label in names)], rows),
        "",
        f"Small GETs, {kp['gets']} sequential per target on one keep-alive connection (ms):",
        "",
        _table(["Target", "p50", "mean ± sd", "fastest", "slowest", "gateway CPU µs/req"], gets),
        "",
        f"Added by the tunnel: p50 {_fmt(_get(kp, 'added_ms', 'p50'), 3)} ms, mean "
        f"{_fmt(_get(kp, 'added_ms', 'mean'), 3)} ms. The stand-in saw "
        f"{tunnel.get('channels')} gRPC channel(s), {tunnel.get('streams')} Proxy call(s) and "
        f"{tunnel.get('dials')} dial(s) for {tunnel.get('requests')} requests: "
        f"{tunnel.get('requests_per_channel')} requests per channel, "
        f"{tunnel.get('requests_per_dial')} per dial (Go: 1 and 1).",
    ]


def plots(results: dict[str, Any], out_dir: Path, stem: str) -> list[Path]:
    """PNG plots next to the JSON; returns the files written (none without matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    scen = results.get("scenarios", {})
    written: list[Path] = []
    colors = {
        "direct": "#999999",
        "kubectl-proxy": "#3b75af",
        "go-proxy": "#55a868",
        "gateway": "#e1812c",
    }

    def bars(
        ax: Any,
        groups: list[str],
        values: dict[str, list[float | None]],
        ylabel: str,
        title: str,
        log: bool = False,
    ) -> None:
        width = 0.8 / max(1, len(values))
        for i, (name, series) in enumerate(values.items()):
            xs = [g + i * width for g in range(len(groups))]
            ys = [v or 0 for v in series]
            ax.bar(xs, ys, width, label=name, color=colors.get(name))
        ax.set_xticks([g + width * (len(values) - 1) / 2 for g in range(len(groups))])
        ax.set_xticklabels(groups)
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        if log:
            ax.set_yscale("log")
        ax.legend()

    sg = scen.get("small_get", {})
    if sg.get("max_rate"):
        conns = list(sg["max_rate"])
        fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
        bars(
            axes[0],
            [f"{c} conns" for c in conns],
            {n: [_get(sg, "max_rate", c, n, "rps") for c in conns] for n in ORDER},
            "requests/s",
            "Small GET: max throughput",
            log=True,
        )
        bars(
            axes[1],
            [f"{c} conns" for c in conns],
            {n: [_get(sg, "max_rate", c, n, "cpu_us_per_request") for c in conns] for n in ORDER},
            "CPU µs per request (server under test)",
            "Small GET: CPU per request",
        )
        fig.tight_layout()
        path = out_dir / f"{stem}-small-get.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
        fig, ax = plt.subplots(figsize=(8, 4.5))
        pcts = ("p50", "p90", "p99")
        groups = [f"{c} conns {p}" for c in conns for p in pcts]
        bars(
            ax,
            groups,
            {
                n: [_ms(_get(sg, "max_rate", c, n, "latency_us", p)) for c in conns for p in pcts]
                for n in ORDER
            },
            "ms",
            "Small GET latency at max rate",
            log=True,
        )
        ax.tick_params(axis="x", labelrotation=60)
        fig.tight_layout()
        path = out_dir / f"{stem}-small-get-latency.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    crud = scen.get("crud", {})
    if crud.get("targets"):
        fig, ax = plt.subplots(figsize=(8, 4.5))
        steps = ["create", "update", "delete"]
        width = 0.2
        for i, name in enumerate(ORDER):
            means = [_get(crud, "targets", name, s, "mean") or 0 for s in steps]
            sds = [_get(crud, "targets", name, s, "sd") or 0 for s in steps]
            ax.bar(
                [x + i * width for x in range(3)],
                means,
                width,
                yerr=sds,
                label=name,
                color=colors[name],
                capsize=3,
            )
        ax.set_xticks([x + width * (len(ORDER) - 1) / 2 for x in range(3)])
        ax.set_xticklabels(steps)
        ax.set_ylabel("ms (mean ± sd)")
        ax.set_title(f"ConfigMap flow, {crud.get('rounds')} rounds")
        ax.legend()
        fig.tight_layout()
        path = out_dir / f"{stem}-crud.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    st = scen.get("streams", {})
    if st:
        groups: list[str] = []
        series: dict[str, list[float | None]] = {n: [] for n in ORDER}
        for body in st.get("large_get", {}):
            groups.append(f"GET {body[:-1]} MiB")
            for n in ORDER:
                series[n].append(_get(st, "large_get", body, n, "mib_per_s"))
        for direction in st.get("splice", {}):
            groups.append(f"splice {direction}")
            for n in ORDER:
                series[n].append(_get(st, "splice", direction, n, "mib_per_s"))
        if groups:
            fig, ax = plt.subplots(figsize=(8, 4.5))
            bars(ax, groups, series, "MiB/s", "Streams")
            fig.tight_layout()
            path = out_dir / f"{stem}-streams.png"
            fig.savefig(path, dpi=100)
            plt.close(fig)
            written.append(path)
    wt, sl = scen.get("watches", {}), scen.get("stalled", {})
    if wt.get("targets") or sl.get("targets"):
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        names = list(NAMES)
        axes[0].bar(
            names,
            [_get(wt, "targets", n, "rss_per_watch_kib") or 0 for n in names],
            color=[colors[n] for n in names],
        )
        axes[0].axhline(40, color="red", linestyle="--", label="target 40 KiB")
        axes[0].set_title(f"RSS per idle watch ({wt.get('count')} watches)")
        axes[0].set_ylabel("KiB")
        axes[0].legend()
        axes[1].bar(
            names,
            [(_get(sl, "targets", n, "growth_kib") or 0) / 1024 for n in names],
            color=[colors[n] for n in names],
        )
        axes[1].axhline(5, color="red", linestyle="--", label="target 5 MiB")
        axes[1].set_title("RSS growth, stalled client, 300 MiB body")
        axes[1].set_ylabel("MiB")
        axes[1].legend()
        fig.tight_layout()
        path = out_dir / f"{stem}-memory.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written


if __name__ == "__main__":
    saved = json.loads(Path(sys.argv[1]).read_text())
    sys.stdout.write(markdown(saved))
