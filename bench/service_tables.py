"""The Markdown tables bench_service.py prints: the default runs (bare forward against the
service, the overload run, bare batches) and the process-count comparison (``--processes``).
"""

from __future__ import annotations

import statistics
from typing import Any


def processes_table(runs: list[dict[str, Any]]) -> str:
    """Medians over rounds, and each count's throughput relative to the first count."""
    lines = [
        "| size | processes | img/s (median of rounds) | vs first | p50 ms | p99 ms | "
        "server CPU ms/img | client CPU ms/req | errors |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for size in sorted({r["size"] for r in runs}):
        base_ips = None
        bare = next((r["bare"] for r in runs if r["size"] == size and "bare" in r), None)
        if bare:
            lines.append(
                f"| {size} | bare forward, batch {bare['batch']} | {bare['images_per_s']} | | "
                f"| | | | |"
            )
        for count in dict.fromkeys(
            r["processes"] for r in runs if r["size"] == size and "bare" not in r
        ):
            mine = [r for r in runs if r["size"] == size and r["processes"] == count]
            ips = statistics.median(r["images_per_s"] for r in mine)
            base_ips = base_ips or ips
            lines.append(
                f"| {size} | {count} | {ips:.1f} | {ips / base_ips:.2f}× | "
                f"{statistics.median(r['accepted_p50_ms'] for r in mine):.1f} | "
                f"{statistics.median(r['accepted_p99_ms'] for r in mine):.1f} | "
                f"{statistics.median(r['server_cpu_ms_per_ok'] for r in mine)} | "
                f"{statistics.median(r.get('client_cpu_ms_per_request', 0) for r in mine)} | "
                f"{sum(r['other_errors'] + r['rejected_429'] for r in mine)} |"
            )
    return "\n".join(lines)


def table(runs: list[dict[str, Any]]) -> str:
    lines = [
        "| size | variant | bare fwd p50 ms (before/after) | e2e p50 ms | e2e p95 ms | "
        "p50 ratio | bare img/s | e2e img/s (clients) | ratio | mean batch | "
        "server CPU ms/img | errors |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        before = run["bare_before"][0]
        bare_p50 = (before["p50_ms"] + run["bare_after"]["p50_ms"]) / 2
        bare_ips = (before["images_per_s"] + run["bare_after"]["images_per_s"]) / 2
        seq, con = run["sequential"], run["concurrent"]
        lines.append(
            f"| {run['size']} | {run['variant']} | {before['p50_ms']} / "
            f"{run['bare_after']['p50_ms']} | {seq['p50_ms']} | {seq['p95_ms']} | "
            f"{seq['p50_ms'] / bare_p50:.2f}× | {bare_ips:.2f} | {con['images_per_s']} "
            f"({con['clients']}) | {con['images_per_s'] / bare_ips:.2f}× | {con['mean_batch']} | "
            f"{con.get('server_cpu_ms_per_ok', '')} | "
            f"{seq['errors'] + con['other_errors'] + con['rejected_429']} |"
        )
    for run in runs:
        if "overload" in run:
            o = run["overload"]
            lines += [
                "",
                "| overload: clients × 2 req | queue | ok | 429 | other | 429 p50 / p99 ms | "
                "accepted p50 / p99 ms |",
                "|---|---|---|---|---|---|---|",
                f"| {o['clients']} | {run.get('overload_queue', '')} | {o['ok']} | "
                f"{o['rejected_429']} | {o['other_errors']} | {o['rejected_p50_ms']} / "
                f"{o['rejected_p99_ms']} | {o['accepted_p50_ms']} / {o['accepted_p99_ms']} |",
            ]
    for run in runs:
        if len(run["bare_before"]) > 1:
            lines += ["", "| size | bare batch | ms/batch | img/s |", "|---|---|---|---|"]
            lines += [
                f"| {b['size']} | {b['batch']} | {b['mean_ms']} | {b['images_per_s']} |"
                for b in run["bare_before"]
            ]
    return "\n".join(lines)
