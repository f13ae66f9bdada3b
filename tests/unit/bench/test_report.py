"""The targets table: each goal judged against the right peer of the same run."""

from __future__ import annotations

from typing import Any

from bench.report import markdown, targets_markdown, targets_table


def _results() -> dict[str, Any]:
    def h1(rps: float) -> dict[str, Any]:
        return {
            "rps": rps,
            "cpu_us_per_request": 1e6 / rps,
            "cpu_s_per_1000": 1e3 / rps,
            "latency_us": {"p50": 200.0, "p90": 300.0, "p99": 900.0},
            "server_cpu_share": 1.0,
            "load_core_busy": 0.5,
            "errors": {},
        }

    def h2(rps: float) -> dict[str, Any]:
        return {"rps": rps, "cpu_us_per_request": 1e6 / rps, "mean_latency_us": 900.0, "failed": 0}

    return {
        "meta": {},
        "scenarios": {
            "small_get": {
                "max_rate": {
                    "16": {
                        "kubectl-proxy": h1(10_000),
                        "go-proxy": h1(20_000),
                        "gateway": h1(12_000),
                    }
                },
                "h2": {
                    "16x1": {
                        "connections": 16,
                        "streams": 1,
                        "go-proxy": h2(10_000),
                        "gateway": h2(9_000),
                    },
                    "4x32": {
                        "connections": 4,
                        "streams": 32,
                        "go-proxy": h2(10_000),
                        "gateway": h2(9_000),
                    },
                },
            },
            "streams": {
                "splice": {
                    "down": {
                        "kubectl-proxy": {"mib_per_s": 500.0},
                        "go-proxy": {"mib_per_s": 800.0},
                        "gateway": {"mib_per_s": 600.0},
                    }
                }
            },
        },
    }


def _row(rows: list[dict[str, Any]], prefix: str) -> dict[str, Any]:
    return next(r for r in rows if r["target"].startswith(prefix))


def test_http1_needs_both_peers() -> None:
    """1.2× kubectl proxy but 0.6× Go: the HTTP/1.1 goal (≥ 0.8× Go too) is not met."""
    row = _row(targets_table(_results()), "HTTP/1.1")
    assert round(row["vs_kubectl_proxy"], 2) == 1.2
    assert round(row["vs_go_proxy"], 2) == 0.6
    assert row["met"] is False


def test_http2_shapes_against_go() -> None:
    """0.9× Go meets 16×1 (≥ 0.8×) and misses 4×32 (≥ 1.0×); no kubectl proxy ratio."""
    rows = targets_table(_results())
    kubectl, aggregator = _row(rows, "HTTP/2 small GET, 16"), _row(rows, "HTTP/2 small GET, 4")
    assert (kubectl["met"], aggregator["met"]) == (True, False)
    assert kubectl["vs_kubectl_proxy"] is None


def test_splice_is_judged_against_go() -> None:
    """1.2× kubectl proxy, 0.75× Go: the splice goal is stated against Go."""
    row = _row(targets_table(_results()), "Stream: upgrade splice (down)")
    assert row["met"] is False
    assert "0.75×" in targets_markdown(_results())


def test_older_runs_without_go_still_print() -> None:
    """A run from before the Go peer (one HTTP/2 row, no go-proxy) still renders."""
    results = _results()
    sg = results["scenarios"]["small_get"]
    for row in sg["max_rate"].values():
        del row["go-proxy"]
    sg["h2"] = {"connections": 16, "gateway": sg["h2"]["16x1"]["gateway"]}
    text = markdown(results)
    assert "| 16 × 1 | gateway | 9,000 |" in text
    assert _row(targets_table(results), "HTTP/1.1")["met"] is None
